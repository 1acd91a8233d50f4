//! The upstream-gradient, bias and top-k paths of the distillation losses:
//!
//! - `uda_consistency_backward` by central finite differences in f64 (its PyTorch fixture, the gradient for a
//!   non-unit upstream in `testdata/uda.json`, runs in `fixtures.rs`);
//! - `linear_distill_backward` (student and teacher biases, a sparse top-k teacher, scalar and per-row upstream
//!   gradients) by central finite differences in f64 (its PyTorch fixtures run in `fixtures.rs`);
//! - properties: top-k with `k = V` and no tail equals the dense loss, the fused top-k equals `distill_topk` on
//!   materialized logits with a naively selected teacher, chunk-size invariance, the upstream gradient is
//!   exactly linear, and the error messages;
//! - `linear_distill_topk` (a stored top-k teacher) by finite differences, `k = V` without tail equals
//!   `linear_distill`, thread (bit for bit) and chunk invariance, its errors; the student logit scale and
//!   softcap by finite differences in `distill`, `distill_topk` and `linear_distill`.

use infoloss::distill::{DistillOptions, Divergence, SparseTeacher, distill_topk_with_grad};
use infoloss::linear::{
    LinearDistillOptions, LinearDistillOutput, LinearHead, TeacherTopK, linear_distill,
    linear_distill_backward, linear_distill_topk, linear_distill_workspace, linear_distill_workspace_with,
};
use infoloss::ndarray::{Array1, Array2, ArrayView2, array};
use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions, uda_consistency_backward, uda_consistency_with_grad};
use infoloss::{Element, GradOutput, LinearFloat, Loss, Real, Reduction};
use infoloss_conformance::close;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random matrix (splitmix64), entries uniform in `[-scale, scale)`.
fn rand_matrix(rows: usize, cols: usize, seed: u64, scale: f64) -> Array2<f64> {
    let mut state = seed;
    Array2::from_shape_fn((rows, cols), |_| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}

fn rand_vector(n: usize, seed: u64, scale: f64) -> Array1<f64> {
    rand_matrix(1, n, seed, scale).row(0).to_owned()
}

fn to_t<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

fn to_f64<T: Element>(x: T) -> f64 {
    x.to_acc().f64()
}

/// `|got − expected| ≤ atol + rtol·|expected|` elementwise; NaN and infinities must match exactly.
fn assert_close(what: &str, got: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!(
            close(g, e, rtol, atol),
            "{what}[{i}]: got {g:e}, expected {e:e} (rtol {rtol:e}, atol {atol:e})"
        );
    }
}

fn loss_vec(l: &Loss<f64>) -> Vec<f64> {
    l.clone().into_array().iter().copied().collect()
}

/// Two results of `linear_distill_backward` agree: loss, gradients (and the bias gradient when present).
fn assert_same_output(
    what: &str,
    got: &LinearDistillOutput<f64>,
    want: &LinearDistillOutput<f64>,
    rtol: f64,
    atol: f64,
) {
    assert_eq!(got.grad_bias.is_some(), want.grad_bias.is_some(), "{what}: grad_bias presence");
    let bias = |o: &LinearDistillOutput<f64>| o.grad_bias.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    for (part, a, b) in [
        ("loss", loss_vec(&got.loss), loss_vec(&want.loss)),
        ("grad_hidden", flat2(&got.grad_hidden), flat2(&want.grad_hidden)),
        ("grad_weight", flat2(&got.grad_weight), flat2(&want.grad_weight)),
        ("grad_bias", bias(got), bias(want)),
    ] {
        assert_close(&format!("{what}: {part}"), &a, &b, rtol, atol);
    }
}

fn flat2<T: Element>(a: &Array2<T>) -> Vec<f64> {
    a.iter().map(|&x| to_f64(x)).collect()
}

/// The scalar objective `Σ_r g_r·loss_r` (per-row losses) or `g·loss`.
fn objective(l: &Loss<f64>, g: &GradOutput<'_, f64>) -> f64 {
    match (l, g) {
        (Loss::Scalar(v), GradOutput::Scalar(s)) => v * s,
        (Loss::Elementwise(a), GradOutput::Scalar(s)) => a.sum() * s,
        (Loss::Elementwise(a), GradOutput::Array(u)) => a.iter().zip(u.iter()).map(|(x, w)| x * w).sum(),
        (Loss::Scalar(v), GradOutput::Array(u)) => v * u.iter().next().copied().unwrap_or(f64::NAN),
    }
}

const FD_H: f64 = 1e-6;

/// Central differences of `f` at every element of `x`, compared with `grad`.
fn fd_check<D: infoloss::ndarray::Dimension>(
    what: &str,
    x: &infoloss::ndarray::Array<f64, D>,
    grad: &infoloss::ndarray::Array<f64, D>,
    f: impl Fn(&infoloss::ndarray::Array<f64, D>) -> f64,
) -> usize {
    assert_eq!(x.shape(), grad.shape(), "{what}: gradient shape");
    let mut checked = 0;
    for (i, &g) in grad.iter().enumerate() {
        let bump = |d: f64| {
            let mut xp = x.clone();
            if let Some(v) = xp.iter_mut().nth(i) {
                *v += d;
            }
            f(&xp)
        };
        let numeric = (bump(FD_H) - bump(-FD_H)) / (2.0 * FD_H);
        assert!(
            (g - numeric).abs() <= 1e-7 * (1.0 + g.abs().max(numeric.abs())),
            "{what}: element {i}: analytic {g:e}, numeric {numeric:e}"
        );
        checked += 1;
    }
    checked
}

// ---------------------------------------------------------------------------------------------
// UDA: the upstream gradient
// ---------------------------------------------------------------------------------------------

