//! `infoloss bench`: time each loss over a size sweep and compare it with a memory copy of the same bytes.
//!
//! For every (op, size, dtype) the report gives the median wall time of `reps` runs, the bytes the operation must
//! move at the least (its inputs read once and its outputs written once), the achieved GB/s, and the ratio of the
//! time to a copy moving the same number of bytes, measured in the same process with the same thread count.
//!
//! The `candle-*` ops run the same losses through `infoloss-candle` (forward and `loss.backward()` on a `Var`).
//! Each is timed alternately with its core `*_with_grad` counterpart and with `candle-accum` — what candle's
//! backprop does with every gradient it receives (`zeros_like` + `add`), which no op can avoid — so the report
//! gives the ratio to the core and, net of candle's accumulation, the adapter's own overhead.

mod calls;
mod inputs;
mod ops;
mod timing;

use candle_core::WithDType;
use half::bf16;
use infoloss::Element;
use serde::Serialize;

use calls::{LinearOp, candle_call, run_op};
use inputs::make_inputs;
use ops::core_counterpart;
pub use ops::{OPS, OpSpec};
use timing::{copy_time, median_f64, time_alternating, time_reps, time_reps_prepared};

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Operation name.
    pub op: String,
    /// dtype of the inputs.
    pub dtype: String,
    /// Rows.
    pub rows: usize,
    /// Classes.
    pub classes: usize,
    /// Threads used.
    pub threads: usize,
    /// Median seconds per call.
    pub median_s: f64,
    /// Bytes the operation must move at the least.
    pub bytes: u64,
    /// Achieved bytes per second / 1e9.
    pub gb_per_s: f64,
    /// Median seconds of a copy moving the same bytes (read + write), same run.
    pub copy_s: f64,
    /// `median_s / copy_s`.
    pub ratio_to_copy: f64,
    /// For a `candle-*` op: median seconds of the core op it wraps (`*_with_grad`), timed alternately with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_s: Option<f64>,
    /// `median_s / core_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_core: Option<f64>,
    /// For a `candle-*` op: median seconds of candle's accumulation of one gradient of the input's size
    /// (`zeros_like` + `add`, as its backprop does), timed alternately with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candle_accum_s: Option<f64>,
    /// The op net of candle's accumulation relative to the core: the median over the rounds of
    /// `(op − candle accumulation) / core`, the three timed one after the other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_ratio_to_core: Option<f64>,
}

/// Settings of one bench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Operations to run (names from [`OPS`]).
    pub ops: Vec<OpSpec>,
    /// Sizes.
    pub sizes: Vec<(usize, usize)>,
    /// dtypes: "f32", "f64", "bf16", "f16".
    pub dtypes: Vec<String>,
    /// Timed repetitions (median reported).
    pub reps: usize,
    /// Thread count.
    pub threads: usize,
}

