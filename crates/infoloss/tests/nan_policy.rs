//! One test per rule of the NaN/inf policy (`src/nan_policy.rs`). Expected values are torch 2.15's (or
//! SciPy 1.17.1's), quoted next to each assertion.

use infoloss::ndarray::{ArrayD, arr0, array};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, DistillOptions, EntropyOptions, Error, GradOutput,
    JensenShannonOptions, KlDivOptions, NllOptions, Reduction,
};

const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

fn none_ce() -> CrossEntropyOptions<'static, f64> {
    CrossEntropyOptions { reduction: Reduction::None, ..Default::default() }
}

/// NaN positions equal, finite values within 1e-12.
fn assert_close(got: &ArrayD<f64>, want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        if w.is_nan() {
            assert!(g.is_nan(), "{got:?} vs {want:?}");
        } else if w.is_infinite() {
            assert_eq!(g, w, "{got:?} vs {want:?}");
        } else {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }
}

#[test]
fn rule_1_nan_propagates_to_its_row_and_to_reductions() {
    let x = array![[NAN, 0.0], [1.0, 2.0]];
    // torch: F.softmax(x, 1) = [[nan, nan], [0.2689, 0.7311]]
    let s = infoloss::softmax(x.view(), 1).unwrap();
    assert_close(&s, &[NAN, NAN, 0.2689414213699951, 0.7310585786300049]);
    // torch: F.cross_entropy(x, [1, 0], reduction='none') = [nan, 1.3133]; grad [[nan, nan], [-0.7311, 0.7311]]
    let t = array![1i64, 0];
    let l = infoloss::cross_entropy(x.view(), t.view(), &none_ce()).unwrap().into_array();
    assert_close(&l, &[NAN, 1.3132616875182228]);
    let g = infoloss::cross_entropy_backward(x.view(), t.view(), &none_ce(), &GradOutput::one()).unwrap();
    assert_close(&g, &[NAN, NAN, -0.7310585786300049, 0.7310585786300049]);
    // A reduced loss that adds a NaN is NaN (torch: kl_div([-1, nan], [.5, .5], 'sum') = nan).
    let o = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let k = infoloss::kl_div(array![-1.0, NAN].view(), array![0.5, 0.5].view(), &o).unwrap();
    assert!(k.scalar().unwrap().is_nan());
}

#[test]
fn rule_2_only_what_is_read_propagates() {
    // torch: F.nll_loss([[nan, 0.]], [1]) = 0 (−0), grad [[0, -1]]
    let x = array![[NAN, 0.0]];
    let t = array![1i64];
    let (l, g) = infoloss::nll_loss_with_grad(x.view(), t.view(), &NllOptions::default()).unwrap();
    assert_eq!(l.scalar().unwrap(), 0.0);
    assert_eq!(g, array![[0.0, -1.0]].into_dyn());
    // An ignored row reads nothing.
    let x = array![[NAN, NAN], [0.0, -1.0]];
    let t = array![-100i64, 1];
    assert_eq!(infoloss::nll_loss(x.view(), t.view(), &NllOptions::default()).unwrap().scalar(), Some(1.0));
}

#[test]
fn rule_3_plus_inf_logit_makes_the_row_nan() {
    let x = array![INF, 0.0, 1.0];
    // torch: softmax and log_softmax = [nan, nan, nan]; logsumexp = inf
    assert_close(&infoloss::softmax(x.view(), 0).unwrap(), &[NAN, NAN, NAN]);
    assert_close(&infoloss::log_softmax(x.view(), 0).unwrap(), &[NAN, NAN, NAN]);
    assert_close(&infoloss::logsumexp(x.view(), 0).unwrap(), &[INF]);
    let l = infoloss::cross_entropy(array![[INF, 0.0]].view(), array![1i64].view(), &none_ce()).unwrap();
    assert!(l.into_array()[0].is_nan());
}