#[test]
fn uda_backward_rounds_once_in_f32() {
    // On the reference path, the f64 gradient times g, rounded once, is what uda_consistency_backward returns
    // in f32; multiplying the f32 gradient of upstream 1 by g rounds twice and is further away for some
    // elements. (The f32 SIMD fast path computes in f32 and is checked against the reference in
    // tests/oracle/distill.rs.)
    let ori = rand_matrix(16, 33, 1, 3.0);
    let aug = &ori + &rand_matrix(16, 33, 2, 1.0);
    let opts = UdaOptions { temperature: 0.7, ..Default::default() };
    let up = 0.1f64;
    let exact =
        uda_consistency_backward(ori.view(), aug.view(), &opts, &GradOutput::Scalar(up)).expect("f64");
    let (o32, a32) = (ori.mapv(|v| v as f32), aug.mapv(|v| v as f32));
    // inputs exactly representable in f32 for the comparison
    let exact32 = uda_consistency_backward(
        o32.mapv(f64::from).view(),
        a32.mapv(f64::from).view(),
        &opts,
        &GradOutput::Scalar(f64::from(up as f32)),
    )
    .expect("f64 on f32 inputs");
    let (once, twice) = infoloss::with_reference_path(|| {
        let once = uda_consistency_backward(o32.view(), a32.view(), &opts, &GradOutput::Scalar(up as f32))
            .expect("f32");
        let twice = uda_consistency_with_grad(o32.view(), a32.view(), &opts)
            .expect("f32")
            .grad
            .mapv(|v| v * (up as f32));
        (once, twice)
    });
    let (mut once_err, mut twice_err) = (0.0f64, 0.0f64);
    for ((&e, &a), &b) in exact32.iter().zip(once.iter()).zip(twice.iter()) {
        assert_eq!(a, e as f32, "rounded once: the f32 result is the f64 value rounded");
        once_err += (f64::from(a) - e).abs();
        twice_err += (f64::from(b) - e).abs();
    }
    assert!(once_err < twice_err, "once {once_err:e} vs twice {twice_err:e}");
    assert_eq!(exact.shape(), &[16, 33]);
}

#[test]
fn fd_uda_backward_every_option() {
    let ori = rand_matrix(6, 5, 11, 2.5);
    let aug = &ori + &rand_matrix(6, 5, 12, 1.0);
    let mut checked = 0;
    for sharpen in [Sharpen::Target, Sharpen::Augmented] {
        for (temperature, confidence_threshold) in [(1.0, None), (0.4, Some(0.5)), (2.0, Some(0.3))] {
            for normalize in [UdaNormalize::KeptRows, UdaNormalize::AllRows] {
                for up in [-1.75, 3.0] {
                    let o = UdaOptions { temperature, sharpen, confidence_threshold, normalize };
                    let g = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(up))
                        .unwrap();
                    checked += fd_check(&format!("uda {o:?} × {up}"), &aug, &g, |x| {
                        up * uda_consistency_with_grad(ori.view(), x.view(), &o).unwrap().loss
                    });
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2 * 2 * 30);
}

#[test]
fn uda_backward_errors_and_non_finite_upstream() {
    let ori = array![[3.0f64, 0.0], [0.0, 0.1]]; // the second row is masked at threshold 0.9
    let aug = array![[1.0f64, 0.5], [0.2, 0.0]];
    let o = UdaOptions { confidence_threshold: Some(0.9), ..Default::default() };
    let g2 = array![1.0f64, 2.0];
    let e = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Array(g2.view().into_dyn()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "uda_consistency: grad_output shape [2] and output shape [] must be equal (the loss is reduced to a scalar)"
    );
    // 0·NaN: a NaN upstream gradient makes masked rows NaN too, as in PyTorch
    let g = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(f64::NAN)).unwrap();
    assert!(g.iter().all(|v| v.is_nan()));
    // a zero upstream gradient gives exact zeros
    let g = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(0.0)).unwrap();
    assert!(g.iter().all(|&v| v == 0.0));
    // the masked row is exactly zero for a finite upstream gradient
    let g = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(-4.0)).unwrap();
    assert_eq!(g.row(1).to_vec(), vec![0.0, 0.0]);
    assert!(g.row(0).iter().all(|v| v.abs() > 0.01));
}

// ---------------------------------------------------------------------------------------------
// linear_distill_backward: biases, top-k teacher, upstream gradients
// ---------------------------------------------------------------------------------------------

/// A student and a teacher with biases: `(xs, ws, bs, xt, wt, bt)`, sizes `n, hs, ht, v`.
struct Heads {
    xs: Array2<f64>,
    ws: Array2<f64>,
    bs: Array1<f64>,
    xt: Array2<f64>,
    wt: Array2<f64>,
    bt: Array1<f64>,
}

/// [`fd_check`] of the student head's three gradients in `out` against `f(hidden, weight, bias)`, the
/// loss at those student operands (the teacher's and the rest held); the number of entries checked.
fn fd_check_student(
    what: &str,
    h: &Heads,
    out: &LinearDistillOutput<f64>,
    f: impl Fn(&Array2<f64>, &Array2<f64>, &Array1<f64>) -> f64,
) -> usize {
    let gb = out.grad_bias.as_ref().expect("grad_bias");
    fd_check(&format!("{what}: hidden"), &h.xs, &out.grad_hidden, |x| f(x, &h.ws, &h.bs))
        + fd_check(&format!("{what}: weight"), &h.ws, &out.grad_weight, |w| f(&h.xs, w, &h.bs))
        + fd_check(&format!("{what}: bias"), &h.bs, gb, |b| f(&h.xs, &h.ws, b))
}

fn heads(n: usize, hs: usize, ht: usize, v: usize, seed: u64) -> Heads {
    Heads {
        xs: rand_matrix(n, hs, seed, 1.5),
        ws: rand_matrix(v, hs, seed + 1, 1.0),
        bs: rand_vector(v, seed + 2, 0.5),
        xt: rand_matrix(n, ht, seed + 3, 1.5),
        wt: rand_matrix(v, ht, seed + 4, 1.2),
        bt: rand_vector(v, seed + 5, 0.5),
    }
}

