//! The candle options structs follow the core's option catalog: the same options, in the same order, with the
//! same defaults (the array options are tensors here). Adding an option to one of these losses in the core fails
//! this test until the candle struct has it.
//!
//! The structs are read through their `Debug` output (`Name { field: value, … }`), which lists every field.

use infoloss::options::{Options, Value};
use infoloss_candle as ic;

/// `(field, value)` pairs of a `Debug` rendering `Name { a: 1, b: None }` (values without nested braces).
fn debug_fields(debug: &str) -> Vec<(String, String)> {
    let body = debug.split_once('{').and_then(|(_, b)| b.rsplit_once('}')).map_or("", |(b, _)| b);
    body.split(", ")
        .filter_map(|f| f.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_lowercase()))
        .collect()
}

/// A catalog value as a lower-cased `Debug` spelling (`None`, `Mean`, `-100`, `0.0`, `false`).
fn spelled(v: Value<'_>) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string().to_lowercase(),
    }
}

fn check<O: Options>(candle: &dyn std::fmt::Debug) {
    let got = debug_fields(&format!("{candle:?}"));
    let want: Vec<(String, String)> =
        O::default().values().into_iter().map(|(k, v)| (k.to_string(), spelled(v))).collect();
    assert_eq!(
        got,
        want,
        "{}: candle's struct differs from the catalog (left: candle, right: catalog)",
        O::NAME
    );
}

#[test]
fn candle_options_follow_the_catalog() {
    check::<infoloss::NllOptions<f32>>(&ic::NllOptions::default());
    check::<infoloss::CrossEntropyOptions<f32>>(&ic::CrossEntropyOptions::default());
    check::<infoloss::BceOptions<f32>>(&ic::BceOptions::default());
    check::<infoloss::BceWithLogitsOptions<f32>>(&ic::BceWithLogitsOptions::default());
}

#[test]
fn the_reexported_options_are_the_catalogs() {
    // kl_div, distill, UDA and the fused distillations take the core's structs themselves
    let _: ic::KlDivOptions = infoloss::KlDivOptions::default();
    let _: ic::DistillOptions = infoloss::DistillOptions::default();
    let _: ic::UdaOptions = infoloss::UdaOptions::default();
    let _: ic::LinearDistillOptions = infoloss::LinearDistillOptions::default();
}

/// Each catalog loss and the candle function serving it, or why candle has none.
const SERVED: &[(&str, Result<&str, &str>)] = &[
    ("cross_entropy", Ok("cross_entropy")),
    ("cross_entropy_probs", Ok("cross_entropy_probs")),
    ("nll_loss", Ok("nll_loss")),
    ("kl_div", Ok("kl_div")),
    ("binary_cross_entropy", Ok("binary_cross_entropy")),
    ("binary_cross_entropy_with_logits", Ok("binary_cross_entropy_with_logits")),
    ("entropy", Err("an information measure, not a training loss")),
    ("shannon_cross_entropy", Err("an information measure, not a training loss")),
    ("jensenshannon", Err("an information measure, not a training loss")),
    ("distill", Ok("distill")),
    ("distill_topk", Ok("distill_topk")),
    ("uda_consistency", Ok("uda_consistency")),
    ("cross_entropy_extras", Err("no candle op yet")),
    ("linear_cross_entropy", Err("no candle op yet")),
    ("linear_distill", Ok("linear_distill")),
    ("linear_distill_topk", Ok("linear_distill_topk")),
];

#[test]
fn every_catalog_loss_is_served_or_excused() {
    let catalog: Vec<&str> = infoloss::options::catalog().iter().map(|l| l.name).collect();
    let listed: Vec<&str> = SERVED.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        catalog, listed,
        "the catalog's losses (left) and this list (right) differ: serve or excuse them"
    );
}
