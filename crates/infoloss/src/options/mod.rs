//! The option catalog: every loss's options declared once.
//!
//! Each options struct (`CrossEntropyOptions`, `DistillOptions`, …) is declared here through one macro
//! that writes, from a single list of `name: type = default` fields with their docs,
//!
//! - the struct with its documented public fields (the loss modules re-export it, so
//!   `infoloss::CrossEntropyOptions` and `infoloss::cross_entropy::CrossEntropyOptions` are the same type),
//! - its `Default` (PyTorch's or SciPy's defaults),
//! - its [`Options`] implementation: [`Options::specs`] describes every option (name, [`Kind`], default as a
//!   [`Value`], doc), [`Options::set`] sets one by name from a [`Value`] and [`Options::values`] reads them back.
//!
//! [`catalog()`] lists every loss with its options, the arguments it has gradients for, whether it has an
//! in-place variant and its PyTorch or SciPy equivalent. The front ends (the Python package and its stubs, the
//! CLI, `infoloss bench`, the fuzz targets) read their option names and defaults from it or are tested
//! against it, so adding an option to a loss is one field here plus its formula.
//!
//! ```
//! use infoloss::options::{Options, Value, catalog};
//! use infoloss::{CrossEntropyOptions, Reduction};
//!
//! let mut o = CrossEntropyOptions::<f32>::default();
//! o.set("reduction", Value::Str("sum"))?;
//! o.set("label_smoothing", Value::Float(0.1))?;
//! assert_eq!((o.reduction, o.label_smoothing), (Reduction::Sum, 0.1));
//! let err = o.set("smoothing", Value::Float(0.1)).unwrap_err().to_string();
//! assert!(err.contains("smoothing") && err.contains("label_smoothing"));
//!
//! let ce = catalog().iter().find(|l| l.name == "cross_entropy").unwrap();
//! let ii = ce.option("ignore_index").unwrap();
//! assert_eq!(ii.default, Value::Int(-100));
//! assert_eq!(ce.pytorch, "torch.nn.functional.cross_entropy");
//! # Ok::<(), infoloss::Error>(())
//! ```

use std::fmt;

use ndarray::{ArrayView1, ArrayViewD};

use crate::{Error, Reduction, Result};

mod catalog;
mod class;
mod distill;
mod elementwise;
mod info;
mod linear;

pub use catalog::{LossSpec, catalog};
pub use class::{CrossEntropyExtrasOptions, CrossEntropyOptions, NllOptions};
pub use distill::{DEFAULT_JSD_BETA, DistillOptions, Divergence, Sharpen, UdaNormalize, UdaOptions};
pub use elementwise::{BceOptions, BceWithLogitsOptions, KlDivOptions};
pub use info::{EntropyOptions, JensenShannonOptions};
pub use linear::{LinearCrossEntropyOptions, LinearDistillOptions};

/// One option value, as a front end passes it (a Python keyword argument, a CLI flag).
///
/// Choices ([`Reduction`], [`Divergence`], …) are their PyTorch-style spellings (`Str("mean")`); a missing
/// optional value is `None`. Array options (class weights) have no `Value`: they are set on the field.
///
/// ```
/// use infoloss::options::Value;
/// assert_eq!(Value::Int(-100).to_string(), "-100");
/// assert_eq!(Value::Str("mean").to_string(), "'mean'");
/// assert_eq!(Value::Bool(true).to_string(), "True"); // Python spelling
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value (Python `None`): an unset optional option.
    None,
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A choice, spelled as PyTorch does (`"mean"`, `"forward_kl"`).
    Str(&'a str),
}

impl fmt::Display for Value<'_> {
    /// Python's `repr` of the value (`None`, `True`, `-100`, `1.0`, `'mean'`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "'{s}'"),
        }
    }
}

/// The type of an option, as a front end declares it.
///
/// ```
/// use infoloss::options::Kind;
/// assert_eq!(Kind::OptionalFloat.python(), "Optional[float]");
/// assert_eq!(Kind::Choice(&["none", "mean"]).python(), "str");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// `i64` (or `isize` for an axis).
    Int,
    /// `f64`.
    Float,
    /// `Option<f64>`.
    OptionalFloat,
    /// `Option<usize>`: a count, `None` for automatic.
    OptionalCount,
    /// One of the listed spellings (a Rust enum such as [`Reduction`]).
    Choice(&'static [&'static str]),
    /// An optional array (a class or element weight); set on the field, not through [`Options::set`].
    Array,
}

