//! Cross-entropy extras (z-loss, softcap, lse, token accuracy) and the fused linear losses
//! (`linear_cross_entropy`, `linear_distill`):
//!
//! - central finite differences in f64;
//! - the fused results against the unfused ones on materialized logits, chunk-size invariance, non-standard
//!   layouts, empty shapes, error messages, and the workspace sizes.
//!
//! Their PyTorch 2.15 fixtures (`testdata/ce_extras.json`, `testdata/linear.json`) run in `fixtures.rs`.

use infoloss::distill::{DistillOptions, Divergence};
use infoloss::ndarray::{Array, Array1, Array2, Dimension, ShapeBuilder, array};
use infoloss::{
    CrossEntropyExtrasOptions, Error, GradOutput, LinearCrossEntropyOptions, LinearDistillOptions, Loss,
    Reduction, cross_entropy_extras_with_grad, linear_cross_entropy, linear_cross_entropy_backward,
    linear_cross_entropy_workspace, linear_distill, linear_distill_workspace,
};

// ---------------------------------------------------------------------------------------------------------------
// Deterministic pseudo-random data
// ---------------------------------------------------------------------------------------------------------------

/// Student hidden states and weight, teacher hidden states and weight, labels.
type DistillHeads = (Array2<f64>, Array2<f64>, Array2<f64>, Array2<f64>, Array1<i64>);

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn matrix(&mut self, r: usize, c: usize, scale: f64) -> Array2<f64> {
        Array2::from_shape_fn((r, c), |_| self.normal() * scale)
    }
    fn labels(&mut self, n: usize, v: usize, ignore_every: usize) -> Array1<i64> {
        Array1::from_shape_fn(n, |i| {
            if ignore_every > 0 && i % ignore_every == 1 {
                -100
            } else {
                (self.next() * v as f64) as i64 % v as i64
            }
        })
    }
    /// Hidden states, weight and bias (of scales `wscale` and `bscale`) and labels of a `(rows, width, classes)`
    /// linear cross-entropy, drawn in that order.
    fn linear_head(
        &mut self,
        (n, hd, v): (usize, usize, usize),
        (wscale, bscale): (f64, f64),
        ignore_every: usize,
    ) -> (Array2<f64>, Array2<f64>, Array1<f64>, Array1<i64>) {
        let (h, w) = (self.matrix(n, hd, 1.0), self.matrix(v, hd, wscale));
        let b = Array1::from_shape_fn(v, |_| self.normal() * bscale);
        (h, w, b, self.labels(n, v, ignore_every))
    }
    /// Student hidden states and weight, teacher hidden states and weight (the weights of scale `wscale`) and
    /// labels of a `(rows, student width, teacher width, classes)` distillation, drawn in that order.
    fn distill_heads(
        &mut self,
        (n, hs, ht, v): (usize, usize, usize, usize),
        wscale: f64,
        ignore_every: usize,
    ) -> DistillHeads {
        let (xs, ws) = (self.matrix(n, hs, 1.0), self.matrix(v, hs, wscale));
        let (xt, wt) = (self.matrix(n, ht, 1.0), self.matrix(v, ht, wscale));
        (xs, ws, xt, wt, self.labels(n, v, ignore_every))
    }
}

fn full_options<'a>(w: Option<&'a Array1<f64>>, red: Reduction) -> CrossEntropyExtrasOptions<'a, f64> {
    CrossEntropyExtrasOptions {
        weight: w.map(|w| w.view()),
        reduction: red,
        label_smoothing: 0.15,
        lse_square_scale: 0.03,
        softcap: Some(2.5),
        return_lse: true,
        return_token_accuracy: true,
        ..Default::default()
    }
}