/// `linear_distill_backward` with `h`'s teacher (and its bias) and the given student.
#[allow(clippy::too_many_arguments)]
fn run(
    h: &Heads,
    xs: &Array2<f64>,
    ws: &Array2<f64>,
    bs: Option<&Array1<f64>>,
    labels: Option<&Array1<i64>>,
    topk: Option<TeacherTopK>,
    opts: &LinearDistillOptions,
    g: &GradOutput<'_, f64>,
) -> infoloss::linear::LinearDistillOutput<f64> {
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: bs.map(|b| b.view()) };
    let teacher = LinearHead { hidden: h.xt.view(), weight: h.wt.view(), bias: Some(h.bt.view()) };
    linear_distill_backward(&student, &teacher, labels.map(|y| y.view()), topk, opts, g)
        .expect("linear_distill")
}

/// `run` on the student's own hidden states, weight and bias, without labels.
fn own(
    h: &Heads,
    topk: Option<TeacherTopK>,
    opts: &LinearDistillOptions,
    g: &GradOutput<'_, f64>,
) -> infoloss::linear::LinearDistillOutput<f64> {
    run(h, &h.xs, &h.ws, Some(&h.bs), None, topk, opts, g)
}

/// `linear_distill_backward` without labels, with the teacher's top 2 classes and the tail.
fn top2_with_tail(
    student: &LinearHead<'_, f64>,
    teacher: &LinearHead<'_, f64>,
    opts: &LinearDistillOptions,
    g: &GradOutput<'_, f64>,
) -> infoloss::linear::LinearDistillOutput<f64> {
    linear_distill_backward(student, teacher, None, Some(TeacherTopK { k: 2, add_tail: true }), opts, g)
        .unwrap()
}

#[test]
fn fd_linear_distill_bias_topk_upstream() {
    let (n, hs, ht, v) = (5, 3, 4, 7);
    let h = heads(n, hs, ht, v, 100);
    let y = array![2i64, -100, 0, 6, 3];
    let per_row = array![0.5f64, -1.25, 2.0, 0.75, -0.3];
    let cases: Vec<(Divergence, Reduction, f64, Option<TeacherTopK>)> = vec![
        (Divergence::ForwardKl, Reduction::BatchMean, 1.0, None),
        (Divergence::ReverseKl, Reduction::None, 0.5, None),
        (
            Divergence::GeneralizedJsd { beta: 0.3 },
            Reduction::Sum,
            0.6,
            Some(TeacherTopK { k: 3, add_tail: true }),
        ),
        (Divergence::ForwardKl, Reduction::None, 1.0, Some(TeacherTopK { k: 2, add_tail: false })),
        (Divergence::TotalVariation, Reduction::Mean, 0.8, Some(TeacherTopK { k: 4, add_tail: true })),
        (Divergence::ReverseKl, Reduction::BatchMean, 0.4, Some(TeacherTopK { k: 7, add_tail: false })),
    ];
    let mut checked = 0;
    for (div, reduction, alpha, topk) in cases {
        let opts = LinearDistillOptions {
            distill: DistillOptions {
                temperature: 1.6,
                divergence: div,
                alpha,
                reduction,
                ..Default::default()
            },
            chunk_size: Some(2),
        };
        let labels = (alpha < 1.0 || reduction == Reduction::Mean).then_some(&y);
        let g = if reduction == Reduction::None {
            GradOutput::Array(per_row.view().into_dyn())
        } else {
            GradOutput::Scalar(-1.7)
        };
        let out = run(&h, &h.xs, &h.ws, Some(&h.bs), labels, topk, &opts, &g);
        let what = format!("{div:?} {reduction} alpha {alpha} {topk:?}");
        let f = |xs: &Array2<f64>, ws: &Array2<f64>, bs: &Array1<f64>| {
            let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
            let teacher = LinearHead { hidden: h.xt.view(), weight: h.wt.view(), bias: Some(h.bt.view()) };
            let out = linear_distill_backward(&student, &teacher, labels.map(|y| y.view()), topk, &opts, &g)
                .expect("loss");
            objective(&out.loss, &g)
        };
        checked += fd_check_student(&what, &h, &out, f);
    }
    assert_eq!(checked, 6 * (n * hs + v * hs + v));
}

#[test]
fn topk_with_k_equal_v_equals_the_dense_loss() {
    let (n, hs, ht, v) = (9, 4, 3, 12);
    let h = heads(n, hs, ht, v, 200);
    let y = Array1::from_shape_fn(n, |i| if i % 4 == 1 { -100 } else { (i * 5 % v) as i64 });
    let mut compared = 0;
    for div in [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::GeneralizedJsd { beta: 0.5 },
        Divergence::TotalVariation,
    ] {
        for reduction in [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (alpha, labels) in [(1.0, None), (0.5, Some(&y))] {
                for chunk in [Some(1), Some(4), None] {
                    let opts = LinearDistillOptions {
                        distill: DistillOptions {
                            temperature: 1.3,
                            divergence: div,
                            alpha,
                            reduction,
                            ..Default::default()
                        },
                        chunk_size: chunk,
                    };
                    let g = GradOutput::Scalar(0.75);
                    let dense = run(&h, &h.xs, &h.ws, Some(&h.bs), labels, None, &opts, &g);
                    let topk = Some(TeacherTopK { k: v, add_tail: false });
                    let sparse = run(&h, &h.xs, &h.ws, Some(&h.bs), labels, topk, &opts, &g);
                    let what = format!("{div:?} {reduction} alpha {alpha} chunk {chunk:?}");
                    assert!(sparse.grad_bias.is_some());
                    assert_same_output(&what, &sparse, &dense, 1e-11, 1e-14);
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 4 * 4 * 2 * 3);
}

#[test]
fn topk_with_k_equal_v_equals_the_dense_loss_f32() {
    let (n, hs, ht, v) = (6, 5, 5, 10);
    let h = heads(n, hs, ht, v, 300);
    let c = |a: &Array2<f64>| a.mapv(|x| x as f32);
    let (xs, ws, xt, wt) = (c(&h.xs), c(&h.ws), c(&h.xt), c(&h.wt));
    let opts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: Some(4),
    };
    let dense = linear_distill(xs.view(), ws.view(), xt.view(), wt.view(), None, &opts).unwrap();
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: None };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: None };
    let topk = Some(TeacherTopK { k: v, add_tail: false });
    let sparse = linear_distill_backward(&student, &teacher, None, topk, &opts, &GradOutput::one()).unwrap();
    // the top-k log-probabilities are rounded to f32 once: agreement to f32 precision
    let (a, b) = (sparse.loss.scalar().unwrap(), dense.loss.scalar().unwrap());
    assert!((a - b).abs() <= 1e-6 * b.abs() + 1e-7, "{a} vs {b}");
    assert_close("grad_weight", &flat2(&sparse.grad_weight), &flat2(&dense.grad_weight), 1e-5, 1e-7);
}

