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

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, Var, WithDType};
use half::bf16;
use infoloss::ndarray::{Array1, Array2, ArrayView1};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, Element, EntropyOptions, JensenShannonOptions,
    KlDivOptions, NllOptions, Reduction,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

/// One benchmarked operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSpec {
    /// Name on the command line.
    pub name: &'static str,
    /// What it runs.
    pub what: &'static str,
    /// Number of N×V arrays read at the least.
    pub reads: usize,
    /// Number of N×V arrays written at the least.
    pub writes: usize,
}

/// The divergence each `kd-*` op times, by its catalog spelling (`jsd` at the catalog's default beta, 0.5).
const KD_DIVERGENCES: &[(&str, &str)] =
    &[("kd", "forward_kl"), ("kd-reverse", "reverse_kl"), ("kd-jsd", "jsd"), ("kd-tvd", "tvd")];

/// Every operation `infoloss bench` knows.
pub const OPS: &[OpSpec] = &[
    OpSpec { name: "ce", what: "cross_entropy_with_grad, class targets", reads: 1, writes: 1 },
    OpSpec { name: "ce-ls", what: "cross_entropy_with_grad, label_smoothing=0.1", reads: 1, writes: 1 },
    OpSpec { name: "ce-weight", what: "cross_entropy_with_grad, weight + ignore_index", reads: 1, writes: 1 },
    OpSpec {
        name: "ce-probs",
        what: "cross_entropy_probs_with_grad, probability targets",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "ce-inplace",
        what: "cross_entropy_with_grad_in_place, class targets (gradient into the logits)",
        reads: 1,
        writes: 1,
    },
    OpSpec {
        name: "ce-probs-inplace",
        what: "cross_entropy_probs_with_grad_in_place (gradient into the logits)",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "nll", what: "nll_loss_with_grad", reads: 0, writes: 1 },
    OpSpec { name: "log-softmax", what: "log_softmax forward", reads: 1, writes: 1 },
    OpSpec { name: "softmax", what: "softmax forward", reads: 1, writes: 1 },
    OpSpec {
        name: "log-softmax-bwd",
        what: "log_softmax_backward (from the output and the upstream gradient)",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "logsumexp", what: "logsumexp along dim 1 (forward)", reads: 1, writes: 0 },
    OpSpec { name: "kl", what: "kl_div_with_grad(log p, p), batchmean", reads: 2, writes: 1 },
    OpSpec { name: "kl-log", what: "kl_div_with_grad, log_target=True, batchmean", reads: 2, writes: 1 },
    OpSpec {
        name: "kl-inplace",
        what: "kl_div_with_grad_in_place(log p, p), batchmean (gradient into the input)",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "bce", what: "binary_cross_entropy_with_grad", reads: 2, writes: 1 },
    OpSpec {
        name: "bce-inplace",
        what: "binary_cross_entropy_with_grad_in_place (gradient into the input; restored untimed)",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "bce-logits",
        what: "binary_cross_entropy_with_logits_with_grad, pos_weight",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "bce-logits-inplace",
        what: "binary_cross_entropy_with_logits_with_grad_in_place, pos_weight (gradient into the logits)",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "entropy", what: "entropy(p) along axis 1 (forward)", reads: 1, writes: 0 },
    OpSpec {
        name: "rel-entropy",
        what: "entropy(p, q) (relative entropy) along axis 1 (forward)",
        reads: 2,
        writes: 0,
    },
    OpSpec { name: "js", what: "jensenshannon(p, q) along axis 1 (forward)", reads: 2, writes: 0 },
    OpSpec {
        name: "entropy-bwd",
        what: "entropy_backward(p) along axis 1 (value and gradient, upstream ones)",
        reads: 1,
        writes: 1,
    },
    OpSpec {
        name: "js-bwd",
        what: "jensenshannon_backward(p, q) along axis 1 (gradients of p and q, upstream ones)",
        reads: 2,
        writes: 2,
    },
    OpSpec {
        name: "kd",
        what: "distill_with_grad forward KL, T=2, T² (torch: kl_div(log_softmax) x4)",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "kd-inplace",
        what: "distill_with_grad_in_place forward KL, T=2 (gradient over the student logits)",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "kd-reverse", what: "distill_with_grad reverse KL, T=2", reads: 2, writes: 1 },
    OpSpec { name: "kd-jsd", what: "distill_with_grad generalized JSD beta=0.5, T=2", reads: 2, writes: 1 },
    OpSpec { name: "kd-tvd", what: "distill_with_grad total variation, T=2", reads: 2, writes: 1 },
    OpSpec {
        name: "kd-mix",
        what: "distill_with_grad forward KL + CE on labels, alpha=0.5",
        reads: 2,
        writes: 1,
    },
    OpSpec { name: "kd-topk", what: "distill_topk_with_grad, k=64 with tail bucket", reads: 1, writes: 1 },
    OpSpec { name: "uda", what: "uda_consistency, T=0.4, threshold 0.5", reads: 2, writes: 1 },
    OpSpec {
        name: "linear-ce",
        what: "linear_cross_entropy (loss + grad hidden/weight), H=1024, f32/f64 only; bytes: inputs+grads",
        reads: 0,
        writes: 0,
    },
    OpSpec {
        name: "linear-distill",
        what: "linear_distill_backward, heads H=1024 with biases, forward KL T=2 (f32/f64 only; bytes: inputs+grads)",
        reads: 0,
        writes: 0,
    },
    OpSpec {
        name: "candle-ce",
        what: "infoloss_candle::cross_entropy + backward(), class targets (vs core ce)",
        reads: 1,
        writes: 1,
    },
    OpSpec {
        name: "candle-ce-fwd",
        what: "infoloss_candle::cross_entropy forward only, class targets",
        reads: 1,
        writes: 0,
    },
    OpSpec {
        name: "candle-kl",
        what: "infoloss_candle::kl_div(log p, p) batchmean + backward() (vs core kl)",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "candle-bce-logits",
        what: "infoloss_candle::binary_cross_entropy_with_logits, pos_weight, + backward() (vs core bce-logits)",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "candle-kd",
        what: "infoloss_candle::distill forward KL, T=2, T², + backward() (vs core kd)",
        reads: 2,
        writes: 1,
    },
    OpSpec {
        name: "candle-nn-ce",
        what: "candle_nn::loss::cross_entropy + backward(), no ignored rows (vs core ce)",
        reads: 1,
        writes: 1,
    },
    OpSpec {
        name: "candle-accum",
        what: "candle's backprop bookkeeping for one gradient: zeros_like + add (no infoloss)",
        reads: 1,
        writes: 1,
    },
];