/// Parses `--ops a,b` into op specs, naming the unknown one.
pub fn parse_ops(list: &str) -> Result<Vec<OpSpec>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|name| {
            OPS.iter().copied().find(|o| o.name == name.trim()).ok_or_else(|| {
                let known: Vec<_> = OPS.iter().map(|o| o.name).collect();
                format!("unknown op {name:?} for --ops (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// Parses `--sizes 4096x32000,1024x128256`.
pub fn parse_sizes(list: &str) -> Result<Vec<(usize, usize)>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (a, b) = s.split_once(['x', 'X']).ok_or_else(|| {
                format!("invalid size {s:?} for --sizes: expected ROWSxCLASSES, e.g. 4096x32000")
            })?;
            let rows =
                a.trim().parse::<usize>().map_err(|e| format!("invalid rows in --sizes {s:?}: {e}"))?;
            let cols =
                b.trim().parse::<usize>().map_err(|e| format!("invalid classes in --sizes {s:?}: {e}"))?;
            if rows == 0 || cols == 0 {
                return Err(format!("invalid size {s:?} for --sizes: rows and classes must be positive"));
            }
            rows.checked_mul(cols).ok_or_else(|| format!("size {s:?} overflows"))?;
            Ok((rows, cols))
        })
        .collect()
}

fn elem_bytes(dtype: &str) -> usize {
    match dtype {
        "f64" => 8,
        "f32" => 4,
        _ => 2,
    }
}

/// Runs the benchmark, calling `report` after each row.
pub fn run(cfg: &BenchConfig, mut report: impl FnMut(&BenchRow) + Send) -> Result<Vec<BenchRow>, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", cfg.threads))?;
    let mut rows = Vec::new();
    pool.install(|| -> Result<(), String> {
        for &(n, v) in &cfg.sizes {
            for dtype in &cfg.dtypes {
                let rows_here = match dtype.as_str() {
                    "f32" => bench_dtype::<f32>(cfg, n, v, "f32")?,
                    "f64" => bench_dtype::<f64>(cfg, n, v, "f64")?,
                    "bf16" => bench_dtype::<bf16>(cfg, n, v, "bf16")?,
                    "f16" => bench_dtype::<half::f16>(cfg, n, v, "f16")?,
                    other => {
                        return Err(format!("unknown dtype {other:?} for --dtypes (f32, f64, bf16, f16)"));
                    }
                };
                for r in rows_here {
                    report(&r);
                    rows.push(r);
                }
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

fn bench_dtype<T: Element + WithDType>(
    cfg: &BenchConfig,
    n: usize,
    v: usize,
    dtype: &str,
) -> Result<Vec<BenchRow>, String> {
    // the N×V inputs of the row-wise losses (not needed by the fused linear ops)
    let inputs =
        cfg.ops.iter().any(|o| LinearOp::of(o.name).is_none()).then(|| make_inputs::<T>(n, v, 0x1f0_1055));
    let es = elem_bytes(dtype);
    let mut out = Vec::new();
    for op in &cfg.ops {
        let (mut core_s, mut accum_s, mut net) = (None, None, None);
        let (t, bytes) = if let (true, Some(x)) = (op.name.starts_with("candle-"), &inputs) {
            let candle = |name| candle_call(name, x).map_err(|e| format!("candle inputs: {e}"));
            let (mut err, mut core_err, mut accum_err) = (None, None, None);
            let mut call = candle(op.name)?;
            let mut run = || {
                if let Err(e) = call() {
                    err = Some(e.to_string());
                }
            };
            let t = match core_counterpart(op.name) {
                Some(core) => {
                    let mut accum = candle("candle-accum")?;
                    let times = time_alternating(
                        cfg.reps,
                        &mut [
                            &mut run,
                            &mut || {
                                if let Err(e) = run_op(core, x) {
                                    core_err = Some(e.to_string());
                                }
                            },
                            &mut || {
                                if let Err(e) = accum() {
                                    accum_err = Some(e.to_string());
                                }
                            },
                        ],
                    );
                    let column = |i: usize| median_f64(times.iter().map(|r| r[i]).collect());
                    (core_s, accum_s) = (Some(column(1)), Some(column(2)));
                    // per round, so that the three times of one ratio share the host's state
                    net = Some(median_f64(times.iter().map(|r| (r[0] - r[2]) / r[1]).collect()));
                    column(0)
                }
                None => time_reps(cfg.reps, run),
            };
            if let Some(e) = err.or(core_err).or(accum_err) {
                return Err(format!("{} failed: {e}", op.name));
            }
            (t, ((op.reads + op.writes) * n * v * es + n * 8) as u64)
        } else if let Some(linear_op) = LinearOp::of(op.name) {
            let t = match dtype {
                "f32" => linear_op.time::<f32>(n, v, cfg.reps),
                "f64" => linear_op.time::<f64>(n, v, cfg.reps),
                _ => continue, // the fused linear losses have no half-precision kernels: skipped
            }
            .map_err(|e| format!("{} failed: {e}", op.name))?;
            (t, (linear_op.elements(n, v) * es) as u64)
        } else {
            let Some(inputs) = inputs.as_ref() else { return Err(format!("{}: no inputs", op.name)) };
            let mut err = None;
            let restore = || {
                if op.name == "bce-inplace" {
                    let mut s = inputs.unit_scratch.borrow_mut();
                    if s.shape() == inputs.unit.shape() {
                        s.assign(&inputs.unit);
                    } else {
                        *s = inputs.unit.clone();
                    }
                }
            };
            let t = time_reps_prepared(cfg.reps, restore, || {
                if let Err(e) = run_op(op.name, inputs) {
                    err = Some(e);
                }
            });
            if let Some(e) = err {
                return Err(format!("{} failed: {e}", op.name));
            }
            (t, ((op.reads + op.writes) * n * v * es + n * 8) as u64)
        };
        let copy_s = copy_time((bytes / 2) as usize, cfg.reps);
        out.push(BenchRow {
            op: op.name.to_string(),
            dtype: dtype.to_string(),
            rows: n,
            classes: v,
            threads: cfg.threads,
            median_s: t,
            bytes,
            gb_per_s: bytes as f64 / t / 1e9,
            copy_s,
            ratio_to_copy: t / copy_s,
            core_s,
            ratio_to_core: core_s.map(|c| t / c),
            candle_accum_s: accum_s,
            net_ratio_to_core: net,
        });
    }
    Ok(out)
}

/// Formats a row for humans (a `candle-*` row adds the core's time, the ratio to it, candle's accumulation
/// and the ratio net of it).
pub fn format_row(r: &BenchRow) -> String {
    let core = match (r.core_s, r.ratio_to_core, r.candle_accum_s, r.net_ratio_to_core) {
        (Some(c), Some(q), Some(a), Some(net)) => {
            format!("  core {:>8.2} ms  x{q:.2}  candle accum {:>8.2} ms  net x{net:.2}", c * 1e3, a * 1e3)
        }
        _ => String::new(),
    };
    format!(
        "{:<12} {:<5} {:>6}x{:<7} {:>2}T {:>10.2} ms {:>9.1} MB {:>7.2} GB/s  copy {:>8.2} ms  ratio {:>6.2}{core}",
        r.op,
        r.dtype,
        r.rows,
        r.classes,
        r.threads,
        r.median_s * 1e3,
        r.bytes as f64 / 1e6,
        r.gb_per_s,
        r.copy_s * 1e3,
        r.ratio_to_copy
    )
}