#[test]
fn rule_4_minus_inf_logit_has_probability_zero() {
    // torch: softmax([-inf, 0, 1]) = [0, 0.2689, 0.7311]
    let s = infoloss::softmax(array![-INF, 0.0, 1.0].view(), 0).unwrap();
    assert_close(&s, &[0.0, 0.2689414213699951, 0.7310585786300049]);
    // torch: F.cross_entropy([[-inf, 0, 1]], [0]) = inf, grad [[-1, 0.2689, 0.7311]]
    let x = array![[-INF, 0.0, 1.0]];
    let (l, g) =
        infoloss::cross_entropy_with_grad(x.view(), array![0i64].view(), &CrossEntropyOptions::default())
            .unwrap();
    assert_eq!(l.scalar().unwrap(), INF);
    assert_close(&g, &[-1.0, 0.2689414213699951, 0.7310585786300049]);
    // All −inf: torch gives nan loss and nan gradient; logsumexp = −inf.
    let x = array![[-INF, -INF]];
    let (l, g) =
        infoloss::cross_entropy_with_grad(x.view(), array![0i64].view(), &CrossEntropyOptions::default())
            .unwrap();
    assert!(l.scalar().unwrap().is_nan());
    assert_close(&g, &[NAN, NAN]);
    assert_close(&infoloss::logsumexp(array![-INF, -INF].view(), 0).unwrap(), &[-INF]);
}

#[test]
fn rule_5_mean_of_nothing_is_nan_sum_is_zero() {
    let x = ArrayD::<f64>::zeros(infoloss::ndarray::IxDyn(&[0, 3]));
    let t = ArrayD::<i64>::zeros(infoloss::ndarray::IxDyn(&[0]));
    // torch: cross_entropy(zeros(0, 3), []) = nan; 'sum' = 0
    let mean = infoloss::cross_entropy(x.view(), t.view(), &CrossEntropyOptions::default()).unwrap();
    assert!(mean.scalar().unwrap().is_nan());
    let o = CrossEntropyOptions { reduction: Reduction::Sum, ..Default::default() };
    assert_eq!(infoloss::cross_entropy(x.view(), t.view(), &o).unwrap().scalar(), Some(0.0));
    // torch: all targets ignored → nan, gradient all zeros
    let x = array![[1.0f64, 2.0], [3.0, 4.0]];
    let t = array![-100i64, -100];
    let (l, g) =
        infoloss::cross_entropy_with_grad(x.view(), t.view(), &CrossEntropyOptions::default()).unwrap();
    assert!(l.scalar().unwrap().is_nan());
    assert_eq!(g, ArrayD::<f64>::zeros(infoloss::ndarray::IxDyn(&[2, 2])));
}

#[test]
fn rule_6_nan_weight_propagates_to_its_rows_and_the_mean() {
    let x = array![[1.0, 0.0], [2.0, 3.0]];
    let w = array![NAN, 1.0];
    let t = array![0i64, 1];
    // torch: reduction='none' → [nan, 0.3133]; 'mean' → nan
    let o = CrossEntropyOptions { weight: Some(w.view()), reduction: Reduction::None, ..Default::default() };
    let l = infoloss::cross_entropy(x.view(), t.view(), &o).unwrap().into_array();
    assert_close(&l, &[NAN, 0.31326168751822286]);
    let o = CrossEntropyOptions { weight: Some(w.view()), ..Default::default() };
    assert!(infoloss::cross_entropy(x.view(), t.view(), &o).unwrap().scalar().unwrap().is_nan());
}

#[test]
fn rule_7_label_smoothing_only_when_positive() {
    let x = array![[1.0f64, 0.0], [2.0, 3.0]];
    let t = array![0i64, 1];
    let plain =
        infoloss::cross_entropy(x.view(), t.view(), &CrossEntropyOptions::default()).unwrap().scalar();
    // torch: label_smoothing=nan and -0.1 both give the unsmoothed 0.3133
    for ls in [NAN, -0.1] {
        let o = CrossEntropyOptions { label_smoothing: ls, ..Default::default() };
        assert_eq!(infoloss::cross_entropy(x.view(), t.view(), &o).unwrap().scalar(), plain);
    }
    assert!((plain.unwrap() - 0.31326168751822286).abs() < 1e-15);
    let o = CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() };
    let e = infoloss::cross_entropy(x.view(), t.view(), &o).unwrap_err();
    assert!(matches!(e, Error::InvalidOption { option: "label_smoothing", .. }), "{e}");
}