/// The core op a `candle-*` op is compared with (timed alternately in the same run).
fn core_counterpart(op: &str) -> Option<&'static str> {
    match op {
        "candle-ce" | "candle-nn-ce" => Some("ce"),
        "candle-kl" => Some("kl"),
        "candle-bce-logits" => Some("bce-logits"),
        "candle-kd" => Some("kd"),
        _ => None,
    }
}

/// Hidden size of the fused linear ops (`rows × LINEAR_HIDDEN` hidden states, `classes × LINEAR_HIDDEN` weights).
const LINEAR_HIDDEN: usize = 1024;

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

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn time_reps(reps: usize, f: impl FnMut()) -> f64 {
    time_reps_prepared(reps, || {}, f)
}

/// [`time_reps`] with `prepare` run before each call, outside the timing.
fn time_reps_prepared(reps: usize, mut prepare: impl FnMut(), mut f: impl FnMut()) -> f64 {
    prepare();
    f(); // warm-up: page faults, caches, thread pool start
    median(
        (0..reps.max(1))
            .map(|_| {
                prepare();
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// The seconds of each of `fs` in each of `reps` rounds (`[round][f]`), run in turn so that a noisy host
/// slows them alike.
fn time_alternating(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    fs.iter_mut().for_each(|f| f()); // warm-up
    (0..reps.max(1))
        .map(|_| {
            fs.iter_mut()
                .map(|f| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                })
                .collect()
        })
        .collect()
}

/// The median of `v` (not empty).
fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median time of copying `bytes` bytes (parallel over the current pool, like the ops).
fn copy_time(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let src: Vec<u64> = (0..n as u64).collect();
    let mut dst = vec![0u64; n];
    let chunk = (n / (4 * rayon::current_num_threads()).max(1)).max(1 << 16);
    time_reps(reps, || {
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
    })
}

struct Inputs<T> {
    logits: Array2<T>,
    logits2: Array2<T>,
    topk_idx: Array2<i64>,
    topk_lp: Array2<T>,
    logp: Array2<T>,
    /// `ln` of `probs2` (the log-target of `kl-log`, computed once, outside the timed calls).
    logq: Array2<T>,
    probs: Array2<T>,
    probs2: Array2<T>,
    targets: Array1<i64>,
    unit: Array2<T>,
    binary: Array2<T>,
    weight: Array1<T>,
    pos_weight: Array1<T>,
    /// Ones, one per row: the upstream gradient of the per-row information measures' backwards.
    row_ones: Array1<T>,
    /// A copy of `logits` the in-place ops overwrite with their gradient (its values change from one
    /// repetition to the next; the work per element does not).
    scratch: std::cell::RefCell<Array2<T>>,
    /// A copy of `unit` for `bce-inplace`, made on first use and restored before each repetition (a
    /// gradient is no input of BCE: it leaves `[0, 1]`).
    unit_scratch: std::cell::RefCell<Array2<T>>,
}

fn make_inputs<T: Element>(rows: usize, cols: usize, seed: u64) -> Inputs<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let logits64 = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-4.0..4.0f64));
    let lse = |a: &Array2<f64>| {
        let mut out = a.clone();
        for mut row in out.rows_mut() {
            let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let l = m + s.ln();
            row.mapv_inplace(|v| v - l);
        }
        out
    };
    let logp64 = lse(&logits64);
    let other = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-4.0..4.0f64));
    let logq64 = lse(&other);
    let conv = |a: &Array2<f64>| a.mapv(|v| T::from_acc(<T::Acc as infoloss::Real>::c(v)));
    let targets =
        Array1::from_shape_fn(rows, |i| if i % 17 == 5 { -100 } else { rng.random_range(0..cols as i64) });
    // A sparse teacher: the top-64 classes of `other` per row with their log-probabilities at T = 2.
    let k = 64.min(cols);
    let mut topk_idx = Array2::<i64>::zeros((rows, k));
    let mut topk_lp = Array2::<f64>::zeros((rows, k));
    for (r, row) in other.rows().into_iter().enumerate() {
        let mut order: Vec<usize> = (0..cols).collect();
        order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
        let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v / 2.0));
        let l = m + row.iter().map(|v| (v / 2.0 - m).exp()).sum::<f64>().ln();
        for (j, &c) in order[..k].iter().enumerate() {
            topk_idx[[r, j]] = c as i64;
            topk_lp[[r, j]] = row[c] / 2.0 - l;
        }
    }
    let logits = conv(&logits64);
    Inputs {
        scratch: std::cell::RefCell::new(logits.clone()),
        logits2: conv(&other),
        topk_idx,
        topk_lp: conv(&topk_lp),
        logits,
        logp: conv(&logp64),
        logq: conv(&logq64),
        probs: conv(&logp64.mapv(f64::exp)),
        probs2: conv(&logq64.mapv(f64::exp)),
        targets,
        unit: conv(&Array2::from_shape_fn((rows, cols), |_| rng.random_range(0.001..0.999f64))),
        unit_scratch: std::cell::RefCell::new(Array2::from_shape_vec((0, 0), Vec::new()).unwrap_or_default()),
        binary: conv(&Array2::from_shape_fn((rows, cols), |_| if rng.random_bool(0.3) { 1.0 } else { 0.0 })),
        weight: conv(&Array2::from_shape_fn((1, cols), |_| rng.random_range(0.5..2.0f64))).row(0).to_owned(),
        row_ones: conv(&Array2::ones((1, rows))).row(0).to_owned(),
        pos_weight: conv(&Array2::from_shape_fn((1, cols), |_| rng.random_range(1.0..3.0f64)))
            .row(0)
            .to_owned(),
    }
}