/// The `k` largest entries of each row, by a full sort (descending, ties by index).
fn naive_top_k(t: &Array2<f64>, k: usize, temp: f64) -> (Array2<i64>, Array2<f64>) {
    let (rows, v) = t.dim();
    let mut idx = Array2::<i64>::zeros((rows, k));
    let mut lq = Array2::<f64>::zeros((rows, k));
    for r in 0..rows {
        let row = t.row(r);
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).expect("finite").then(a.cmp(&b)));
        let m = row.fold(f64::NEG_INFINITY, |m, &x| m.max(x / temp));
        let lse = m + row.iter().map(|&x| (x / temp - m).exp()).sum::<f64>().ln();
        for (j, &cl) in order.iter().take(k).enumerate() {
            idx[[r, j]] = cl as i64;
            lq[[r, j]] = row[cl] / temp - lse;
        }
    }
    (idx, lq)
}

fn logits(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    x.dot(&w.t()) + b
}

#[test]
fn fused_topk_equals_distill_topk_on_materialized_logits() {
    let (n, hs, ht, v) = (11, 6, 5, 40);
    let h = heads(n, hs, ht, v, 400);
    let y = Array1::from_shape_fn(n, |i| if i % 5 == 2 { -100 } else { (i * 7 % v) as i64 });
    let s = logits(&h.xs, &h.ws, &h.bs);
    let t = logits(&h.xt, &h.wt, &h.bt);
    let temp = 1.7;
    let mut compared = 0;
    for (k, add_tail) in [(1, true), (5, false), (5, true), (39, true), (40, false)] {
        let (idx, lq) = naive_top_k(&t, k, temp);
        let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail };
        for div in
            [Divergence::ForwardKl, Divergence::GeneralizedJsd { beta: 0.7 }, Divergence::TotalVariation]
        {
            for reduction in [Reduction::BatchMean, Reduction::None] {
                let d = DistillOptions {
                    temperature: temp,
                    divergence: div,
                    alpha: 0.75,
                    reduction,
                    ..Default::default()
                };
                let (loss, g) = distill_topk_with_grad(s.view(), &teacher, Some(y.view()), &d).unwrap();
                let opts = LinearDistillOptions { distill: d, chunk_size: Some(3) };
                let out = run(
                    &h,
                    &h.xs,
                    &h.ws,
                    Some(&h.bs),
                    Some(&y),
                    Some(TeacherTopK { k, add_tail }),
                    &opts,
                    &GradOutput::one(),
                );
                let what = format!("k {k} tail {add_tail} {div:?} {reduction}");
                assert_close(&format!("{what}: loss"), &loss_vec(&out.loss), &loss_vec(&loss), 1e-12, 1e-14);
                assert_close(
                    &format!("{what}: grad_hidden"),
                    &flat2(&out.grad_hidden),
                    &flat2(&g.dot(&h.ws)),
                    1e-11,
                    1e-13,
                );
                assert_close(
                    &format!("{what}: grad_weight"),
                    &flat2(&out.grad_weight),
                    &flat2(&g.t().dot(&h.xs)),
                    1e-11,
                    1e-13,
                );
                let gb = g.sum_axis(infoloss::ndarray::Axis(0));
                assert_close(
                    &format!("{what}: grad_bias"),
                    &out.grad_bias.unwrap().to_vec(),
                    &gb.to_vec(),
                    1e-11,
                    1e-13,
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 5 * 3 * 2);
}

#[test]
fn upstream_gradient_is_linear_and_chunking_invariant() {
    let (n, hs, ht, v) = (10, 4, 4, 9);
    let h = heads(n, hs, ht, v, 500);
    let u = rand_vector(n, 501, 2.0);
    let topk = Some(TeacherTopK { k: 3, add_tail: true });
    let opts = |chunk| LinearDistillOptions {
        distill: DistillOptions {
            temperature: 0.8,
            divergence: Divergence::ReverseKl,
            reduction: Reduction::None,
            ..Default::default()
        },
        chunk_size: chunk,
    };
    let per_row = GradOutput::Array(u.view().into_dyn());
    let base = own(&h, topk, &opts(Some(4)), &per_row);
    // Σ_r u_r·(gradient of row r alone): one call per row with a one-hot upstream gradient
    let mut gw = Array2::<f64>::zeros((v, hs));
    let mut gb = Array1::<f64>::zeros(v);
    for r in 0..n {
        let mut e = Array1::<f64>::zeros(n);
        e[r] = 1.0;
        let one_hot = own(&h, topk, &opts(None), &GradOutput::Array(e.view().into_dyn()));
        gw = gw + one_hot.grad_weight * u[r];
        gb = gb + one_hot.grad_bias.unwrap() * u[r];
        // a row's hidden-state gradient depends on its own upstream gradient only
        let row = one_hot.grad_hidden.row(r).to_owned() * u[r];
        assert_close(&format!("row {r}"), &base.grad_hidden.row(r).to_vec(), &row.to_vec(), 1e-13, 1e-15);
    }
    assert_close("grad_weight", &flat2(&base.grad_weight), &flat2(&gw), 1e-12, 1e-14);
    assert_close("grad_bias", &base.grad_bias.clone().unwrap().to_vec(), &gb.to_vec(), 1e-12, 1e-14);
    // the same per-row loss whatever the upstream gradient, and chunk sizes agree
    let unit = own(&h, topk, &opts(Some(4)), &GradOutput::one());
    assert_eq!(base.loss, unit.loss);
    for chunk in [Some(1), Some(3), Some(10), None] {
        let other = own(&h, topk, &opts(chunk), &per_row);
        assert_same_output(&format!("chunk {chunk:?}"), &other, &base, 1e-13, 1e-16);
    }
    // a scalar upstream gradient for 'none' means every row gets it
    let s = own(&h, topk, &opts(Some(4)), &GradOutput::Scalar(2.5));
    let twice = GradOutput::Array(infoloss::ndarray::ArrayView1::from(&[2.5f64; 10][..]).into_dyn());
    let a = own(&h, topk, &opts(Some(4)), &twice);
    assert_eq!(s.grad_weight, a.grad_weight);
}

#[test]
fn teacher_bias_moves_the_loss_and_the_top_k() {
    // with a teacher bias that favours class 0 strongly, the top-1 teacher is class 0 in every row
    let (n, hs, ht, v) = (4, 3, 2, 5);
    let mut h = heads(n, hs, ht, v, 600);
    let opts = LinearDistillOptions {
        distill: DistillOptions { reduction: Reduction::None, ..Default::default() },
        chunk_size: None,
    };
    let topk = Some(TeacherTopK { k: 1, add_tail: true });
    let before = own(&h, topk, &opts, &GradOutput::one());
    h.bt = array![50.0, 0.0, 0.0, 0.0, 0.0];
    let after = own(&h, topk, &opts, &GradOutput::one());
    assert_ne!(before.loss, after.loss);
    // the teacher is (numerically) one-hot on class 0, its tail bucket ~0: the row loss is −log p_0
    let s = logits(&h.xs, &h.ws, &h.bs);
    let rows = after.loss.elementwise().expect("per row").clone();
    for r in 0..n {
        let lse = s.row(r).iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!(
            (rows[[r]] - (lse - s[[r, 0]])).abs() < 1e-12,
            "row {r}: {} vs {}",
            rows[[r]],
            lse - s[[r, 0]]
        );
    }
}

#[test]
fn nan_teacher_logit_is_top_and_makes_its_row_nan() {
    let xs = array![[1.0f64, 0.0], [0.0, 1.0]];
    let ws = array![[0.5f64, 0.1], [0.2, -0.4], [0.0, 0.3]];
    let xt = array![[f64::NAN], [1.0]];
    let wt = array![[1.0f64], [0.5], [-1.0]];
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: None };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: None };
    let opts = LinearDistillOptions {
        distill: DistillOptions { reduction: Reduction::None, ..Default::default() },
        chunk_size: Some(1),
    };
    let out = top2_with_tail(&student, &teacher, &opts, &GradOutput::one());
    let l = out.loss.elementwise().unwrap();
    assert!(l[[0]].is_nan() && l[[1]].is_finite(), "{l:?}");
    assert!(out.grad_hidden.row(0).iter().all(|v| v.is_nan()));
    assert!(out.grad_hidden.row(1).iter().all(|v| v.is_finite()));
}

