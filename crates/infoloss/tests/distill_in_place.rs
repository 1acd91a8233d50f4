//! `distill_with_grad_in_place` / `distill_topk_with_grad_in_place`: the loss and the gradient written
//! over the student logits are bit for bit those of `distill_with_grad` / `distill_topk_with_grad`, on
//! the fast path (f32, f16, bf16) and on the reference (f64, `with_reference_path`), for every
//! divergence and reduction, ignored rows, rows with NaN / ±inf, row lengths across the SIMD lanes, a
//! non-contiguous student, and 1 / 2 / 3 threads; rejected inputs leave the student untouched.

use crate::support;
use support::Rng;

use infoloss::distill::{
    DistillOptions, Divergence, SparseTeacher, distill_topk_with_grad, distill_topk_with_grad_in_place,
    distill_with_grad, distill_with_grad_in_place,
};
use infoloss::half::{bf16, f16};
use infoloss::ndarray::{Array1, Array2, ArrayView1, s};
use infoloss::with_reference_path;
use infoloss::{Element, Error, Loss, Real, Reduction};

fn cv<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

fn bits<T: Element>(x: T) -> u64 {
    x.to_acc().f64().to_bits()
}

fn loss_bits<T: Element>(l: &Loss<T>) -> Vec<u64> {
    match l {
        Loss::Scalar(v) => vec![bits(*v)],
        Loss::Elementwise(a) => a.iter().map(|&v| bits(v)).collect(),
    }
}

/// `rows × c` student and teacher logits of scale `scale`, with NaN / ±inf planted when `specials`.
fn logits<T: Element>(
    rows: usize,
    c: usize,
    scale: f64,
    seed: u64,
    specials: bool,
) -> (Array2<T>, Array2<T>) {
    let mut rng = Rng(seed);
    let mut s = Array2::from_shape_fn((rows, c), |_| scale * (2.0 * rng.unit() - 1.0));
    let mut t = Array2::from_shape_fn((rows, c), |_| scale * (2.0 * rng.unit() - 1.0));
    if specials && rows >= 4 && c >= 2 {
        s[[1, c / 2]] = f64::NAN;
        t[[2, 0]] = f64::INFINITY;
        s[[3, c - 1]] = f64::NEG_INFINITY;
    }
    (s.mapv(cv::<T>), t.mapv(cv::<T>))
}

fn labels(rows: usize, c: usize, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed ^ 0x5eed);
    (0..rows).map(|r| if r % 3 == 1 { -100 } else { rng.below(c.max(1)) as i64 }).collect()
}

const DIVS: [Divergence; 5] = [
    Divergence::ForwardKl,
    Divergence::ReverseKl,
    Divergence::TotalVariation,
    Divergence::GeneralizedJsd { beta: 0.3 },
    Divergence::GeneralizedJsd { beta: 1.0 },
];

fn option_sets() -> Vec<DistillOptions> {
    let mut v = vec![];
    for divergence in DIVS {
        for (temperature, alpha, reduction) in [
            (1.0, 1.0, Reduction::BatchMean),
            (2.0, 0.5, Reduction::None),
            (0.7, 0.8, Reduction::Sum),
            (3.0, 0.0, Reduction::Mean),
        ] {
            v.push(DistillOptions { temperature, alpha, divergence, reduction, ..Default::default() });
        }
    }
    v
}

/// Dense: in place == allocating, bit for bit; returns how many gradient entries were compared.
fn dense_case<T: Element>(
    s: &Array2<T>,
    t: &Array2<T>,
    y: Option<ArrayView1<'_, i64>>,
    o: &DistillOptions,
) -> usize {
    let allocating = distill_with_grad(s.view(), t.view(), y, o).unwrap();
    let mut g = s.clone();
    let in_place = distill_with_grad_in_place(g.view_mut(), t.view(), y, o).unwrap();
    same_bits(&format!("{:?} {o:?}", T::DTYPE), allocating, (in_place, &g))
}