#[test]
fn rule_8_non_finite_options_are_errors() {
    let p = array![0.5, 0.5];
    for b in [NAN, 0.0, -2.0, 1.0] {
        let e = infoloss::entropy(p.view(), None, &EntropyOptions { base: Some(b), axis: 0 }).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "base", .. }), "{e}");
        let o = JensenShannonOptions { base: Some(b), ..Default::default() };
        assert!(matches!(infoloss::jensenshannon(p.view(), p.view(), &o), Err(Error::InvalidOption { .. })));
    }
    let s = array![[1.0, 2.0]];
    for temperature in [NAN, 0.0, -1.0] {
        let o = DistillOptions { temperature, ..Default::default() };
        let e = infoloss::distill(s.view(), s.view(), None, &o).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "temperature", .. }), "{e}");
    }
    let o = DistillOptions { alpha: NAN, ..Default::default() };
    assert!(matches!(infoloss::distill(s.view(), s.view(), None, &o), Err(Error::InvalidOption { .. })));
}

#[test]
fn rule_9_kl_div_zero_negative_and_infinite_targets() {
    let none = KlDivOptions { reduction: Reduction::None, log_target: false };
    // torch: kl_div([-1, -inf, -1, 0], [0, 0, -0.5, 0.5], 'none') = [0, nan, nan, -0.3466]
    let x = array![-1.0, -INF, -1.0, 0.0];
    let t = array![0.0, 0.0, -0.5, 0.5];
    let l = infoloss::kl_div(x.view(), t.view(), &none).unwrap().into_array();
    assert_close(&l, &[0.0, NAN, NAN, -0.34657359027997264]);
    // torch: log_target with t = -inf or nan → nan
    let lt = KlDivOptions { reduction: Reduction::None, log_target: true };
    let l = infoloss::kl_div(array![-1.0, -1.0].view(), array![-INF, NAN].view(), &lt).unwrap().into_array();
    assert_close(&l, &[NAN, NAN]);
    // torch: grads of kl_div([0, 1], [0.2, 0], 'sum'): input [-0.2, -0], target [-0.6094, nan]
    let s = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let (x, t) = (array![0.0, 1.0], array![0.2, 0.0]);
    let gt = infoloss::kl_div_backward_target(x.view(), t.view(), &s, &GradOutput::one()).unwrap();
    assert_close(&gt, &[-0.6094379124341003, NAN]);
    let gi = infoloss::kl_div_backward(x.view(), t.view(), &s, &GradOutput::one()).unwrap();
    assert_close(&gi, &[-0.2, 0.0]);
}

#[test]
fn rule_10_bce_rejects_out_of_range_and_clamps_logs() {
    let o = BceOptions::<f64>::default();
    // torch: "all elements of input should be between 0 and 1" (NaN included)
    for bad in [NAN, 1.5, -0.1] {
        let e =
            infoloss::binary_cross_entropy(array![0.5, bad].view(), array![1.0, 1.0].view(), &o).unwrap_err();
        match e {
            Error::InvalidValue { name: "input", ref index, .. } => assert_eq!(index.0, vec![1]),
            other => panic!("{other}"),
        }
        // torch: "all elements of target should be between 0 and 1"
        let e =
            infoloss::binary_cross_entropy(array![0.5, 0.5].view(), array![bad, 1.0].view(), &o).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { name: "target", .. }), "{e}");
    }
    // torch: bce([0, 1], [1, 0], 'none') = [100, 100]
    let none = BceOptions { weight: None, reduction: Reduction::None };
    let l = infoloss::binary_cross_entropy(array![0.0, 1.0].view(), array![1.0, 0.0].view(), &none).unwrap();
    assert_close(&l.into_array(), &[100.0, 100.0]);
}

#[test]
fn rule_11_bce_with_logits_neither_checks_nor_clamps() {
    let none = BceWithLogitsOptions { weight: None, pos_weight: None, reduction: Reduction::None };
    // torch: bce_with_logits([-inf, inf, nan, -1e4], [1, 0, 1, 1]) = [nan, inf, nan, 10000]
    let x = array![-INF, INF, NAN, -1e4];
    let t = array![1.0, 0.0, 1.0, 1.0];
    let l = infoloss::binary_cross_entropy_with_logits(x.view(), t.view(), &none).unwrap().into_array();
    assert_close(&l, &[NAN, INF, NAN, 10000.0]);
    // torch: ([-inf, inf], [0, 1]) = [nan, nan]; a target of 2 is accepted (no range check)
    let l =
        infoloss::binary_cross_entropy_with_logits(array![-INF, INF].view(), array![0.0, 1.0].view(), &none)
            .unwrap()
            .into_array();
    assert_close(&l, &[NAN, NAN]);
    assert!(
        infoloss::binary_cross_entropy_with_logits(array![1.0].view(), array![2.0].view(), &none).is_ok()
    );
}