impl Kind {
    /// The Python annotation of an option of this kind (`ArrayLike` for arrays).
    pub fn python(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::OptionalFloat => "Optional[float]",
            Kind::OptionalCount => "Optional[int]",
            Kind::Choice(_) => "str",
            Kind::Array => "Optional[ArrayLike]",
        }
    }
}

/// One option of an options struct: what the front ends need to declare it.
///
/// ```
/// use infoloss::options::{Kind, Options, Value};
/// use infoloss::KlDivOptions;
/// let s = &KlDivOptions::specs()[1];
/// assert_eq!((s.name, s.kind, s.default), ("log_target", Kind::Bool, Value::Bool(false)));
/// assert_eq!(s.summary(), "Whether `target` holds log-probabilities.");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionSpec {
    /// The option's name: the struct field's, and the Python keyword's (the CLI spells it with dashes).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its default, the value in the struct's `Default`.
    pub default: Value<'static>,
    /// The field's documentation, one source line per line.
    pub doc: &'static str,
}

impl OptionSpec {
    /// The first sentence-line of [`doc`](Self::doc), trimmed.
    pub fn summary(&self) -> &'static str {
        self.doc.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
    }

    /// The CLI flag: `--` and the name with dashes (`--ignore-index`).
    pub fn cli_flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// An options struct of the catalog: its option specs, and setting and reading options by name.
///
/// ```
/// use infoloss::options::{Options, Value};
/// use infoloss::DistillOptions;
/// let mut o = DistillOptions::default();
/// o.set("divergence", Value::Str("jsd"))?;
/// o.set("beta", Value::Float(0.25))?;
/// assert_eq!(o.divergence, infoloss::Divergence::GeneralizedJsd { beta: 0.25 });
/// let values = o.values();
/// assert!(values.contains(&("divergence", Value::Str("jsd"))) && values.contains(&("beta", Value::Float(0.25))));
/// assert!(o.set("temperature", Value::Str("hot")).unwrap_err().to_string().contains("temperature"));
/// # Ok::<(), infoloss::Error>(())
/// ```
pub trait Options: Default {
    /// The struct's name (`"CrossEntropyOptions"`), used in error messages.
    const NAME: &'static str;

    /// Every option, in declaration order (a nested options struct contributes its options in its place).
    fn specs() -> &'static [OptionSpec];

    /// Sets the option `name` from `value`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option when it does not exist (the message lists the options),
    /// when the value has the wrong type or is not one of the choices, or when it is an array option.
    fn set(&mut self, name: &str, value: Value<'_>) -> Result<()> {
        self.set_in(Self::NAME, name, value)
    }

    /// [`set`](Self::set), with errors naming the function `op` (`"distill"`) instead of the struct.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    fn set_in(&mut self, op: &'static str, name: &str, value: Value<'_>) -> Result<()>;

    /// Every option's current value (array options: `None`, or `Str("array")` when set).
    fn values(&self) -> Vec<(&'static str, Value<'static>)>;
}

/// One option to set by name, as [`OptionField::set_option`] receives it.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'v> {
    /// What errors name: the function (`"distill"`) or the options struct.
    pub owner: &'static str,
    /// The option's name.
    pub option: &'v str,
    /// Its new value.
    pub value: Value<'v>,
}

/// A field type of an options struct: how it is described, set and read.
///
/// Implemented by the scalar and choice types and by the option structs themselves (a nested struct, as
/// `LinearDistillOptions::distill`, contributes its own options).
pub trait OptionField: Sized {
    /// Appends the specs of a field `name` of this type whose default is `default`.
    fn describe(name: &'static str, doc: &'static str, default: &Self, out: &mut Vec<OptionSpec>);

    /// Makes the setting `s` if this field (named `name`) holds its option; `None` if it does not.
    fn set_option(&mut self, name: &'static str, s: Setting<'_>) -> Option<Result<()>>;