#[test]
fn errors_name_biases_k_and_upstream_shapes() {
    let h = heads(3, 2, 2, 4, 700);
    let opts = LinearDistillOptions::default();
    let msg = |bs: Option<&Array1<f64>>,
               bt: Option<&Array1<f64>>,
               topk,
               g: &GradOutput<'_, f64>,
               o: &LinearDistillOptions| {
        let student = LinearHead { hidden: h.xs.view(), weight: h.ws.view(), bias: bs.map(|b| b.view()) };
        let teacher = LinearHead { hidden: h.xt.view(), weight: h.wt.view(), bias: bt.map(|b| b.view()) };
        linear_distill_backward(&student, &teacher, None, topk, o, g).unwrap_err().to_string()
    };
    let short = Array1::<f64>::zeros(3);
    assert_eq!(
        msg(Some(&short), None, None, &GradOutput::one(), &opts),
        "linear_distill: student_bias shape [3] and student_weight shape [4, 2] are not compatible: student_bias \
         must have one entry per output row of student_weight (V)"
    );
    assert_eq!(
        msg(None, Some(&short), None, &GradOutput::one(), &opts),
        "linear_distill: teacher_bias shape [3] and teacher_weight shape [4, 2] are not compatible: teacher_bias \
         must have one entry per output row of teacher_weight (V)"
    );
    assert_eq!(
        msg(None, None, Some(TeacherTopK { k: 5, add_tail: false }), &GradOutput::one(), &opts),
        "linear_distill: invalid teacher_topk.k = 5: must be at most the number of classes (4)"
    );
    let g2 = Array1::<f64>::ones(2);
    let none = LinearDistillOptions {
        distill: DistillOptions { reduction: Reduction::None, ..Default::default() },
        chunk_size: None,
    };
    assert_eq!(
        msg(None, None, None, &GradOutput::Array(g2.view().into_dyn()), &none),
        "linear_distill: grad_output shape [2] and output shape [3] must be equal"
    );
    assert_eq!(
        msg(None, None, None, &GradOutput::Array(g2.view().into_dyn()), &opts),
        "linear_distill: grad_output shape [2] and output shape [] must be equal (the loss is reduced to a scalar)"
    );
}

#[test]
fn zero_k_and_empty_inputs() {
    // k = 0 with the tail: both tails hold all the mass, the soft loss is 0 and so is the gradient
    let h = heads(3, 2, 2, 4, 800);
    let opts = LinearDistillOptions::default();
    let out = own(&h, Some(TeacherTopK { k: 0, add_tail: true }), &opts, &GradOutput::one());
    assert_eq!(out.loss.scalar(), Some(0.0));
    assert!(out.grad_weight.iter().all(|&g| g == 0.0));
    // no rows: BatchMean of nothing is NaN with zero gradients (a bias gradient of zeros)
    let e = Array2::<f64>::zeros((0, 2));
    let student = LinearHead { hidden: e.view(), weight: h.ws.view(), bias: Some(h.bs.view()) };
    let teacher = LinearHead { hidden: e.view(), weight: h.wt.view(), bias: Some(h.bt.view()) };
    let out = top2_with_tail(&student, &teacher, &opts, &GradOutput::Scalar(3.0));
    assert!(out.loss.scalar().unwrap().is_nan());
    assert_eq!(out.grad_bias.unwrap().to_vec(), vec![0.0; 4]);
    assert_eq!(out.grad_hidden.shape(), &[0, 2]);
}