/// The inputs of the `candle-*` ops: the same values as [`Inputs`], as contiguous CPU tensors; the
/// differentiated side is a `Var`.
struct CandleInputs {
    logits: Var,
    logits2: Tensor,
    logp: Var,
    probs2: Tensor,
    binary: Tensor,
    pos_weight: Tensor,
    /// Class indices with the ignored rows of [`Inputs::targets`].
    targets: Tensor,
    /// The same as `u32`, ignored rows as class 0 (candle-nn has no `ignore_index`).
    targets_u32: Tensor,
    /// A gradient-sized tensor for `candle-accum`.
    grad: Tensor,
}

fn candle_inputs<T: Element + WithDType>(x: &Inputs<T>) -> candle_core::Result<CandleInputs> {
    let t2 = |a: &Array2<T>| {
        Tensor::from_slice(a.as_standard_layout().as_slice().unwrap_or(&[]), a.dim(), &Device::Cpu)
    };
    let idx = x.targets.to_vec();
    let n = idx.len();
    Ok(CandleInputs {
        logits: Var::from_tensor(&t2(&x.logits)?)?,
        logits2: t2(&x.logits2)?,
        logp: Var::from_tensor(&t2(&x.logp)?)?,
        probs2: t2(&x.probs2)?,
        binary: t2(&x.binary)?,
        pos_weight: Tensor::from_slice(&x.pos_weight.to_vec(), x.pos_weight.len(), &Device::Cpu)?,
        targets: Tensor::from_vec(idx.clone(), n, &Device::Cpu)?,
        targets_u32: Tensor::from_vec(
            idx.iter().map(|&t| t.max(0) as u32).collect::<Vec<_>>(),
            n,
            &Device::Cpu,
        )?,
        grad: t2(&x.logits2)?,
    })
}