    /// Appends the values of the options this field (named `name`) holds.
    fn read(&self, name: &'static str, out: &mut Vec<(&'static str, Value<'static>)>);
}

/// A field holding exactly one option of kind `$kind`, read by `$to` and set by `$from` (`None`: the
/// value does not fit, and the error says `$expected`).
macro_rules! leaf {
    ($ty:ty, $kind:expr, $expected:expr, to: $to:expr, from: $from:expr) => {
        impl crate::options::OptionField for $ty {
            fn describe(
                name: &'static str,
                doc: &'static str,
                default: &Self,
                out: &mut Vec<crate::options::OptionSpec>,
            ) {
                out.push(crate::options::OptionSpec { name, kind: $kind, default: ($to)(default), doc });
            }
            fn set_option(
                &mut self,
                name: &'static str,
                s: crate::options::Setting<'_>,
            ) -> Option<crate::Result<()>> {
                (s.option == name).then(|| {
                    let parsed: Option<$ty> = ($from)(s.value);
                    *self = parsed
                        .ok_or_else(|| crate::Error::invalid_option(s.owner, name, s.value, $expected))?;
                    Ok(())
                })
            }
            fn read(
                &self,
                name: &'static str,
                out: &mut Vec<(&'static str, crate::options::Value<'static>)>,
            ) {
                out.push((name, ($to)(self)));
            }
        }
    };
}
pub(crate) use leaf;

/// An integer or float value as `f64` (Python passes `1` for `1.0`).
fn as_f64(v: Value<'_>) -> Option<f64> {
    match v {
        Value::Float(x) => Some(x),
        Value::Int(i) => Some(i as f64),
        _ => None,
    }
}

/// A `Str` value parsed by `FromStr`.
pub(crate) fn parse_str<C: std::str::FromStr>(v: Value<'_>) -> Option<C> {
    match v {
        Value::Str(s) => s.parse().ok(),
        _ => None,
    }
}

/// What a choice option accepts: `expected one of 'a', 'b'`.
pub(crate) fn one_of(choices: &[&str]) -> String {
    let list = choices.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
    format!("expected one of {list}")
}

leaf!(bool, Kind::Bool, "expected a bool", to: |b: &bool| Value::Bool(*b), from: |v| match v {
    Value::Bool(b) => Some(b),
    _ => None,
});
leaf!(i64, Kind::Int, "expected an integer", to: |i: &i64| Value::Int(*i), from: |v| match v {
    Value::Int(i) => Some(i),
    _ => None,
});
leaf!(isize, Kind::Int, "expected an integer", to: |i: &isize| Value::Int(*i as i64), from: |v| match v {
    Value::Int(i) => isize::try_from(i).ok(),
    _ => None,
});
leaf!(f64, Kind::Float, "expected a number", to: |x: &f64| Value::Float(*x), from: as_f64);
leaf!(Option<f64>, Kind::OptionalFloat, "expected a number or None",
to: |x: &Option<f64>| x.map_or(Value::None, Value::Float),
from: |v| match v {
    Value::None => Some(None),
    v => as_f64(v).map(Some),
});
leaf!(Option<usize>, Kind::OptionalCount, "expected a non-negative integer or None",
to: |x: &Option<usize>| x.map_or(Value::None, |n| Value::Int(n as i64)),
from: |v| match v {
    Value::None => Some(None),
    Value::Int(i) => usize::try_from(i).ok().map(Some),
    _ => None,
});

/// The spellings of [`Reduction`], in its declaration order.
const REDUCTIONS: &[&str] = &["none", "mean", "sum", "batchmean"];

leaf!(Reduction, Kind::Choice(REDUCTIONS), one_of(REDUCTIONS),
    to: |r: &Reduction| Value::Str(r.as_str()), from: parse_str);

/// An array option: described (kind [`Kind::Array`], default `None`) but set on the field.
macro_rules! array_leaf {
    ($($view:ident),*) => {$(
        impl<T> OptionField for Option<$view<'_, T>> {
            fn describe(name: &'static str, doc: &'static str, _: &Self, out: &mut Vec<OptionSpec>) {
                out.push(OptionSpec { name, kind: Kind::Array, default: Value::None, doc });
            }
            fn set_option(&mut self, name: &'static str, s: Setting<'_>) -> Option<Result<()>> {
                let err = || Error::invalid_option(s.owner, name, s.value, "an array option: set the field");
                (s.option == name).then(|| Err(err()))
            }
            fn read(&self, name: &'static str, out: &mut Vec<(&'static str, Value<'static>)>) {
                out.push((name, if self.is_some() { Value::Str("array") } else { Value::None }));
            }
        }
    )*};
}
array_leaf!(ArrayView1, ArrayViewD);

