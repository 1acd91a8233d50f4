//! Opening a command's files and converting their arrays to the computation's dtype.

use super::*;

/// The files of one command, opened.
pub(super) struct Files {
    pub(super) list: Vec<(&'static str, Input)>,
}

impl Files {
    /// Opens each (role, argument), giving `--key`/`--tensor` values to archive inputs without a `#NAME`.
    pub(super) fn open(
        args: &[(&'static str, &str)],
        common: &Common,
        progress: &Progress,
    ) -> Result<Files, String> {
        let mut keys: VecDeque<String> = common.key.iter().cloned().collect();
        let mut tensors: VecDeque<String> = common.tensor.iter().cloned().collect();
        let mut specs = Vec::new();
        for &(role, arg) in args {
            let mut spec = Spec::parse(arg);
            if spec.name.is_none() {
                match spec.format_hint() {
                    Some(Format::Npz) => spec.name = keys.pop_front(),
                    Some(Format::Safetensors) => spec.name = tensors.pop_front(),
                    _ => {}
                }
            }
            specs.push((role, spec));
        }
        if !keys.is_empty() {
            return Err(format!(
                "--key {} is not used: there are more --key options than .npz inputs without #NAME",
                keys.front().map_or("", |s| s.as_str())
            ));
        }
        if !tensors.is_empty() {
            return Err(format!(
                "--tensor {} is not used: there are more --tensor options than .safetensors inputs without #NAME",
                tensors.front().map_or("", |s| s.as_str())
            ));
        }
        let mut list = Vec::new();
        for (role, spec) in specs {
            progress.stage(format!("reading {}", spec.path.display()));
            list.push((role, Input::open(&spec)?));
        }
        Ok(Files { list })
    }

    pub(super) fn get(&self, role: &str) -> Option<&Input> {
        self.list.iter().find(|(r, _)| *r == role).map(|(_, i)| i)
    }

    pub(super) fn req(&self, role: &str) -> Result<&Input, String> {
        self.get(role).ok_or_else(|| format!("internal: no {role} file"))
    }

    pub(super) fn label(&self, role: &str) -> Option<&str> {
        self.get(role).map(|i| i.label.as_str())
    }

    pub(super) fn infos(&self, indices_roles: &[&str]) -> Vec<InputInfo> {
        self.list
            .iter()
            .map(|(role, inp)| {
                let want = if indices_roles.contains(role) { Want::Indices } else { Want::Floats };
                let (shape, dtype) = inp.describe(want);
                InputInfo { role, file: inp.label.clone(), shape, dtype, mapped: inp.mapped() }
            })
            .collect()
    }

    /// The dtype to compute in: `--dtype`, else the widest float dtype among `roles`' typed inputs (f16 with
    /// bf16 gives f32), else float64.
    pub(super) fn dtype(&self, common: &Common, roles: &[&str]) -> Result<StoredDType, String> {
        if let Some(d) = common.dtype {
            return Ok(match d {
                DTypeArg::F16 => StoredDType::F16,
                DTypeArg::Bf16 => StoredDType::BF16,
                DTypeArg::F32 => StoredDType::F32,
                DTypeArg::F64 => StoredDType::F64,
            });
        }
        let mut best: Option<StoredDType> = None;
        for &r in roles {
            let Some(inp) = self.get(r) else { continue };
            if !inp.typed() {
                continue;
            }
            let t = inp.tensor(Want::Floats)?;
            if !t.dtype.is_float() {
                continue;
            }
            best = Some(match (best, t.dtype) {
                (None, d) => d,
                (Some(a), b) if a == b => a,
                (Some(StoredDType::F64), _) | (_, StoredDType::F64) => StoredDType::F64,
                _ => StoredDType::F32,
            });
        }
        Ok(best.unwrap_or(StoredDType::F64))
    }
}

/// Loads a floating-point input as `T`; `ints_ok` lets integer arrays through (SciPy-style measures, as
/// NumPy converts counts to float64).
pub(super) fn floats<'a, T: Elem>(
    inp: &'a Input,
    ints_ok: bool,
    common: &Common,
    progress: &Progress,
) -> Result<CowArray<'a, T, IxDyn>, String> {
    let t = inp.tensor(Want::Floats)?;
    if inp.typed() && !t.dtype.is_float() && !ints_ok {
        return Err(format!(
            "{}: wrong dtype {}: expected floating-point values (float16, bfloat16, float32 or float64)",
            inp.label, t.dtype
        ));
    }
    progress.stage(format!("loading {}", inp.label));
    let a = convert::<T>(inp)?;
    if common.finite {
        if let Some((i, v)) = a.indexed_iter().find(|(_, v)| !v.to_f64().is_finite()) {
            return Err(format!(
                "{}: {} at {:?} (--finite rejects NaN and ±inf)",
                inp.label,
                super::super::report::json_number(*v).as_str().unwrap_or("non-finite value"),
                i.slice()
            ));
        }
    }
    Ok(a)
}

pub(super) fn convert<T: Elem>(inp: &Input) -> Result<CowArray<'_, T, IxDyn>, String> {
    inp.tensor(Want::Floats)?.into_floats::<T>().map_err(|m| format!("{}: {m}", inp.label))
}

pub(super) fn indices(inp: &Input) -> Result<CowArray<'_, i64, IxDyn>, String> {
    inp.tensor(Want::Indices)?.into_indices().map_err(|m| format!("{}: {m}", inp.label))
}

/// Turns a library error into one line naming the files involved.
pub(super) fn lib_error(e: infoloss::Error, files: &Files, names: &[(&str, &str)]) -> String {
    use infoloss::Error as E;
    let file_of = |name: &str| -> Option<String> {
        names.iter().find(|(n, _)| *n == name).and_then(|(_, role)| files.label(role)).map(str::to_string)
    };
    let prefix = match &e {
        E::ShapeMismatch { left_name, right_name, .. } => match (file_of(left_name), file_of(right_name)) {
            (Some(a), Some(b)) if a != b => Some(format!("{a}, {b}")),
            (Some(a), _) | (None, Some(a)) => Some(a),
            _ => None,
        },
        E::BadRank { name, .. } | E::InvalidValue { name, .. } => file_of(name),
        E::TargetOutOfRange { .. } => file_of("target"),
        E::InvalidOption { option, .. } if matches!(*option, "dim" | "axis") => file_of("input"),
        E::TooLarge { .. } => file_of("input"),
        _ => None,
    };
    match prefix {
        Some(p) => format!("{p}: {e}"),
        None => e.to_string(),
    }
}

pub(super) const LOSS_NAMES: &[(&str, &str)] = &[
    ("input", "input"),
    ("target", "target"),
    ("weight", "weight"),
    ("pos_weight", "pos_weight"),
    ("grad_output", "upstream"),
    ("x", "input"),
    ("p", "input"),
    ("pk", "input"),
    ("q", "target"),
    ("qk", "target"),
    ("output", "input"),
];