/// The allocating `(loss, grad)` and the in-place `(loss, gradient buffer)` are the same bits; returns how many
/// gradient entries were compared.
fn same_bits<T: Element>(
    what: &str,
    (loss, grad): (Loss<T>, Array2<T>),
    (loss2, g): (Loss<T>, &Array2<T>),
) -> usize {
    assert_eq!(loss_bits(&loss), loss_bits(&loss2), "{what}: loss");
    assert_eq!(grad.shape(), g.shape());
    for (i, (a, b)) in grad.iter().zip(g.iter()).enumerate() {
        assert_eq!(bits(*a), bits(*b), "{what}: gradient entry {i}: {a:?} vs {b:?}");
    }
    grad.len()
}

fn dense_sweep<T: Element>() -> usize {
    let mut n = 0;
    for &c in &[1usize, 7, 16, 17, 33, 129, 1025] {
        for specials in [false, true] {
            let (s, t) = logits::<T>(6, c, 4.0, c as u64 + specials as u64, specials);
            let y = labels(6, c, c as u64);
            for o in option_sets() {
                n += dense_case(&s, &t, Some(y.view()), &o);
                if o.alpha == 1.0 {
                    n += dense_case(&s, &t, None, &o);
                }
            }
        }
    }
    n
}

#[test]
fn dense_in_place_equals_allocating_fast_path() {
    assert!(dense_sweep::<f32>() > 0);
    assert!(dense_sweep::<bf16>() > 0);
    assert!(dense_sweep::<f16>() > 0);
}

#[test]
fn dense_in_place_equals_allocating_reference() {
    assert!(dense_sweep::<f64>() > 0);
    assert!(with_reference_path(dense_sweep::<f32>) > 0);
}

/// The gradient really lands in the student buffer: hand-checked values (torch: `F.kl_div(
/// F.log_softmax(s, 1), F.log_softmax(t, 1), reduction='batchmean', log_target=True)` and autograd).
#[test]
fn dense_in_place_writes_the_gradient() {
    let mut s = infoloss::ndarray::array![[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.2]];
    let t = infoloss::ndarray::array![[0.5f32, 1.5, 2.0], [0.0, -0.5, 3.0]];
    let o = DistillOptions::default();
    let loss = distill_with_grad_in_place(s.view_mut(), t.view(), None, &o).unwrap();
    // (p − q) / 2 in row 0: p = softmax(1, 2, 0.5), q = softmax(0.5, 1.5, 2)
    let want = [0.054_636_12f64, 0.148_516_38, -0.203_152_50];
    for j in 0..3 {
        assert!((s[[0, j]] as f64 - want[j]).abs() < 1e-6, "entry {j}: {}", s[[0, j]]);
    }
    assert!((s.row(1).sum() as f64).abs() < 1e-6);
    assert!(loss.scalar().unwrap() > 0.0);
}

#[test]
fn non_contiguous_student_falls_back_bit_for_bit() {
    let (s, t) = logits::<f32>(33, 9, 2.0, 11, false);
    // a transposed buffer whose transpose is the (9, 33)… take the student as a view of a column-major array
    let st = s.t().to_owned(); // (9, 33) row-major
    let mut st2 = st.clone();
    let view = st2.view_mut().reversed_axes(); // (33, 9), column-major: not contiguous row-wise
    let y = labels(33, 9, 4);
    let o = DistillOptions { temperature: 2.0, alpha: 0.5, ..Default::default() };
    let (loss, grad) = distill_with_grad(s.view(), t.view(), Some(y.view()), &o).unwrap();
    let loss2 = distill_with_grad_in_place(view, t.view(), Some(y.view()), &o).unwrap();
    assert_eq!(loss_bits(&loss), loss_bits(&loss2));
    assert_eq!(st2.t(), grad);
    // a strided row slice of a wider buffer
    let mut wide = Array2::<f32>::zeros((33, 20));
    wide.slice_mut(s![.., ..9]).assign(&s);
    let loss3 =
        distill_with_grad_in_place(wide.slice_mut(s![.., ..9]), t.view(), Some(y.view()), &o).unwrap();
    assert_eq!(loss_bits(&loss), loss_bits(&loss3));
    assert_eq!(wide.slice(s![.., ..9]), grad);
    assert!(wide.slice(s![.., 9..]).iter().all(|&v| v == 0.0), "outside the view untouched");
}