#[test]
fn workspace_counts_bias_and_topk_buffers() {
    let opts = LinearDistillOptions { chunk_size: Some(50), ..Default::default() };
    let plain = linear_distill_workspace::<f64>(1000, 64, 32, 5000, &opts);
    assert_eq!(plain, linear_distill_workspace_with::<f64>(1000, 64, 32, 5000, false, None, &opts));
    let full = linear_distill_workspace_with::<f64>(
        1000,
        64,
        32,
        5000,
        true,
        Some(TeacherTopK { k: 100, add_tail: true }),
        &opts,
    );
    assert_eq!(full.bias_accumulator_bytes, 8 * 5000);
    assert_eq!(full.teacher_topk_bytes, 50 * 100 * 16);
    assert!(full.row_scratch_bytes > plain.row_scratch_bytes);
    assert_eq!(
        full.total_bytes,
        2 * full.logits_chunk_bytes
            + full.row_scratch_bytes
            + full.per_row_bytes
            + full.bias_accumulator_bytes
            + full.teacher_topk_bytes
            + full.gemm_packing_bytes
    );
}

/// `T: LinearFloat` generic smoke test: f32 and f64 run the same top-k path.
fn generic_runs<T: LinearFloat>() -> f64 {
    let xs = Array2::from_shape_fn((4, 3), |(i, j)| to_t::<T>((i as f64 - 1.5) * 0.3 + j as f64 * 0.2));
    let ws = Array2::from_shape_fn((6, 3), |(i, j)| to_t::<T>(((i * 3 + j) % 5) as f64 * 0.25 - 0.5));
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: None };
    let rev: ArrayView2<'_, T> = ws.slice(infoloss::ndarray::s![..;-1, ..]);
    let teacher = LinearHead { hidden: xs.view(), weight: rev, bias: None };
    let out = linear_distill_backward(
        &student,
        &teacher,
        None,
        Some(TeacherTopK { k: 3, add_tail: true }),
        &LinearDistillOptions::default(),
        &GradOutput::one(),
    )
    .unwrap();
    to_f64(out.loss.scalar().unwrap())
}

#[test]
fn f32_and_f64_agree() {
    let (a, b) = (generic_runs::<f32>(), generic_runs::<f64>());
    assert!(b > 0.01 && (a - b).abs() <= 1e-6 * b, "{a} vs {b}");
}

// ---------------------------------------------------------------------------------------------
// linear_distill_topk (a stored top-k teacher) and the student logit scale / softcap
// ---------------------------------------------------------------------------------------------

/// `linear_distill_topk` of `h`'s student (its own hidden states unless `xs`/`ws`/`bs` replace them).
#[allow(clippy::too_many_arguments)]
fn run_topk<T: LinearFloat>(
    xs: &Array2<T>,
    ws: &Array2<T>,
    bs: Option<&Array1<T>>,
    idx: &Array2<i64>,
    lq: &Array2<T>,
    tail: bool,
    labels: Option<&Array1<i64>>,
    opts: &LinearDistillOptions,
    g: &GradOutput<'_, T>,
) -> LinearDistillOutput<T> {
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: bs.map(|b| b.view()) };
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: tail };
    linear_distill_topk(&student, &teacher, labels.map(|y| y.view()), opts, g).expect("linear_distill_topk")
}

fn distill_opts(
    div: Divergence,
    reduction: Reduction,
    alpha: f64,
    map: (Option<f64>, f64),
) -> DistillOptions {
    DistillOptions {
        divergence: div,
        reduction,
        alpha,
        temperature: 1.7,
        softcap: map.0,
        logit_scale: map.1,
        ..Default::default()
    }
}

#[test]
fn fd_linear_distill_topk() {
    let (n, hs, v) = (5, 3, 7);
    let h = heads(n, hs, 4, v, 1100);
    let y = array![2i64, -100, 0, 6, 3];
    let per_row = array![0.5f64, -1.25, 2.0, 0.75, -0.3];
    let t = logits(&h.xt, &h.wt, &h.bt);
    // (divergence, reduction, alpha, k, tail, (softcap, logit_scale))
    type Case = (Divergence, Reduction, f64, usize, bool, (Option<f64>, f64));
    let cases: Vec<Case> = vec![
        (Divergence::ForwardKl, Reduction::BatchMean, 1.0, 3, true, (None, 1.0)),
        (Divergence::ReverseKl, Reduction::None, 0.5, 2, false, (Some(2.0), 1.0)),
        (Divergence::GeneralizedJsd { beta: 0.3 }, Reduction::Sum, 0.6, 3, true, (None, 1.6)),
        (Divergence::TotalVariation, Reduction::Mean, 0.8, 4, true, (Some(1.5), 0.7)),
        (Divergence::ForwardKl, Reduction::None, 1.0, 7, false, (Some(3.0), 1.3)),
    ];
    let mut checked = 0;
    for (div, red, alpha, k, tail, map) in cases {
        let d = distill_opts(div, red, alpha, map);
        let (idx, lq) = naive_top_k(&t, k, d.temperature);
        let opts = LinearDistillOptions { distill: d, chunk_size: Some(2) };
        let labels = (alpha < 1.0).then_some(&y);
        let g = if red == Reduction::None {
            GradOutput::Array(per_row.view().into_dyn())
        } else {
            GradOutput::Scalar(-0.7)
        };
        let out = run_topk(&h.xs, &h.ws, Some(&h.bs), &idx, &lq, tail, labels, &opts, &g);
        let f = |xs: &Array2<f64>, ws: &Array2<f64>, bs: &Array1<f64>| {
            objective(&run_topk(xs, ws, Some(bs), &idx, &lq, tail, labels, &opts, &g).loss, &g)
        };
        let what = format!("{div:?} {red} alpha {alpha} k {k} tail {tail} map {map:?}");
        checked += fd_check_student(&what, &h, &out, f);
    }
    assert_eq!(checked, 5 * (n * hs + v * hs + v));
}