#[test]
fn rule_12_entr_values_and_gradient() {
    // torch.special.entr([0, -1, nan, inf]) = [0, -inf, nan, -inf]
    let e = infoloss::entr(array![0.0, -1.0, NAN, INF].view());
    assert_close(&e, &[0.0, -INF, NAN, -INF]);
    // torch: grad of entr([0, -1, 2]).sum() = [inf, nan, -1.6931]
    let g = infoloss::entr_backward(array![0.0, -1.0, 2.0].view(), arr0(1.0).view()).unwrap();
    assert_close(&g, &[INF, NAN, -1.6931471805599454]);
}

#[test]
fn rule_13_rel_entr_cases() {
    // scipy.special.rel_entr([1, 0, 1, -1, nan], [0, 0, inf, 1, 1]) = [inf, 0, -inf, inf, nan]
    let r =
        infoloss::rel_entr(array![1.0, 0.0, 1.0, -1.0, NAN].view(), array![0.0, 0.0, INF, 1.0, 1.0].view())
            .unwrap();
    assert_close(&r, &[INF, 0.0, -INF, INF, NAN]);
}

#[test]
fn rule_14_scipy_measures_normalize_first() {
    let d = EntropyOptions::default();
    let h = |p: &[f64]| {
        infoloss::entropy(ArrayD::from_shape_vec(vec![p.len()], p.to_vec()).unwrap().view(), None, &d)
            .unwrap()[[]]
    };
    // scipy.stats.entropy: [0, 0] → nan, [1, -1, 1] → -inf, [1, inf] → nan, [1, nan] → nan
    assert!(h(&[0.0, 0.0]).is_nan());
    assert_eq!(h(&[1.0, -1.0, 1.0]), -INF);
    assert!(h(&[1.0, INF]).is_nan());
    assert!(h(&[1.0, NAN]).is_nan());
    // scipy: entropy([1, 0], [0, 1]) = inf
    let rel = infoloss::entropy(array![1.0, 0.0].view(), Some(array![0.0, 1.0].view()), &d).unwrap();
    assert_eq!(rel[[]], INF);
    // scipy.spatial.distance.jensenshannon: ([0, 0], [1, 0]) → nan, ([1, -1, 1], [1, 1, 1]) → inf, nan → nan
    let o = JensenShannonOptions::default();
    let js = |p: ArrayD<f64>, q: ArrayD<f64>| infoloss::jensenshannon(p.view(), q.view(), &o).unwrap()[[]];
    assert!(js(array![0.0, 0.0].into_dyn(), array![1.0, 0.0].into_dyn()).is_nan());
    assert_eq!(js(array![1.0, -1.0, 1.0].into_dyn(), array![1.0, 1.0, 1.0].into_dyn()), INF);
    assert!(js(array![1.0, NAN].into_dyn(), array![1.0, 1.0].into_dyn()).is_nan());
    // shannon_cross_entropy: a zero-sum q row is NaN too.
    let x =
        infoloss::shannon_cross_entropy(array![1.0f64, 1.0].view(), array![0.0f64, 0.0].view(), &d).unwrap();
    assert!(x[[]].is_nan());
}

#[test]
fn rule_15_out_of_range_class_indices_are_errors() {
    let x = array![[0.0, 1.0, 2.0]];
    for bad in [3i64, -1, i64::MIN, i64::MAX] {
        let e = infoloss::cross_entropy(x.view(), array![bad].view(), &CrossEntropyOptions::default())
            .unwrap_err();
        assert_eq!(e, Error::target_out_of_range("cross_entropy", &[0], bad, 3), "{e}");
    }
    // ignore_index may lie outside [0, C).
    let o = CrossEntropyOptions { ignore_index: 7, reduction: Reduction::Sum, ..Default::default() };
    assert_eq!(infoloss::cross_entropy(x.view(), array![7i64].view(), &o).unwrap().scalar(), Some(0.0));
}