/// One forward (and, except for `candle-ce-fwd`, `backward()`) of a `candle-*` op; the gradients are dropped.
fn run_candle(op: &str, c: &CandleInputs) -> candle_core::Result<()> {
    use infoloss_candle as ic;
    let loss = match op {
        "candle-ce" | "candle-ce-fwd" => {
            ic::cross_entropy(c.logits.as_tensor(), &c.targets, &ic::CrossEntropyOptions::default())?
        }
        "candle-kl" => {
            let o = ic::KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
            ic::kl_div(c.logp.as_tensor(), &c.probs2, &o)?
        }
        "candle-bce-logits" => {
            let o = ic::BceWithLogitsOptions { pos_weight: Some(c.pos_weight.clone()), ..Default::default() };
            ic::binary_cross_entropy_with_logits(c.logits.as_tensor(), &c.binary, &o)?
        }
        "candle-kd" => {
            let o = ic::DistillOptions { temperature: 2.0, ..Default::default() };
            ic::distill(c.logits.as_tensor(), &c.logits2, None, &o)?
        }
        "candle-nn-ce" => candle_nn::loss::cross_entropy(c.logits.as_tensor(), &c.targets_u32)?,
        "candle-accum" => {
            drop(std::hint::black_box(c.logits.zeros_like()?.add(&c.grad)?));
            return Ok(());
        }
        other => unreachable!("op {other} validated by parse_ops"),
    };
    if op != "candle-ce-fwd" {
        drop(std::hint::black_box(loss.backward()?));
    }
    Ok(())
}

