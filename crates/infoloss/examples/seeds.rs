//! Prints the six worked numbers of the seed articles, computed by infoloss in f32 and f64.
//!
//! Run: `cargo run --release -p infoloss --example seeds`

use infoloss::ndarray::{Array2, array};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, KlDivOptions, Reduction, binary_cross_entropy,
    binary_cross_entropy_with_logits, cross_entropy, kl_div, softmax,
};

fn run<T: infoloss::Element + std::fmt::Display>(
    conv: impl Fn(f64) -> T,
    ln: impl Fn(T) -> T,
) -> infoloss::Result<[T; 6]> {
    let m = |a: Array2<f64>| a.mapv(&conv);
    let x = m(array![[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]]);
    let t = m(array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let w = m(array![[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]]).into_dyn();
    let big = m(array![[5.0, 1.0, 8.0], [2.0, 4.0, 6.0]]);
    let q = m(array![[0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]);
    let logits = m(array![[0.3f64.ln(), 0.3f64.ln(), 0.4f64.ln()]]);

    let scalar = |l: infoloss::Loss<T>| l.scalar().expect("reduced loss");
    let s1 = scalar(binary_cross_entropy(
        x.view(),
        t.view(),
        &BceOptions { weight: Some(w.view()), reduction: Reduction::Mean },
    )?);
    let s2 = scalar(binary_cross_entropy(x.view(), t.view(), &BceOptions::default())?);
    let s3 = scalar(binary_cross_entropy_with_logits(x.view(), t.view(), &BceWithLogitsOptions::default())?);
    let s4 =
        scalar(binary_cross_entropy_with_logits(big.view(), t.view(), &BceWithLogitsOptions::default())?);
    let logp = softmax(x.view(), 1)?.mapv(ln);
    let s5 = scalar(kl_div(
        logp.view(),
        q.view(),
        &KlDivOptions { reduction: Reduction::BatchMean, log_target: false },
    )?);
    let s6 = scalar(cross_entropy(logits.view(), array![2i64].view(), &CrossEntropyOptions::default())?);
    Ok([s1, s2, s3, s4, s5, s6])
}

fn main() -> infoloss::Result<()> {
    let names = [
        "binary_cross_entropy(x, t, weight=w)",
        "binary_cross_entropy(x, t)",
        "binary_cross_entropy_with_logits(x, t)",
        "binary_cross_entropy_with_logits([[5,1,8],[2,4,6]], t)",
        "kl_div(log(softmax(l)), q, reduction='batchmean')",
        "cross_entropy(log([0.3,0.3,0.4]), 2) = -log 0.4",
    ];
    let exact = [
        0.12723308136613606,
        0.5912299819733728,
        0.7678469016522563,
        3.244644344413125,
        0.057796191309196596,
        0.9162907318741551,
    ];
    let f32s = run(|v| v as f32, f32::ln)?;
    let f64s = run(|v| v, f64::ln)?;
    println!("{:<3} {:<56} {:>22} {:>22} {:>22}", "#", "call", "f32", "f64", "SEEDS.md exact");
    for i in 0..6 {
        println!("{:<3} {:<56} {:>22.17} {:>22.17} {:>22.17}", i + 1, names[i], f32s[i], f64s[i], exact[i]);
    }
    Ok(())
}