#[test]
fn fd_softcap_and_logit_scale_in_every_distill_path() {
    let (n, v) = (4, 6);
    let s = rand_matrix(n, v, 1200, 3.0);
    let t = rand_matrix(n, v, 1201, 2.0);
    let y = array![1i64, 5, -100, 0];
    let (idx, lq) = naive_top_k(&t, 3, 1.7);
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let per_row = array![0.5f64, -1.25, 2.0, 0.75];
    for map in [(Some(2.0), 1.0), (None, 1.8), (Some(1.5), 0.6)] {
        for (div, red, alpha) in [
            (Divergence::ForwardKl, Reduction::BatchMean, 0.6),
            (Divergence::ReverseKl, Reduction::None, 1.0),
            (Divergence::GeneralizedJsd { beta: 0.4 }, Reduction::Sum, 0.3),
            (Divergence::TotalVariation, Reduction::Mean, 0.9),
        ] {
            let o = distill_opts(div, red, alpha, map);
            let labels = (alpha < 1.0).then(|| y.view());
            let g = if red == Reduction::None {
                GradOutput::Array(per_row.view().into_dyn())
            } else {
                GradOutput::Scalar(1.3)
            };
            let what = format!("{div:?} {red} alpha {alpha} map {map:?}");
            let dense = infoloss::distill_backward(s.view(), t.view(), labels, &o, &g).unwrap();
            let dense = dense.into_dimensionality().unwrap();
            fd_check(&format!("distill {what}"), &s, &dense, |x| {
                objective(&infoloss::distill(x.view(), t.view(), labels, &o).unwrap(), &g)
            });
            let sparse = infoloss::distill_topk_backward(s.view(), &teacher, labels, &o, &g).unwrap();
            let sparse = sparse.into_dimensionality().unwrap();
            fd_check(&format!("distill_topk {what}"), &s, &sparse, |x| {
                objective(&infoloss::distill_topk(x.view(), &teacher, labels, &o).unwrap(), &g)
            });
        }
    }
    // linear_distill (dense and computed top-k teachers) with a softcap and a scale
    let h = heads(5, 3, 4, 7, 1210);
    for topk in [None, Some(TeacherTopK { k: 3, add_tail: true })] {
        let d = distill_opts(
            Divergence::GeneralizedJsd { beta: 0.5 },
            Reduction::BatchMean,
            1.0,
            (Some(2.0), 1.4),
        );
        let opts = LinearDistillOptions { distill: d, chunk_size: Some(2) };
        let g = GradOutput::Scalar(0.8);
        let out = own(&h, topk, &opts, &g);
        fd_check(&format!("linear_distill {topk:?} hidden"), &h.xs, &out.grad_hidden, |x| {
            objective(&run(&h, x, &h.ws, Some(&h.bs), None, topk, &opts, &g).loss, &g)
        });
        fd_check(&format!("linear_distill {topk:?} weight"), &h.ws, &out.grad_weight, |w| {
            objective(&run(&h, &h.xs, w, Some(&h.bs), None, topk, &opts, &g).loss, &g)
        });
    }
}

#[test]
fn softcap_matches_capped_logits_and_defaults_change_nothing() {
    let (n, v) = (5, 8);
    let s = rand_matrix(n, v, 1300, 6.0);
    let t = rand_matrix(n, v, 1301, 2.0);
    let y = array![1i64, 5, -100, 0, 7];
    let (a, c) = (1.3, 2.5);
    let capped = s.mapv(|x| c * (a * x / c).tanh());
    let map = DistillOptions { alpha: 0.6, softcap: Some(c), logit_scale: a, ..Default::default() };
    let plain = DistillOptions { alpha: 0.6, ..Default::default() };
    // the loss is the plain loss of the capped logits (every term, the cross-entropy included)
    let l1 = infoloss::distill(s.view(), t.view(), Some(y.view()), &map).unwrap().scalar().unwrap();
    let l2 = infoloss::distill(capped.view(), t.view(), Some(y.view()), &plain).unwrap().scalar().unwrap();
    assert!((l1 - l2).abs() <= 1e-14 * l2.abs(), "{l1} vs {l2}");
    // logit_scale = 1 and no softcap are the defaults: bit for bit the same result
    let explicit = DistillOptions { softcap: None, logit_scale: 1.0, ..plain };
    assert_eq!(
        infoloss::distill_with_grad(s.view(), t.view(), Some(y.view()), &explicit).unwrap(),
        infoloss::distill_with_grad(s.view(), t.view(), Some(y.view()), &plain).unwrap()
    );
    // f32 takes the fast path: it agrees with f64
    let s32 = s.mapv(|x| x as f32);
    let t32 = t.mapv(|x| x as f32);
    let (l32, g32) = infoloss::distill_with_grad(s32.view(), t32.view(), Some(y.view()), &map).unwrap();
    let s64 = s32.mapv(f64::from);
    let t64 = t32.mapv(f64::from);
    let (l64, g64) = infoloss::distill_with_grad(s64.view(), t64.view(), Some(y.view()), &map).unwrap();
    assert!((f64::from(l32.scalar().unwrap()) - l64.scalar().unwrap()).abs() < 1e-6);
    let g32: Vec<f64> = g32.iter().map(|&x| f64::from(x)).collect();
    assert_close("f32 softcap gradient", &g32, &flat2(&g64), 1e-5, 1e-7);
}