fn run_op<T: Element>(op: &str, x: &Inputs<T>) -> Result<(), infoloss::Error> {
    let bm = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let w: ArrayView1<'_, T> = x.weight.view();
    match op {
        "ce" => {
            drop(infoloss::cross_entropy_with_grad(x.logits.view(), x.targets.view(), &Default::default())?)
        }
        "ce-ls" => {
            let o = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
            drop(infoloss::cross_entropy_with_grad(x.logits.view(), x.targets.view(), &o)?)
        }
        "ce-weight" => {
            let o = CrossEntropyOptions { weight: Some(w), ..Default::default() };
            drop(infoloss::cross_entropy_with_grad(x.logits.view(), x.targets.view(), &o)?)
        }
        "ce-probs" => drop(infoloss::cross_entropy_probs_with_grad(
            x.logits.view(),
            x.probs.view(),
            &Default::default(),
        )?),
        "ce-inplace" => drop(infoloss::cross_entropy_with_grad_in_place(
            x.scratch.borrow_mut().view_mut(),
            x.targets.view(),
            &Default::default(),
        )?),
        "ce-probs-inplace" => drop(infoloss::cross_entropy_probs_with_grad_in_place(
            x.scratch.borrow_mut().view_mut(),
            x.probs.view(),
            &Default::default(),
        )?),
        "nll" => drop(infoloss::nll_loss_with_grad(x.logp.view(), x.targets.view(), &NllOptions::default())?),
        "log-softmax" => drop(infoloss::log_softmax(x.logits.view(), 1)?),
        "softmax" => drop(infoloss::softmax(x.logits.view(), 1)?),
        "log-softmax-bwd" => drop(infoloss::log_softmax_backward(x.logp.view(), x.logits2.view(), 1)?),
        "logsumexp" => drop(infoloss::logsumexp(x.logits.view(), 1)?),
        "kl" => drop(infoloss::kl_div_with_grad(x.logp.view(), x.probs2.view(), &bm)?),
        "kl-log" => {
            let o = KlDivOptions { log_target: true, ..bm };
            drop(infoloss::kl_div_with_grad(x.logp.view(), x.logq.view(), &o)?)
        }
        "kl-inplace" => drop(infoloss::kl_div_with_grad_in_place(
            x.scratch.borrow_mut().view_mut(),
            x.probs2.view(),
            &bm,
        )?),
        "bce" => drop(infoloss::binary_cross_entropy_with_grad(
            x.unit.view(),
            x.binary.view(),
            &BceOptions::default(),
        )?),
        "bce-inplace" => drop(infoloss::binary_cross_entropy_with_grad_in_place(
            x.unit_scratch.borrow_mut().view_mut(),
            x.binary.view(),
            &BceOptions::default(),
        )?),
        "bce-logits" => {
            let pw = x.pos_weight.view().into_dyn();
            let o = BceWithLogitsOptions { pos_weight: Some(pw), ..Default::default() };
            drop(infoloss::binary_cross_entropy_with_logits_with_grad(x.logits.view(), x.binary.view(), &o)?)
        }
        "bce-logits-inplace" => {
            let pw = x.pos_weight.view().into_dyn();
            let o = BceWithLogitsOptions { pos_weight: Some(pw), ..Default::default() };
            let mut s = x.scratch.borrow_mut();
            drop(infoloss::binary_cross_entropy_with_logits_with_grad_in_place(
                s.view_mut(),
                x.binary.view(),
                &o,
            )?)
        }
        "entropy" => drop(infoloss::entropy(x.probs.view(), None, &EntropyOptions { base: None, axis: 1 })?),
        "rel-entropy" => drop(infoloss::entropy(
            x.probs.view(),
            Some(x.probs2.view()),
            &EntropyOptions { base: None, axis: 1 },
        )?),
        "js" => drop(infoloss::jensenshannon(
            x.probs.view(),
            x.probs2.view(),
            &JensenShannonOptions { axis: 1, ..Default::default() },
        )?),
        "entropy-bwd" => drop(infoloss::entropy_backward(
            x.probs.view(),
            None,
            &EntropyOptions { base: None, axis: 1 },
            x.row_ones.view(),
        )?),
        "js-bwd" => drop(infoloss::jensenshannon_backward(
            x.probs.view(),
            x.probs2.view(),
            &JensenShannonOptions { axis: 1, ..Default::default() },
            x.row_ones.view(),
        )?),
        "kd" | "kd-reverse" | "kd-jsd" | "kd-tvd" | "kd-mix" => {
            use infoloss::distill::{DistillOptions, distill_with_grad};
            use infoloss::options::{Options, Value};
            let spelling =
                KD_DIVERGENCES.iter().find(|(name, _)| *name == op).map_or("forward_kl", |(_, d)| d);
            let (labels, alpha) = if op == "kd-mix" { (Some(x.targets.view()), 0.5) } else { (None, 1.0) };
            let mut o = DistillOptions { temperature: 2.0, alpha, ..Default::default() };
            o.set("divergence", Value::Str(spelling))?;
            drop(distill_with_grad(x.logits.view(), x.logits2.view(), labels, &o)?)
        }
        "kd-inplace" => {
            use infoloss::distill::{DistillOptions, distill_with_grad_in_place};
            let o = DistillOptions { temperature: 2.0, ..Default::default() };
            drop(distill_with_grad_in_place(x.scratch.borrow_mut().view_mut(), x.logits2.view(), None, &o)?)
        }
        "kd-topk" => {
            use infoloss::distill::{DistillOptions, SparseTeacher, distill_topk_with_grad};
            let t = SparseTeacher { indices: x.topk_idx.view(), logprobs: x.topk_lp.view(), add_tail: true };
            let o = DistillOptions { temperature: 2.0, ..Default::default() };
            drop(distill_topk_with_grad(x.logits.view(), &t, None, &o)?)
        }
        "uda" => {
            use infoloss::uda::{UdaOptions, uda_consistency_with_grad};
            let o = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
            drop(uda_consistency_with_grad(x.logits2.view(), x.logits.view(), &o)?)
        }
        other => unreachable!("op {other} validated by parse_ops"),
    }
    Ok(())
}