#[test]
fn rule_16_ignored_rows_get_nan_gradients_where_torch_does() {
    use infoloss::CrossEntropyExtrasOptions;
    use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy};
    // rows 0-2 ignored: a NaN, a +inf, only -inf; row 3 kept
    let x = array![[NAN, 0.0, 1.0], [0.0, INF, 1.0], [-INF, -INF, -INF], [0.5, -0.5, 2.0]];
    let y = array![-100i64, -100, -100, 2];
    // torch: keep = y != -100; lse = logsumexp(x, 1)
    //        loss = F.cross_entropy(x, y) + where(keep, 0.01·lse², 0).sum() / keep.sum(); loss.backward()
    let opts = CrossEntropyExtrasOptions::<f64> { lse_square_scale: 0.01, ..Default::default() };
    let out = infoloss::cross_entropy_extras_with_grad(x.view(), y.view(), &opts).unwrap();
    assert_close(&arr0(out.loss.scalar().unwrap()).into_dyn(), &[0.3177321343798956]);
    #[rustfmt::skip]
    let want = [NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
                0.1787016180662514, 0.06574065139064511, -0.1991149114607538];
    assert_close(&out.grad.into_dyn(), &want);
    // the same rows in cross_entropy: the same NaN rows (torch's log_softmax backward)
    let (_, g) =
        infoloss::cross_entropy_with_grad(x.view(), y.view(), &CrossEntropyOptions::default()).unwrap();
    assert!(g.rows().into_iter().take(3).all(|r| r.iter().all(|v| v.is_nan())));
    // under a softcap ±inf are capped to ±c: only the NaN row stays NaN
    let capped = CrossEntropyExtrasOptions::<f64> { softcap: Some(3.0), ..Default::default() };
    let g = infoloss::cross_entropy_extras_with_grad(x.view(), y.view(), &capped).unwrap().grad;
    assert!(g.row(0).iter().all(|v| v.is_nan()));
    assert!(g.rows().into_iter().skip(1).take(2).all(|r| r.iter().all(|&v| v == 0.0)));
    // linear: an ignored row of NaN hidden state. torch: F.linear_cross_entropy(h, W, [-100, 0, 2]).backward()
    let h = array![[NAN, 1.0], [0.5, -1.0], [1.0, 2.0]];
    let w = array![[0.5, -0.2], [0.1, 0.3], [-0.4, 0.6]];
    let lopts = LinearCrossEntropyOptions::<f64>::default();
    let out = linear_cross_entropy(h.view(), w.view(), None, array![-100i64, 0, 2].view(), &lopts).unwrap();
    assert_close(&arr0(out.loss.scalar().unwrap()).into_dyn(), &[0.7272046166289543]);
    let want = [NAN, NAN, -0.1280048715776951, 0.13389578272274744, 0.1872526386661922, -0.13923401789399487];
    assert_close(&out.grad_hidden.into_dyn(), &want);
    assert!(out.grad_weight.iter().all(|v| v.is_nan()), "torch: every entry of the weight gradient is NaN");
}

#[test]
fn rule_17_total_variation_takes_sign_nan_as_zero() {
    use infoloss::{Divergence, distill_with_grad};
    let s = array![[0.5, -0.3, 1.2], [0.1, 0.2, 0.3]];
    let t = array![[NAN, 0.2, 0.1], [0.3, 0.1, -0.2]];
    // torch: l = 0.5·(softmax(s) − softmax(t)).abs().sum(1); l.sum().backward()
    let o = DistillOptions {
        divergence: Divergence::TotalVariation,
        reduction: Reduction::None,
        ..Default::default()
    };
    let (l, g) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
    assert_close(&l.into_array(), &[NAN, 0.11707662448922021]);
    let want = [0.0, 0.0, 0.0, -0.11037344632823262, -0.12198152300974606, 0.2323549693379787];
    assert_close(&g.into_dyn(), &want);
}

#[test]
fn rule_18_a_topk_teacher_holding_every_class_has_no_tail_bucket() {
    use infoloss::distill::{SparseTeacher, distill_topk_with_grad};
    let s = array![[0.5, -0.3, 1.2]];
    let lq = array![[0.1f64.ln(), 0.2f64.ln(), 0.7f64.ln()]];
    let idx = array![[0i64, 1, 2]];
    let o = DistillOptions::default();
    let with = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let without = SparseTeacher { add_tail: false, ..with.clone() };
    let (l, g) = distill_topk_with_grad(s.view(), &with, None, &o).unwrap();
    // torch: F.kl_div(F.log_softmax(s, 1), q, reduction='batchmean') (the dense loss; was +inf)
    assert_close(&l.clone().into_array(), &[0.11034029665535915]);
    let (l2, g2) = distill_topk_with_grad(s.view(), &without, None, &o).unwrap();
    assert_eq!((l, g), (l2, g2));
}