fn scalar(l: &Loss<f64>) -> f64 {
    match l {
        Loss::Scalar(v) => *v,
        Loss::Elementwise(a) => a.sum(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Finite differences (f64, central, h = 1e-6)
// ---------------------------------------------------------------------------------------------------------------

const FD_H: f64 = 1e-6;

fn fd_close(analytic: f64, numeric: f64) -> bool {
    (analytic - numeric).abs() <= 2e-7 * (1.0 + analytic.abs())
}

/// Every element of `got` (a gradient wrt `at`) against the central difference of `loss` in that element.
#[track_caller]
fn assert_fd_wrt<D: Dimension>(
    what: &str,
    got: &Array<f64, D>,
    at: &Array<f64, D>,
    loss: impl Fn(&Array<f64, D>) -> f64,
) {
    assert_eq!(got.shape(), at.shape(), "{what}");
    for (k, (idx, &g)) in got.indexed_iter().enumerate() {
        let (mut p, mut m) = (at.clone(), at.clone());
        p.as_slice_mut().unwrap()[k] += FD_H;
        m.as_slice_mut().unwrap()[k] -= FD_H;
        let num = (loss(&p) - loss(&m)) / (2.0 * FD_H);
        assert!(fd_close(g, num), "{what} {idx:?} {g} vs {num}");
    }
}

#[test]
fn fd_cross_entropy_extras() {
    let mut rng = Lcg(7);
    let x = rng.matrix(5, 7, 2.0);
    let y = rng.labels(5, 7, 3);
    let w = Array1::from_shape_fn(7, |i| 0.3 + 0.2 * i as f64);
    let mut checked = 0;
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let o = full_options(Some(&w), red);
        let g = cross_entropy_extras_with_grad(x.view(), y.view(), &o).unwrap().grad;
        assert_fd_wrt(&red.to_string(), &g, &x, |xp| {
            scalar(&cross_entropy_extras_with_grad(xp.view(), y.view(), &o).unwrap().loss)
        });
        checked += g.len();
    }
    assert_eq!(checked, 3 * 35);
}

#[test]
fn fd_linear_cross_entropy() {
    let mut rng = Lcg(11);
    let (n, hd, v) = (6, 4, 9);
    let (h, wt, b, y) = rng.linear_head((n, hd, v), (0.7, 0.3), 4);
    let cw = Array1::from_shape_fn(v, |i| 0.5 + 0.1 * i as f64);
    for red in [Reduction::Mean, Reduction::Sum] {
        let opts = LinearCrossEntropyOptions { ce: full_options(Some(&cw), red), chunk_size: Some(4) };
        let out = linear_cross_entropy(h.view(), wt.view(), Some(b.view()), y.view(), &opts).unwrap();
        let loss = |h: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>| {
            scalar(&linear_cross_entropy(h.view(), w.view(), Some(b.view()), y.view(), &opts).unwrap().loss)
        };
        assert_fd_wrt("hidden", &out.grad_hidden, &h, |p| loss(p, &wt, &b));
        assert_fd_wrt("weight", &out.grad_weight, &wt, |p| loss(&h, p, &b));
        assert_fd_wrt("bias", out.grad_bias.as_ref().unwrap(), &b, |p| loss(&h, &wt, p));
    }
}

#[test]
fn fd_linear_distill() {
    let mut rng = Lcg(13);
    let (n, hs, ht, v) = (5, 4, 3, 8);
    let (xs, ws, xt, wt, y) = rng.distill_heads((n, hs, ht, v), 0.8, 3);
    for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::GeneralizedJsd { beta: 0.3 }] {
        let opts = LinearDistillOptions {
            distill: DistillOptions { temperature: 1.7, divergence: div, alpha: 0.6, ..Default::default() },
            chunk_size: Some(2),
        };
        let out = linear_distill(xs.view(), ws.view(), xt.view(), wt.view(), Some(y.view()), &opts).unwrap();
        let loss = |a: &Array2<f64>, b: &Array2<f64>| {
            scalar(
                &linear_distill(a.view(), b.view(), xt.view(), wt.view(), Some(y.view()), &opts)
                    .unwrap()
                    .loss,
            )
        };
        assert_fd_wrt(&format!("{div:?} hidden"), &out.grad_hidden, &xs, |p| loss(p, &ws));
        assert_fd_wrt(&format!("{div:?} weight"), &out.grad_weight, &ws, |p| loss(&xs, p));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fused vs unfused, chunking, layouts
// ---------------------------------------------------------------------------------------------------------------

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn linear_ce_equals_extras_on_materialized_logits() {
    let mut rng = Lcg(17);
    let (n, hd, v) = (23, 6, 37);
    let (h, w, b, y) = rng.linear_head((n, hd, v), (0.5, 0.2), 5);
    let cw = Array1::from_shape_fn(v, |i| 1.0 + (i % 3) as f64);
    let logits = h.dot(&w.t()) + &b;
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = full_options(Some(&cw), red);
        let r = cross_entropy_extras_with_grad(logits.view(), y.view(), &ce).unwrap();
        let gh = r.grad.dot(&w);
        let gw = r.grad.t().dot(&h);
        let gb = r.grad.sum_axis(infoloss::ndarray::Axis(0));
        for chunk in [1, 2, 5, 23, 1000] {
            let opts = LinearCrossEntropyOptions { ce: ce.clone(), chunk_size: Some(chunk) };
            let out = linear_cross_entropy(h.view(), w.view(), Some(b.view()), y.view(), &opts).unwrap();
            let (l1, l2) = (out.loss.clone().into_array(), r.loss.clone().into_array());
            for (a, e) in l1.iter().zip(l2.iter()) {
                assert!((a - e).abs() <= 1e-13 * (1.0 + e.abs()), "{red} chunk {chunk}: loss {a} vs {e}");
            }
            assert!(max_abs_diff(&out.grad_hidden, &gh) < 1e-14, "{red} chunk {chunk}");
            assert!(max_abs_diff(&out.grad_weight, &gw) < 1e-14, "{red} chunk {chunk}");
            let gb2 = out.grad_bias.unwrap();
            assert!(gb2.iter().zip(gb.iter()).all(|(a, e)| (a - e).abs() < 1e-14));
            assert_eq!(out.token_accuracy, r.token_accuracy);
            let (la, lb) = (out.lse.unwrap(), r.lse.clone().unwrap());
            assert!(la.iter().zip(lb.iter()).all(|(a, e)| (a - e).abs() < 1e-13));
        }
    }
}

#[test]
fn linear_ce_f32_chunking_is_invariant_and_layouts_agree() {
    let mut rng = Lcg(19);
    let (n, hd, v) = (40, 16, 300);
    let h = rng.matrix(n, hd, 1.0).mapv(|x| x as f32);
    let w = rng.matrix(v, hd, 0.3).mapv(|x| x as f32);
    let y = rng.labels(n, v, 6);
    let ce = CrossEntropyExtrasOptions { lse_square_scale: 1e-3, softcap: Some(5.0), ..Default::default() };
    let run = |h: &Array2<f32>, w: &Array2<f32>, chunk: usize| {
        let opts = LinearCrossEntropyOptions { ce: ce.clone(), chunk_size: Some(chunk) };
        linear_cross_entropy(h.view(), w.view(), None, y.view(), &opts).unwrap()
    };
    let base = run(&h, &w, 40);
    for chunk in [1, 7, 13, 39] {
        let out = run(&h, &w, chunk);
        // only the GEMMs' blocking (and the weight-gradient accumulation order) changes with the chunking
        let rel = |a: &Array2<f32>, b: &Array2<f32>| {
            let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / m
        };
        let (l, l0) = (out.loss.scalar().unwrap(), base.loss.scalar().unwrap());
        assert!((l - l0).abs() <= 2e-7 * l0.abs(), "chunk {chunk}: loss {l} vs {l0}");
        assert!(rel(&out.grad_hidden, &base.grad_hidden) < 1e-5, "chunk {chunk}");
        assert!(rel(&out.grad_weight, &base.grad_weight) < 1e-5, "chunk {chunk}");
    }
    // Fortran-order copies (non-standard layout) give the same result
    let fortran = |x: &Array2<f32>| {
        let mut a = Array2::<f32>::zeros(x.raw_dim().f());
        a.assign(x);
        a
    };
    assert_eq!(run(&fortran(&h), &fortran(&w), 40), base);
}

#[test]
fn linear_distill_equals_distill_on_materialized_logits() {
    let mut rng = Lcg(23);
    let (n, hs, ht, v) = (17, 5, 3, 29);
    let (xs, ws, xt, wt, y) = rng.distill_heads((n, hs, ht, v), 0.6, 4);
    let s = xs.dot(&ws.t());
    let t = xt.dot(&wt.t());
    for red in [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None] {
        for div in
            [Divergence::ForwardKl, Divergence::TotalVariation, Divergence::GeneralizedJsd { beta: 0.5 }]
        {
            let d = DistillOptions {
                temperature: 2.0,
                divergence: div,
                alpha: 0.8,
                reduction: red,
                ..Default::default()
            };
            let (l, g) = infoloss::distill_with_grad(s.view(), t.view(), Some(y.view()), &d).unwrap();
            for chunk in [1, 4, 17, 100] {
                let opts = LinearDistillOptions { distill: d, chunk_size: Some(chunk) };
                let out = linear_distill(xs.view(), ws.view(), xt.view(), wt.view(), Some(y.view()), &opts)
                    .unwrap();
                let (a, e) = (out.loss.into_array(), l.clone().into_array());
                assert_eq!(a.shape(), e.shape());
                for (a, e) in a.iter().zip(e.iter()) {
                    assert!(
                        (a - e).abs() <= 1e-13 * (1.0 + e.abs()),
                        "{red} {div:?} chunk {chunk}: {a} vs {e}"
                    );
                }
                assert!(max_abs_diff(&out.grad_hidden, &g.dot(&ws)) < 1e-14);
                assert!(max_abs_diff(&out.grad_weight, &g.t().dot(&xs)) < 1e-14);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Definitions (Liger-Kernel's) checked directly
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn z_loss_is_count_normalized_and_unweighted() {
    // two rows, one ignored: with class weights, CE divides by W = w[y0] but the z-loss by n = 1
    let x = array![[1.0f64, 2.0, 0.0], [0.5, 0.5, 0.5]];
    let y = array![1i64, -100];
    let w = array![1.0f64, 4.0, 1.0];
    let s = 0.1;
    let o = CrossEntropyExtrasOptions {
        weight: Some(w.view()),
        lse_square_scale: s,
        label_smoothing: 0.3,
        ..Default::default()
    };
    let out = cross_entropy_extras_with_grad(x.view(), y.view(), &o).unwrap();
    let lse0 = (1f64.exp() + 2f64.exp() + 1.0).ln();
    assert!((out.z_loss.scalar().unwrap() - s * lse0 * lse0).abs() < 1e-15);
    let ce = infoloss::cross_entropy(
        x.view(),
        y.view(),
        &infoloss::CrossEntropyOptions { weight: Some(w.view()), label_smoothing: 0.3, ..Default::default() },
    )
    .unwrap()
    .scalar()
    .unwrap();
    assert!((out.loss.scalar().unwrap() - (ce + s * lse0 * lse0)).abs() < 1e-15);
    // its gradient is 2·s·lse·softmax (count-normalized), added to the CE gradient
    let o0 = CrossEntropyExtrasOptions { lse_square_scale: 0.0, ..o.clone() };
    let g0 = cross_entropy_extras_with_grad(x.view(), y.view(), &o0).unwrap().grad;
    let z = lse0 + lse0;
    for (k, xv) in [1.0f64, 2.0, 0.0].iter().enumerate() {
        let p = (xv - lse0).exp();
        assert!((out.grad[[0, k]] - g0[[0, k]] - s * z * p).abs() < 1e-15);
        assert_eq!(out.grad[[1, k]], 0.0);
    }
}

#[test]
fn softcap_applies_before_everything() {
    let x = array![[10.0f64, -3.0, 0.5], [100.0, 99.0, 0.0]];
    let y = array![0i64, 1];
    let c = 2.0;
    let capped = x.mapv(|v| c * (v / c).tanh());
    let plain = CrossEntropyExtrasOptions::<f64> {
        lse_square_scale: 0.01,
        return_lse: true,
        return_token_accuracy: true,
        ..Default::default()
    };
    let capo = CrossEntropyExtrasOptions { softcap: Some(c), ..plain.clone() };
    let a = cross_entropy_extras_with_grad(x.view(), y.view(), &capo).unwrap();
    let b = cross_entropy_extras_with_grad(capped.view(), y.view(), &plain).unwrap();
    assert_eq!(a.loss, b.loss);
    assert_eq!(a.lse, b.lse);
    // row 1 saturates: 2·tanh(50) == 2·tanh(49.5) == 2 exactly, so the argmax is the first index (0) ≠ 1
    assert_eq!(a.token_accuracy.unwrap().scalar(), Some(0.5));
    // chain rule: grad_x = grad_xc · (1 − tanh²(x/c))
    for ((ga, gb), xv) in a.grad.iter().zip(b.grad.iter()).zip(x.iter()) {
        let t = (xv / c).tanh();
        assert!((ga - gb * (1.0 - t * t)).abs() < 1e-16);
    }
}

#[test]
fn accuracy_and_lse_per_row_with_reduction_none() {
    let x = array![[0.0f32, 3.0, 1.0], [2.0, 1.0, 0.0], [5.0, 0.0, 0.0]];
    let y = array![1i64, 2, -100];
    let o = CrossEntropyExtrasOptions::<f32> {
        reduction: Reduction::None,
        return_lse: true,
        return_token_accuracy: true,
        ..Default::default()
    };
    let out = cross_entropy_extras_with_grad(x.view(), y.view(), &o).unwrap();
    let acc = out.token_accuracy.unwrap().into_array();
    assert_eq!(acc.iter().copied().collect::<Vec<_>>(), vec![1.0, 0.0, 0.0]);
    let lse = out.lse.unwrap();
    assert!((lse[2] - (5f32.exp() + 2.0).ln()).abs() < 1e-6, "ignored rows get their lse too");
    assert_eq!(out.loss.elementwise().unwrap()[[2]], 0.0);
    // no z-loss: z_loss is 0 per row
    assert!(out.z_loss.into_array().iter().all(|&v| v == 0.0));
}

#[test]
fn all_ignored_mean_is_nan_with_zero_gradients() {
    let mut rng = Lcg(29);
    let h = rng.matrix(4, 3, 1.0);
    let w = rng.matrix(5, 3, 1.0);
    let y = array![-100i64, -100, -100, -100];
    let mut opts = LinearCrossEntropyOptions::default();
    opts.ce.lse_square_scale = 0.1;
    opts.ce.return_token_accuracy = true;
    let out = linear_cross_entropy(h.view(), w.view(), None, y.view(), &opts).unwrap();
    assert!(out.loss.scalar().unwrap().is_nan());
    assert!(out.z_loss.scalar().unwrap().is_nan());
    assert!(out.token_accuracy.unwrap().scalar().unwrap().is_nan());
    assert!(out.grad_hidden.iter().chain(out.grad_weight.iter()).all(|&v| v == 0.0));
    opts.ce.reduction = Reduction::Sum;
    let out = linear_cross_entropy(h.view(), w.view(), None, y.view(), &opts).unwrap();
    assert_eq!(out.loss.scalar(), Some(0.0));
    // distillation: no kept rows → NaN and zero gradients, as distill
    let d = LinearDistillOptions {
        distill: DistillOptions { alpha: 0.5, ..Default::default() },
        chunk_size: None,
    };
    let out = linear_distill(h.view(), w.view(), h.view(), w.view(), Some(y.view()), &d).unwrap();
    assert!(out.loss.scalar().unwrap().is_nan());
    assert!(out.grad_weight.iter().all(|&v| v == 0.0));
}

#[test]
fn empty_shapes() {
    let h = Array2::<f64>::zeros((0, 3));
    let w = Array2::<f64>::ones((4, 3));
    let y = Array1::<i64>::zeros(0);
    let out = linear_cross_entropy(h.view(), w.view(), None, y.view(), &Default::default()).unwrap();
    assert!(out.loss.scalar().unwrap().is_nan());
    assert_eq!(out.grad_hidden.shape(), &[0, 3]);
    assert_eq!(out.grad_weight, Array2::<f64>::zeros((4, 3)));
    // H = 0: logits are the bias alone
    let h0 = Array2::<f64>::zeros((2, 0));
    let w0 = Array2::<f64>::zeros((3, 0));
    let b = array![0.0f64, 1.0, 2.0];
    let out = linear_cross_entropy(
        h0.view(),
        w0.view(),
        Some(b.view()),
        array![2i64, 0].view(),
        &Default::default(),
    )
    .unwrap();
    let lse = (1.0 + 1f64.exp() + 2f64.exp()).ln();
    assert!((out.loss.scalar().unwrap() - (lse - 1.0)).abs() < 1e-15);
    assert_eq!(out.grad_hidden.shape(), &[2, 0]);
    // V = 0 with every target ignored
    let wv = Array2::<f64>::zeros((0, 3));
    let hv = Array2::<f64>::ones((2, 3));
    let mut o = LinearCrossEntropyOptions::default();
    o.ce.return_lse = true;
    o.ce.reduction = Reduction::Sum;
    let out = linear_cross_entropy(hv.view(), wv.view(), None, array![-100i64, -100].view(), &o).unwrap();
    assert_eq!(out.loss.scalar(), Some(0.0));
    assert!(out.lse.unwrap().iter().all(|&v| v == f64::NEG_INFINITY));
    let e = linear_cross_entropy(hv.view(), wv.view(), None, array![0i64, -100].view(), &o).unwrap_err();
    assert_eq!(e.to_string(), "linear_cross_entropy: target 0 at [0] is out of range for 0 classes");
}

#[test]
fn errors_name_shapes_options_and_targets() {
    let h = Array2::<f32>::zeros((3, 4));
    let w = Array2::<f32>::zeros((5, 4));
    let y = array![0i64, 1, 2];
    let o = LinearCrossEntropyOptions::<f32>::default();
    let msg = |r: Result<_, Error>| match r {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    };
    let m =
        msg(linear_cross_entropy(h.view(), Array2::<f32>::zeros((5, 3)).view(), None, y.view(), &o)
            .map(|_| ()));
    assert!(m.contains("hidden shape [3, 4]") && m.contains("weight shape [5, 3]"), "{m}");
    let b = Array1::<f32>::zeros(4);
    let m = msg(linear_cross_entropy(h.view(), w.view(), Some(b.view()), y.view(), &o).map(|_| ()));
    assert!(m.contains("bias shape [4]") && m.contains("[5, 4]"), "{m}");
    let m = msg(linear_cross_entropy(h.view(), w.view(), None, array![0i64, 1].view(), &o).map(|_| ()));
    assert!(m.contains("targets shape [2]") && m.contains("hidden shape [3, 4]"), "{m}");
    let m = msg(linear_cross_entropy(h.view(), w.view(), None, array![0i64, 7, 1].view(), &o).map(|_| ()));
    assert_eq!(m, "linear_cross_entropy: target 7 at [1] is out of range for 5 classes");
    let cw = Array1::<f32>::ones(3);
    let mut oc = o.clone();
    oc.ce.weight = Some(cw.view());
    let m = msg(linear_cross_entropy(h.view(), w.view(), None, y.view(), &oc).map(|_| ()));
    assert!(m.contains("class weight shape [3]"), "{m}");
    let oz = LinearCrossEntropyOptions::<f32> { chunk_size: Some(0), ..Default::default() };
    let m = msg(linear_cross_entropy(h.view(), w.view(), None, y.view(), &oz).map(|_| ()));
    assert_eq!(m, "linear_cross_entropy: invalid chunk_size = 0: must be at least 1");
    let m =
        msg(linear_cross_entropy(Array1::<f32>::zeros(3).view(), w.view(), None, y.view(), &o).map(|_| ()));
    assert!(m.contains("hidden has shape [3]"), "{m}");
    let mut os = o.clone();
    os.ce.softcap = Some(f64::NAN);
    let m = msg(linear_cross_entropy(h.view(), w.view(), None, y.view(), &os).map(|_| ()));
    assert!(m.contains("invalid softcap = NaN"), "{m}");
    let mut on = o.clone();
    on.ce.reduction = Reduction::None;
    let g = Array1::<f32>::ones(2).into_dyn();
    let m = msg(linear_cross_entropy_backward(
        h.view(),
        w.view(),
        None,
        y.view(),
        &on,
        &GradOutput::Array(g.view()),
    )
    .map(|_| ()));
    assert!(m.contains("grad_output shape [2]"), "{m}");
    // distillation
    let d = LinearDistillOptions::default();
    let m = msg(linear_distill(h.view(), w.view(), h.view(), Array2::<f32>::zeros((6, 4)).view(), None, &d)
        .map(|_| ()));
    assert!(m.contains("student_weight shape [5, 4]") && m.contains("teacher_weight shape [6, 4]"), "{m}");
    let m = msg(linear_distill(h.view(), w.view(), Array2::<f32>::zeros((2, 4)).view(), w.view(), None, &d)
        .map(|_| ()));
    assert!(m.contains("teacher_hidden shape [2, 4]"), "{m}");
    let m =
        msg(linear_distill(h.view(), w.view(), h.view(), w.view(), Some(array![0i64, 9, -100].view()), &d)
            .map(|_| ()));
    assert_eq!(m, "linear_distill: target 9 at [1] is out of range for 5 classes");
    let bad_t = LinearDistillOptions {
        distill: DistillOptions { temperature: -1.0, ..Default::default() },
        chunk_size: None,
    };
    let m = msg(linear_distill(h.view(), w.view(), h.view(), w.view(), None, &bad_t).map(|_| ()));
    assert!(m.contains("temperature"), "{m}");
}

#[test]
fn workspace_reports_one_chunk() {
    let o = LinearCrossEntropyOptions::<f32> { chunk_size: Some(64), ..Default::default() };
    let ws = linear_cross_entropy_workspace(2048, 1024, 32000, true, &o);
    assert_eq!(ws.chunk_rows, 64);
    assert_eq!(ws.chunk_buffers, 1);
    assert_eq!(ws.logits_chunk_bytes, 64 * 32000 * 4);
    assert_eq!(ws.bias_accumulator_bytes, 32000 * 8);
    assert_eq!(ws.row_scratch_bytes, 0);
    assert_eq!(ws.gemm_packing_bytes, 64 * (4096 + 1024) * 4);
    assert_eq!(
        ws.total_bytes,
        ws.logits_chunk_bytes
            + ws.per_row_bytes
            + ws.bias_accumulator_bytes
            + ws.row_scratch_bytes
            + ws.gemm_packing_bytes
    );
    // automatic: max(hidden bytes, 64 MiB) of logits, at most N rows
    let auto = linear_cross_entropy_workspace::<f64>(100, 8, 1000, false, &Default::default());
    assert_eq!(auto.chunk_rows, 100);
    let big = linear_cross_entropy_workspace::<f32>(65536, 4096, 32000, false, &Default::default());
    assert_eq!(big.chunk_rows, (65536usize * 4096 * 4).div_ceil(32000 * 4));
    // softcap needs a tanh row per thread
    let mut oc = o.clone();
    oc.ce.softcap = Some(30.0);
    assert!(linear_cross_entropy_workspace(2048, 1024, 32000, false, &oc).row_scratch_bytes >= 32000 * 4);
    let d = linear_distill_workspace::<f32>(
        2048,
        1024,
        1024,
        32000,
        &LinearDistillOptions { chunk_size: Some(10), ..Default::default() },
    );
    assert_eq!(d.chunk_buffers, 2);
    assert_eq!(d.logits_chunk_bytes, 10 * 32000 * 4);
    assert_eq!(
        d.total_bytes,
        2 * d.logits_chunk_bytes + d.row_scratch_bytes + d.per_row_bytes + d.gemm_packing_bytes
    );
}
