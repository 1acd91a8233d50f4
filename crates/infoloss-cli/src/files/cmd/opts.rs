//! A loss subcommand's option flags, built from the core's option catalog.
//!
//! A subcommand flattens [`CatalogOpts<L>`]: one flag per option of the catalog loss `L` (`--` and the
//! option's name with dashes), its value parser from the option's [`Kind`], its default and help from the
//! [`OptionSpec`]. The parsed values go into the options struct through the catalog's by-name setter
//! ([`Options::set_in`]), so an option added to a loss in the core is a flag here without a CLI edit. Array
//! options (class weights, `pos_weight`) are files, opened with the other inputs under the option's name.

use std::marker::PhantomData;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, value_parser};
use infoloss::options::{Kind, LossSpec, OptionSpec, Options, Value, catalog};
use serde_json::json;

/// A catalog loss a subcommand computes, by its catalog name.
pub trait CatalogLoss {
    /// The loss's name in the catalog (`"cross_entropy"`).
    const NAME: &'static str;
}

/// Declares a marker type per catalog loss.
macro_rules! catalog_losses {
    ($($ty:ident => $name:literal),+ $(,)?) => {$(
        #[doc = concat!("The catalog loss `", $name, "`.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl CatalogLoss for $ty {
            const NAME: &'static str = $name;
        }
    )+};
}

catalog_losses! {
    CrossEntropyLoss => "cross_entropy",
    NllLoss => "nll_loss",
    KlDivLoss => "kl_div",
    BceLoss => "binary_cross_entropy",
    BceWithLogitsLoss => "binary_cross_entropy_with_logits",
    EntropyLoss => "entropy",
    ShannonCrossEntropyLoss => "shannon_cross_entropy",
    JensenShannonLoss => "jensenshannon",
}

/// The catalog entry of `L`.
fn spec_of<L: CatalogLoss>() -> &'static LossSpec {
    catalog()
        .iter()
        .find(|l| l.name == L::NAME)
        .unwrap_or_else(|| panic!("{} is not a loss of the catalog", L::NAME))
}

/// The option flags of the catalog loss `L`, parsed: the scalar and choice values, and the files of the
/// array options.
#[derive(Debug, Clone)]
pub struct CatalogOpts<L> {
    values: Vec<(&'static str, Value<'static>)>,
    files: Vec<(&'static str, Option<String>)>,
    loss: PhantomData<L>,
}

impl<L: CatalogLoss> CatalogOpts<L> {
    /// The options struct with every scalar and choice option set by name; array options stay `None` (the
    /// caller sets them from [`files`](Self::files)).
    pub fn build<O: Options>(&self) -> Result<O, String> {
        let mut o = O::default();
        for &(name, value) in &self.values {
            o.set_in(L::NAME, name, value).map_err(|e| e.to_string())?;
        }
        Ok(o)
    }

    /// The array options given, as (option name, file): the option name is the file's role.
    pub fn files(&self) -> &[(&'static str, Option<String>)] {
        &self.files
    }
}

/// The options of `o` as the report's JSON object (array options are reported as inputs, not here).
pub fn report_options<O: Options>(o: &O) -> serde_json::Value {
    let array = |name: &str| O::specs().iter().any(|s| s.name == name && s.kind == Kind::Array);
    let map = o.values().into_iter().filter(|(name, _)| !array(name)).map(|(name, v)| {
        let v = match v {
            Value::None => serde_json::Value::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(x) => json!(x),
            Value::Str(s) => json!(s),
        };
        (name.to_string(), v)
    });
    serde_json::Value::Object(map.collect())
}

/// A default as clap parses it back (`-100`, `0`, `mean`, `true`).
fn default_text(v: Value<'_>) -> Option<String> {
    match v {
        Value::None => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Str(s) => Some(s.to_string()),
    }
}

/// The option's summary as help text: rustdoc links as their text, no backticks, no final period (as
/// clap's derive writes a doc line).
fn help(o: &OptionSpec) -> String {
    let mut s = o.summary().to_string();
    while let Some((start, mid)) = s.find("](").and_then(|mid| Some((s[..mid].rfind('[')?, mid))) {
        let end = s[mid..].find(')').map_or(s.len(), |e| mid + e + 1);
        let text = s[start + 1..mid].to_string();
        s.replace_range(start..end, &text);
    }
    s.replace('`', "").trim_end_matches('.').to_string()
}

/// The flag of option `o`.
fn flag(o: &OptionSpec) -> Arg {
    let arg = Arg::new(o.name).long(o.name.replace('_', "-")).help(help(o));
    let number = |arg: Arg| arg.allow_negative_numbers(true).value_name(o.name.to_uppercase());
    let arg = match o.kind {
        // A flag that is off by default is set by its presence; one that is on takes `--flag=false`.
        Kind::Bool if o.default == Value::Bool(false) => return arg.action(ArgAction::SetTrue),
        Kind::Bool => arg.value_parser(value_parser!(bool)).num_args(0..=1).default_missing_value("true"),
        Kind::Int => number(arg.value_parser(value_parser!(i64))),
        Kind::Float | Kind::OptionalFloat => number(arg.value_parser(value_parser!(f64))),
        Kind::OptionalCount => arg.value_parser(value_parser!(usize)).value_name(o.name.to_uppercase()),
        Kind::Choice(choices) => arg
            .value_parser(PossibleValuesParser::new(choices.iter().copied()))
            .value_name(o.name.to_uppercase()),
        Kind::Array => return arg.value_name("FILE"),
    };
    match default_text(o.default) {
        Some(d) => arg.default_value(d),
        None => arg,
    }
}

impl<L: CatalogLoss> FromArgMatches for CatalogOpts<L> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = Vec::new();
        let mut files = Vec::new();
        for o in spec_of::<L>().options {
            let id = o.name;
            let value = match o.kind {
                Kind::Array => {
                    files.push((id, m.get_one::<String>(id).cloned()));
                    continue;
                }
                Kind::Bool => Value::Bool(m.get_flag(id)),
                Kind::Int => m.get_one::<i64>(id).map_or(Value::None, |&i| Value::Int(i)),
                Kind::Float | Kind::OptionalFloat => {
                    m.get_one::<f64>(id).map_or(Value::None, |&x| Value::Float(x))
                }
                Kind::OptionalCount => m.get_one::<usize>(id).map_or(Value::None, |&n| Value::Int(n as i64)),
                // the parser accepted one of the choices: its 'static spelling
                Kind::Choice(choices) => m
                    .get_one::<String>(id)
                    .and_then(|s| choices.iter().find(|c| **c == s.as_str()))
                    .map_or(Value::None, |c| Value::Str(c)),
            };
            values.push((id, value));
        }
        Ok(CatalogOpts { values, files, loss: PhantomData })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<L: CatalogLoss> Args for CatalogOpts<L> {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(spec_of::<L>().options.iter().map(flag))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