/// Median time of `linear_distill_backward` for `n` rows and `v` classes (hidden size [`LINEAR_HIDDEN`], both
/// heads with a bias, forward KL at T = 2, automatic chunk).
fn time_linear_distill<T: infoloss::LinearFloat>(
    n: usize,
    v: usize,
    reps: usize,
) -> Result<f64, infoloss::Error> {
    use infoloss::distill::DistillOptions;
    use infoloss::linear::{LinearDistillOptions, LinearHead, linear_distill_backward};
    let h = LINEAR_HIDDEN;
    let mut rng = StdRng::seed_from_u64(0x11ea_d157);
    let mut m = |r: usize, c: usize, scale: f64| {
        Array2::from_shape_fn((r, c), |_| {
            T::from_acc(<T::Acc as infoloss::Real>::c(rng.random_range(-scale..scale)))
        })
    };
    let (xs, ws, xt, wt) = (m(n, h, 1.0), m(v, h, 0.05), m(n, h, 1.0), m(v, h, 0.05));
    let (bs, bt) = (m(1, v, 0.1).row(0).to_owned(), m(1, v, 0.1).row(0).to_owned());
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: Some(bt.view()) };
    let opts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: None,
    };
    let mut err = None;
    let t = time_reps(reps, || {
        match linear_distill_backward(&student, &teacher, None, None, &opts, &infoloss::GradOutput::one()) {
            Ok(out) => drop(out),
            Err(e) => err = Some(e),
        }
    });
    err.map_or(Ok(t), Err)
}

