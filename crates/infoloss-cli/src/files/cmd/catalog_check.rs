//! The loss subcommands follow the core's option catalog: each catalog option of a loss the CLI serves has its
//! `--flag` (the option's name with dashes) with the catalog's default, and a subcommand has no other flag but its
//! files and the common ones. The flags are built from the catalog (`opts.rs`); this checks what clap ends up
//! with, and that every catalog loss is served or excused.

use clap::{ArgAction, Subcommand};
use infoloss::options::{Kind, OptionSpec, Value, catalog};

use super::LossCommand;

/// The subcommand serving each catalog loss, or `None` with the reason the CLI does not serve it.
const SERVED: &[(&str, Result<&str, &str>)] = &[
    ("cross_entropy", Ok("cross-entropy")),
    ("cross_entropy_probs", Ok("cross-entropy")),
    ("nll_loss", Ok("nll-loss")),
    ("kl_div", Ok("kl-div")),
    ("binary_cross_entropy", Ok("bce")),
    ("binary_cross_entropy_with_logits", Ok("bce-with-logits")),
    ("entropy", Ok("entropy")),
    ("shannon_cross_entropy", Ok("shannon-cross-entropy")),
    ("jensenshannon", Ok("js")),
    ("distill", Err("training losses: `infoloss distill` runs them in candle, `infoloss bench` times them")),
    ("distill_topk", Err("training loss, see distill")),
    ("uda_consistency", Err("training loss, see distill")),
    ("cross_entropy_extras", Err("training loss (z-loss, softcap), not a file computation yet")),
    ("linear_cross_entropy", Err("fused training loss over a linear head")),
    ("linear_distill", Err("fused training loss over two linear heads")),
    ("linear_distill_topk", Err("fused training loss over a linear head and a stored top-k teacher")),
];

/// Flags of a loss subcommand that are not loss options: its files and what every subcommand takes.
const NOT_OPTIONS: &[&str] = &[
    "input",
    "target",
    "grad-target-out",
    "grad-q-out",
    "json",
    "out",
    "grad",
    "grad-out",
    "upstream",
    "key",
    "tensor",
    "dtype",
    "finite",
    "quiet",
    "help",
];

fn subcommands() -> clap::Command {
    LossCommand::augment_subcommands(clap::Command::new("infoloss"))
}

/// What is wrong with the flag of option `o` on subcommand `sub`, if anything.
fn check(sub: &clap::Command, o: &OptionSpec) -> Option<String> {
    let flag = o.cli_flag();
    let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(&flag[2..])) else {
        return Some(format!("{}: no {flag} for the option {} ({})", sub.get_name(), o.name, o.summary()));
    };
    let defaults: Vec<String> =
        arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
    let bad = |what: String| Some(format!("{} {flag}: {what} (catalog: {})", sub.get_name(), o.default));
    match (o.kind, o.default) {
        (Kind::Array, Value::None) if defaults.is_empty() && arg.get_action().takes_values() => None,
        (Kind::Bool, Value::Bool(false)) if matches!(arg.get_action(), ArgAction::SetTrue) => None,
        (Kind::OptionalFloat | Kind::OptionalCount, Value::None) if defaults.is_empty() => None,
        (Kind::Int, Value::Int(d)) if defaults == [d.to_string()] => None,
        (Kind::Float, Value::Float(d)) if defaults.len() == 1 && defaults[0].parse::<f64>() == Ok(d) => None,
        (Kind::Choice(choices), Value::Str(d)) if defaults == [d] => {
            let values: Vec<String> =
                arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
            let foreign: Vec<&String> = values.iter().filter(|v| !choices.contains(&v.as_str())).collect();
            if foreign.is_empty() {
                None
            } else {
                bad(format!("accepts {foreign:?}, not spellings of the option"))
            }
        }
        _ => bad(format!("default {defaults:?}, action {:?}", arg.get_action())),
    }
}

#[test]
fn every_catalog_loss_is_served_or_excused() {
    let listed: Vec<&str> = SERVED.iter().map(|(l, _)| *l).collect();
    let names: Vec<&str> = catalog().iter().map(|l| l.name).collect();
    assert_eq!(listed, names, "SERVED must list the catalog's losses, in its order");
}

#[test]
fn loss_flags_follow_the_catalog() {
    let cmds = subcommands();
    let mut problems = Vec::new();
    for (loss, served) in SERVED {
        let Ok(name) = served else { continue };
        let spec = catalog().iter().find(|l| l.name == *loss).expect("listed from the catalog");
        let sub = cmds.find_subcommand(name).unwrap_or_else(|| panic!("no subcommand {name}"));
        problems.extend(spec.options.iter().filter_map(|o| check(sub, o)));
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let option = spec.options.iter().any(|o| o.name.replace('_', "-") == long);
            if !option && !NOT_OPTIONS.contains(&long) {
                problems
                    .push(format!("{name} --{long}: not an option of {} in the catalog", spec.options_type));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