#[test]
fn rejected_inputs_leave_the_student_untouched() {
    let (s, t) = logits::<f32>(4, 5, 1.0, 3, false);
    let mut g = s.clone();
    let bad_t = Array2::<f32>::zeros((4, 6));
    let e =
        distill_with_grad_in_place(g.view_mut(), bad_t.view(), None, &DistillOptions::default()).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("[4, 5]") && e.to_string().contains("[4, 6]"), "{e}");
    let y = infoloss::ndarray::array![0i64, 1, 5, 2];
    let e = distill_with_grad_in_place(g.view_mut(), t.view(), Some(y.view()), &DistillOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::TargetOutOfRange { .. }), "{e}");
    let bad = DistillOptions { temperature: 0.0, ..Default::default() };
    assert!(distill_with_grad_in_place(g.view_mut(), t.view(), None, &bad).is_err());
    let mut three = infoloss::ndarray::Array3::<f32>::zeros((2, 2, 5));
    let e =
        distill_with_grad_in_place(three.view_mut(), t.view(), None, &DistillOptions::default()).unwrap_err();
    assert!(matches!(e, Error::BadRank { .. }), "{e}");
    assert_eq!(g, s);
}

/// The top-k teacher of each row of `t` (largest `k` at temperature `temp`).
fn topk_of<T: Element>(t: &Array2<T>, k: usize, temp: f64) -> (Array2<i64>, Array2<T>) {
    let rows = t.nrows();
    let (mut idx, mut lq) = (Array2::zeros((rows, k)), Array2::from_elem((rows, k), cv::<T>(0.0)));
    for r in 0..rows {
        let row: Vec<f64> = t.row(r).iter().map(|v| v.to_acc().f64()).collect();
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v / temp));
        let lz = row.iter().map(|&v| (v / temp - m).exp()).sum::<f64>().ln() + m;
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for (j, &i) in order.iter().take(k).enumerate() {
            idx[[r, j]] = i as i64;
            lq[[r, j]] = cv::<T>(row[i] / temp - lz);
        }
    }
    (idx, lq)
}

fn topk_sweep<T: Element>() -> usize {
    let mut n = 0;
    for &c in &[1usize, 9, 33, 1025] {
        for specials in [false, true] {
            let (s, t) = logits::<T>(6, c, 3.0, 40 + c as u64, specials);
            let y = labels(6, c, 9);
            for k in [1, c.div_ceil(2), c] {
                for add_tail in [false, true] {
                    for o in option_sets() {
                        let (idx, lq) = topk_of(&t, k, o.temperature);
                        let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail };
                        let unlabeled = if o.alpha == 1.0 { 2 } else { 1 };
                        for yy in [Some(y.view()), None].into_iter().take(unlabeled) {
                            let allocating = distill_topk_with_grad(s.view(), &teacher, yy, &o).unwrap();
                            let mut g = s.clone();
                            let in_place =
                                distill_topk_with_grad_in_place(g.view_mut(), &teacher, yy, &o).unwrap();
                            let what = format!("C={c} k={k} tail={add_tail} {o:?}");
                            n += same_bits(&what, allocating, (in_place, &g));
                        }
                    }
                }
            }
        }
    }
    n
}

#[test]
fn topk_in_place_equals_allocating() {
    assert!(topk_sweep::<f32>() > 0);
    assert!(topk_sweep::<bf16>() > 0);
    assert!(topk_sweep::<f64>() > 0);
}

#[test]
fn in_place_bit_identical_for_1_2_3_threads() {
    let (s, t) = logits::<f32>(41, 1000, 3.0, 77, true);
    let y = labels(41, 1000, 2);
    let o = DistillOptions { temperature: 2.0, alpha: 0.7, reduction: Reduction::Sum, ..Default::default() };
    let mut first: Option<(Vec<u64>, Array2<f32>)> = None;
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut g = s.clone();
        let l =
            pool.install(|| distill_with_grad_in_place(g.view_mut(), t.view(), Some(y.view()), &o)).unwrap();
        let got = (loss_bits(&l), g);
        match &first {
            None => first = Some(got),
            Some(f) => {
                assert_eq!(f.0, got.0, "{threads} threads: loss");
                assert!(
                    f.1.iter().zip(got.1.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{threads} threads"
                );
            }
        }
    }
}