/// A unit-variant enum spelled by strings: `choice!(Sharpen { Target => "target", … })` writes its
/// `CHOICES`, `as_str`, `FromStr` and [`OptionField`].
macro_rules! choice {
    ($ty:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            /// The spellings the front ends accept, in declaration order.
            pub const CHOICES: &'static [&'static str] = &[$($s),+];

            /// The spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> std::result::Result<Self, ()> {
                match s { $($s => Ok($ty::$variant),)+ _ => Err(()) }
            }
        }

        crate::options::leaf!($ty, crate::options::Kind::Choice($ty::CHOICES), crate::options::one_of($ty::CHOICES),
            to: |c: &$ty| crate::options::Value::Str(c.as_str()), from: crate::options::parse_str);
    };
}
pub(crate) use choice;

/// Declares an options struct of the catalog: the struct with its documented fields, its `Default` (the
/// `= default` of every field) and its [`Options`] and [`OptionField`] implementations.
///
/// Generic structs are written `Name<'a, T>`; their specs are computed once, for `T = f32` (the specs do
/// not depend on `T`).
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime, $t:ident>)? {
            $(
                $(#[doc = $doc:literal])+
                pub $field:ident: $ty:ty = $default:expr,
            )+
        }
    ) => {
        $(#[$meta])*
        pub struct $name $(<$lt, $t>)? {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        impl $(<$t>)? Default for $name $(<'_, $t>)? {
            fn default() -> Self {
                $name { $($field: $default),+ }
            }
        }

        impl $(<$lt, $t>)? crate::options::Options for $name $(<$lt, $t>)? {
            const NAME: &'static str = stringify!($name);

            fn specs() -> &'static [crate::options::OptionSpec] {
                static SPECS: std::sync::LazyLock<Vec<crate::options::OptionSpec>> =
                    std::sync::LazyLock::new(|| {
                        let d = <crate::options::concrete!($name $(<$lt, $t>)?) as Default>::default();
                        let mut out = Vec::new();
                        $(
                            crate::options::OptionField::describe(
                                stringify!($field),
                                concat!($($doc, "\n"),+),
                                &d.$field,
                                &mut out,
                            );
                        )+
                        out
                    });
                &SPECS
            }

            fn set_in(
                &mut self,
                op: &'static str,
                name: &str,
                value: crate::options::Value<'_>,
            ) -> crate::Result<()> {
                let s = crate::options::Setting { owner: op, option: name, value };
                $(
                    if let Some(r) = crate::options::OptionField::set_option(&mut self.$field, stringify!($field), s) {
                        return r;
                    }
                )+
                Err(crate::options::unknown::<Self>(op, name))
            }

            fn values(&self) -> Vec<(&'static str, crate::options::Value<'static>)> {
                let mut out = Vec::new();
                $( crate::options::OptionField::read(&self.$field, stringify!($field), &mut out); )+
                out
            }
        }

        impl $(<$lt, $t>)? crate::options::OptionField for $name $(<$lt, $t>)? {
            fn describe(
                _: &'static str,
                _: &'static str,
                _: &Self,
                out: &mut Vec<crate::options::OptionSpec>,
            ) {
                out.extend_from_slice(<Self as crate::options::Options>::specs());
            }
            fn set_option(&mut self, _: &'static str, s: crate::options::Setting<'_>) -> Option<crate::Result<()>> {
                <Self as crate::options::Options>::specs()
                    .iter()
                    .any(|spec| spec.name == s.option)
                    .then(|| crate::options::Options::set_in(self, s.owner, s.option, s.value))
            }
            fn read(&self, _: &'static str, out: &mut Vec<(&'static str, crate::options::Value<'static>)>) {
                out.extend(crate::options::Options::values(self));
            }
        }
    };
}
pub(crate) use options;

/// The type a generic options struct's specs are computed with: `T = f32`.
macro_rules! concrete {
    ($name:ident) => {
        $name
    };
    ($name:ident <$lt:lifetime, $t:ident>) => {
        $name<'static, f32>
    };
}
pub(crate) use concrete;

/// The error of an option name a struct does not have, listing the ones it has.
pub(crate) fn unknown<O: Options>(op: &'static str, name: &str) -> Error {
    let known = O::specs().iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    Error::invalid_option(op, "option", name, format!("no such option; {} has: {known}", O::NAME))
}