#[test]
fn topk_with_k_equal_v_without_tail_equals_linear_distill() {
    // teacher logits t through an identity head, so both losses see exactly t
    let (n, hs, v) = (7, 3, 6);
    let h = heads(n, hs, 2, v, 1400);
    let t = rand_matrix(n, v, 1401, 2.0);
    let eye = Array2::<f64>::eye(v);
    let y = array![2i64, -100, 0, 5, 3, 1, -100];
    for map in [(None, 1.0), (Some(2.0), 1.3)] {
        for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::GeneralizedJsd { beta: 0.3 }] {
            for (red, alpha) in [(Reduction::BatchMean, 1.0), (Reduction::None, 0.5), (Reduction::Sum, 0.7)] {
                let d = distill_opts(div, red, alpha, map);
                let (idx, lq) = naive_top_k(&t, v, d.temperature);
                let opts = LinearDistillOptions { distill: d, chunk_size: Some(3) };
                let labels = (alpha < 1.0).then_some(&y);
                let g = GradOutput::Scalar(1.5);
                let sparse = run_topk(&h.xs, &h.ws, Some(&h.bs), &idx, &lq, false, labels, &opts, &g);
                let student =
                    LinearHead { hidden: h.xs.view(), weight: h.ws.view(), bias: Some(h.bs.view()) };
                let teacher = LinearHead { hidden: t.view(), weight: eye.view(), bias: None };
                let dense =
                    linear_distill_backward(&student, &teacher, labels.map(|y| y.view()), None, &opts, &g)
                        .unwrap();
                let what = format!("k = V {div:?} {red} alpha {alpha} map {map:?}");
                assert_same_output(&what, &sparse, &dense, 1e-13, 1e-15);
            }
        }
    }
}

/// The `f32` or `f64` stored-teacher result at chunk size `chunk` on `threads` threads.
fn topk_at<T: LinearFloat>(
    chunk: Option<usize>,
    threads: usize,
    map: (Option<f64>, f64),
) -> LinearDistillOutput<T> {
    let (n, hs, v, k) = (23, 5, 40, 6);
    let h = heads(n, hs, 2, v, 1500);
    let t = rand_matrix(n, v, 1501, 2.0);
    let (idx, lq) = naive_top_k(&t, k, 1.7);
    let c = |a: &Array2<f64>| a.mapv(to_t::<T>);
    let bs = h.bs.mapv(to_t::<T>);
    let y: Array1<i64> = (0..n as i64).map(|r| if r % 5 == 2 { -100 } else { (r * 7) % v as i64 }).collect();
    let d = distill_opts(Divergence::GeneralizedJsd { beta: 0.4 }, Reduction::BatchMean, 0.7, map);
    let opts = LinearDistillOptions { distill: d, chunk_size: chunk };
    let (xs, ws, lq) = (c(&h.xs), c(&h.ws), c(&lq));
    crate::support::on_threads(threads, || {
        run_topk(&xs, &ws, Some(&bs), &idx, &lq, true, Some(&y), &opts, &GradOutput::Scalar(to_t(0.9)))
    })
}

fn widen<T: LinearFloat>(o: &LinearDistillOutput<T>) -> LinearDistillOutput<f64> {
    LinearDistillOutput {
        loss: Loss::Scalar(to_f64(o.loss.scalar().unwrap())),
        grad_hidden: o.grad_hidden.mapv(to_f64),
        grad_weight: o.grad_weight.mapv(to_f64),
        grad_bias: o.grad_bias.as_ref().map(|b| b.mapv(to_f64)),
    }
}

fn thread_and_chunk_invariance<T: LinearFloat>(tol: f64) {
    for map in [(None, 1.0), (Some(3.0), 1.2)] {
        for chunk in [Some(1), Some(4), Some(7), None] {
            // bit for bit on 1, 2 and 3 threads
            let one = topk_at::<T>(chunk, 1, map);
            for threads in [2, 3] {
                assert_eq!(
                    topk_at::<T>(chunk, threads, map),
                    one,
                    "chunk {chunk:?} threads {threads} {map:?}"
                );
            }
            // chunks change only the order of the sums over chunks (the loss, the weight and bias gradients)
            let base = widen(&topk_at::<T>(Some(5), 1, map));
            assert_same_output(&format!("chunk {chunk:?} {map:?}"), &widen(&one), &base, tol, tol * 1e-2);
        }
    }
}

#[test]
fn linear_distill_topk_is_thread_and_chunk_invariant() {
    thread_and_chunk_invariance::<f64>(1e-13);
    thread_and_chunk_invariance::<f32>(1e-5);
}

#[test]
fn linear_distill_topk_errors_name_shapes_indices_and_options() {
    let h = heads(3, 2, 2, 4, 1600);
    let idx = array![[0i64, 1], [2, 3], [1, 0]];
    let lq = array![[-0.5f64, -1.5], [-0.7, -1.0], [-0.2, -2.0]];
    let msg = |idx: &Array2<i64>, lq: &Array2<f64>, d: DistillOptions| {
        let student = LinearHead { hidden: h.xs.view(), weight: h.ws.view(), bias: None };
        let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
        let opts = LinearDistillOptions { distill: d, chunk_size: None };
        linear_distill_topk(&student, &teacher, None, &opts, &GradOutput::one()).unwrap_err().to_string()
    };
    let ok = DistillOptions::default();
    assert_eq!(
        msg(&idx, &lq.slice(infoloss::ndarray::s![.., ..1]).to_owned(), ok),
        "linear_distill_topk: topk_indices shape [3, 2] and topk_logprobs shape [3, 1] must have the same shape (N, k)"
    );
    assert_eq!(
        msg(
            &idx.slice(infoloss::ndarray::s![..2, ..]).to_owned(),
            &lq.slice(infoloss::ndarray::s![..2, ..]).to_owned(),
            ok
        ),
        "linear_distill_topk: topk_indices shape [2, 2] and student_hidden shape [3, 2] must have the same number of rows N"
    );
    let mut bad = idx.clone();
    bad[[1, 1]] = 4;
    assert!(msg(&bad, &lq, ok).contains("topk_indices"), "{}", msg(&bad, &lq, ok));
    assert!(msg(&bad, &lq, ok).contains("out of range for 4 classes"));
    bad[[1, 1]] = 2;
    assert!(msg(&bad, &lq, ok).contains("repeats an index earlier in its row"));
    // the options are validated as distill validates them (the message names distill and the option)
    let cap = DistillOptions { softcap: Some(0.0), ..ok };
    assert!(msg(&idx, &lq, cap).ends_with("invalid softcap = 0: must be a finite number > 0"));
    let scale = DistillOptions { logit_scale: f64::INFINITY, ..ok };
    assert!(msg(&idx, &lq, scale).ends_with("invalid logit_scale = inf: must be a finite number > 0"));
}