/// Median time of `linear_cross_entropy` (loss and the gradients of hidden and weight) for `n` rows and
/// `v` classes, hidden size [`LINEAR_HIDDEN`], no bias, automatic chunk.
fn time_linear_ce<T: infoloss::LinearFloat>(n: usize, v: usize, reps: usize) -> Result<f64, infoloss::Error> {
    use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy};
    let h = LINEAR_HIDDEN;
    let mut rng = StdRng::seed_from_u64(0x11ea_dce0);
    let mut m = |r: usize, c: usize, scale: f64| {
        Array2::from_shape_fn((r, c), |_| {
            T::from_acc(<T::Acc as infoloss::Real>::c(rng.random_range(-scale..scale)))
        })
    };
    let (x, w) = (m(n, h, 1.0), m(v, h, 0.05));
    let y = Array1::from_shape_fn(n, |i| if i % 16 == 5 { -100 } else { ((i * 7919) % v) as i64 });
    let opts = LinearCrossEntropyOptions::default();
    let mut err = None;
    let t = time_reps(reps, || match linear_cross_entropy(x.view(), w.view(), None, y.view(), &opts) {
        Ok(out) => drop(out),
        Err(e) => err = Some(e),
    });
    err.map_or(Ok(t), Err)
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
    // the N×V inputs of the row-wise losses (not needed by the fused linear op)
    let linear = |name: &str| name == "linear-distill" || name == "linear-ce";
    let inputs = cfg.ops.iter().any(|o| !linear(o.name)).then(|| make_inputs::<T>(n, v, 0x1f0_1055));
    let candle = match (&inputs, cfg.ops.iter().any(|o| o.name.starts_with("candle-"))) {
        (Some(x), true) => Some(candle_inputs(x).map_err(|e| format!("candle inputs: {e}"))?),
        _ => None,
    };
    let es = elem_bytes(dtype);
    let mut out = Vec::new();
    for op in &cfg.ops {
        let (mut core_s, mut accum_s, mut net) = (None, None, None);
        let (t, bytes) = if let (Some(c), Some(x)) =
            (candle.as_ref().filter(|_| op.name.starts_with("candle-")), &inputs)
        {
            let (mut err, mut core_err, mut accum_err) = (None, None, None);
            let mut run = || {
                if let Err(e) = run_candle(op.name, c) {
                    err = Some(e.to_string());
                }
            };
            let t = match core_counterpart(op.name) {
                Some(core) => {
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
                                if let Err(e) = run_candle("candle-accum", c) {
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
        } else if op.name == "linear-ce" {
            let t = match dtype {
                "f32" => time_linear_ce::<f32>(n, v, cfg.reps),
                "f64" => time_linear_ce::<f64>(n, v, cfg.reps),
                _ => continue, // the fused linear losses have no half-precision kernels: skipped
            }
            .map_err(|e| format!("{} failed: {e}", op.name))?;
            // hidden states and weight read, their gradients written
            let h = LINEAR_HIDDEN;
            (t, ((2 * n * h + 2 * v * h) * es) as u64)
        } else if op.name == "linear-distill" {
            let t = match dtype {
                "f32" => time_linear_distill::<f32>(n, v, cfg.reps),
                "f64" => time_linear_distill::<f64>(n, v, cfg.reps),
                _ => continue, // the fused linear losses have no half-precision kernels: skipped
            }
            .map_err(|e| format!("{} failed: {e}", op.name))?;
            // the hidden states, weights and biases of both heads read, the student's gradients written
            let h = LINEAR_HIDDEN;
            (t, ((3 * n * h + 3 * v * h + 3 * v) * es) as u64)
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

/// `infoloss bench` follows the core's catalog: every loss is timed (or excused), every in-place variant too, and
/// every divergence has its `kd-*` op.
#[cfg(test)]
mod catalog_check {
    use infoloss::Divergence;
    use infoloss::options::catalog;

    use super::{KD_DIVERGENCES, OPS};

    /// Losses and in-place variants without an op, and why.
    const NOT_TIMED: &[(&str, &str)] = &[
        ("shannon_cross_entropy", "entropy(p) + entropy(p, q): both are timed"),
        ("cross_entropy_extras", "the row kernel linear_cross_entropy times"),
        ("distill_topk_with_grad_in_place", "the same row kernel as kd-topk"),
    ];

    /// Whether an op's description names `function` (`name`, `name_with_grad`, `name_backward`, …).
    fn timed(function: &str) -> bool {
        OPS.iter().any(|o| {
            o.what
                .strip_prefix(function)
                .is_some_and(|rest| rest.is_empty() || !rest.starts_with(char::is_alphanumeric))
                || o.what.starts_with(&format!("{function}_with_grad"))
                || o.what.starts_with(&format!("{function}_backward"))
        })
    }

    #[test]
    fn every_loss_and_in_place_variant_is_timed() {
        let excused = |f: &str| NOT_TIMED.iter().any(|(n, _)| *n == f);
        let mut missing = Vec::new();
        for loss in catalog() {
            if !timed(loss.name) && !excused(loss.name) {
                missing.push(loss.name.to_string());
            }
            let in_place = format!("{}_with_grad_in_place", loss.name);
            if loss.in_place && !OPS.iter().any(|o| o.what.starts_with(&in_place)) && !excused(&in_place) {
                missing.push(in_place);
            }
        }
        assert!(
            missing.is_empty(),
            "no bench op (add one to OPS, or to NOT_TIMED with the reason): {missing:?}"
        );
    }

    #[test]
    fn every_divergence_has_a_kd_op() {
        let timed: Vec<&str> = KD_DIVERGENCES.iter().map(|(_, d)| *d).collect();
        assert_eq!(timed, Divergence::CHOICES, "one kd-* op per divergence of the catalog");
        assert!(KD_DIVERGENCES.iter().all(|(op, _)| OPS.iter().any(|o| o.name == *op)));
    }
}
