//! The six worked numbers of `shared/SEEDS.md`, each as its own test, in f32 and f64.
//!
//! f64 results must match the exact column to ~1e-15 relative; f32 results must match it to ~1e-7 relative
//! (and equal torch 2.15's float32 result, printed in each comment, to the same tolerance).

use infoloss::ndarray::{Array2, array};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, EntropyOptions, KlDivOptions, Loss, Real,
    Reduction, binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, kl_div,
    shannon_cross_entropy, softmax,
};

fn x() -> Array2<f64> {
    array![[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]]
}
fn t() -> Array2<f64> {
    array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
}

fn close(got: f64, exact: f64, rel: f64) {
    assert!((got - exact).abs() <= rel * exact.abs(), "got {got:.17}, exact {exact:.17}, rel tol {rel:e}");
}

fn f32s(a: &Array2<f64>) -> Array2<f32> {
    a.mapv(|v| v as f32)
}

/// The value of a reduced loss.
fn scalar<T: Real>(r: infoloss::Result<Loss<T>>) -> T {
    r.unwrap().scalar().unwrap()
}

/// The f64 result `v` is `exact` to 1e-15 relative, the f32 result `v32` to 1e-7 (and torch's float32 result
/// `torch32`, where given, to 1e-6).
fn check(v: f64, v32: f32, exact: f64, torch32: Option<f64>) {
    close(v, exact, 1e-15);
    close(v32.f64(), exact, 1e-7);
    if let Some(torch32) = torch32 {
        close(v32.f64(), torch32, 1e-6);
    }
}

#[test]
fn seed1_bce_with_weight() {
    // torch: F.binary_cross_entropy(x, t, weight=w) → f32 0.12723307311534882, f64 0.12723308136613606
    let w = array![[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]].into_dyn();
    let exact = 0.12723308136613606;
    let o = BceOptions { weight: Some(w.view()), reduction: Reduction::Mean };
    let v = scalar(binary_cross_entropy(x().view(), t().view(), &o));
    let w32 = w.mapv(|v| v as f32);
    let o32 = BceOptions { weight: Some(w32.view()), reduction: Reduction::Mean };
    let v32 = scalar(binary_cross_entropy(f32s(&x()).view(), f32s(&t()).view(), &o32));
    check(v, v32, exact, Some(0.12723307311534882));
}

#[test]
fn seed2_bce() {
    // torch: F.binary_cross_entropy(x, t) (= nn.BCELoss()) → f32 0.5912299752235413
    let exact = 0.5912299819733728;
    let v = scalar(binary_cross_entropy(x().view(), t().view(), &BceOptions::default()));
    let v32 = scalar(binary_cross_entropy(f32s(&x()).view(), f32s(&t()).view(), &BceOptions::default()));
    check(v, v32, exact, Some(0.5912299752235413));
}

#[test]
fn seed3_bce_with_logits_equals_bce_of_sigmoid() {
    // torch: F.binary_cross_entropy_with_logits(x, t) → f32 0.7678468823432922
    let exact = 0.7678469016522563;
    let o = BceWithLogitsOptions::default();
    let v = scalar(binary_cross_entropy_with_logits(x().view(), t().view(), &o));
    let o32 = BceWithLogitsOptions::default();
    let v32 = scalar(binary_cross_entropy_with_logits(f32s(&x()).view(), f32s(&t()).view(), &o32));
    check(v, v32, exact, Some(0.7678468823432922));
    // ... and it is the BCE of sigmoid(x).
    let s = x().mapv(|v| 1.0 / (1.0 + (-v).exp()));
    let b = binary_cross_entropy(s.view(), t().view(), &BceOptions::default()).unwrap().scalar().unwrap();
    close(b, exact, 1e-14);
}

#[test]
fn seed4_bce_with_logits_large_logits() {
    // torch: F.binary_cross_entropy_with_logits([[5,1,8],[2,4,6]], t) → f32 3.2446444034576416
    let exact = 3.244644344413125;
    let l = array![[5.0, 1.0, 8.0], [2.0, 4.0, 6.0]];
    let o = BceWithLogitsOptions::default();
    let v = scalar(binary_cross_entropy_with_logits(l.view(), t().view(), &o));
    let o32 = BceWithLogitsOptions::default();
    let v32 = scalar(binary_cross_entropy_with_logits(f32s(&l).view(), f32s(&t()).view(), &o32));
    check(v, v32, exact, Some(3.2446444034576416));
}

#[test]
fn seed5_kl_div_batchmean_of_log_softmax() {
    // torch: F.kl_div(torch.log(F.softmax(l, dim=1)), q, reduction='batchmean')
    //   → f32 0.05779624730348587 (torch 2.15), f64 0.057796191309196596
    let exact = 0.057796191309196596;
    let q = array![[0.3, 0.4, 0.3], [0.1, 0.5, 0.4]];
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let p = softmax(x().view(), 1).unwrap();
    // softmax(l) as printed in SEEDS.md
    let printed = [[0.2501, 0.4123, 0.3376], [0.2693, 0.3289, 0.4018]];
    for (r, row) in printed.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            assert!((p[[r, c]] - v).abs() < 1e-4, "softmax[{r},{c}] = {}", p[[r, c]]);
        }
    }
    let v = kl_div(p.mapv(f64::ln).view(), q.view(), &o).unwrap().scalar().unwrap();
    close(v, exact, 1e-15);
    let p32 = softmax(f32s(&x()).view(), 1).unwrap();
    let v32 = kl_div(p32.mapv(f32::ln).view(), f32s(&q).view(), &o).unwrap().scalar().unwrap();
    close(v32.f64(), exact, 1e-6);
    close(v32.f64(), 0.05779624730348587, 1e-6);
}

#[test]
fn seed6_cross_entropy_of_one_hot_label() {
    // −log 0.4: CrossEntropyLoss on logits log([0.3, 0.3, 0.4]) with target class 2
    // torch f64 0.9162907318741551, f32 0.9162907600402832
    let exact = 0.9162907318741551;
    let logits = array![[0.3f64, 0.3, 0.4]].mapv(f64::ln);
    let y = array![2i64];
    let v = scalar(cross_entropy(logits.view(), y.view(), &CrossEntropyOptions::default()));
    let v32 = scalar(cross_entropy(f32s(&logits).view(), y.view(), &CrossEntropyOptions::default()));
    check(v, v32, exact, None);
    // The same number as the cross-entropy of two distributions, H([0, 0, 1], [0.3, 0.3, 0.4]).
    let h = shannon_cross_entropy(
        array![0.0, 0.0, 1.0].view(),
        array![0.3, 0.3, 0.4].view(),
        &EntropyOptions::default(),
    )
    .unwrap();
    close(h[[]], exact, 1e-15);
}
