//! `infoloss distill`: train a teacher, then students with cross-entropy, knowledge distillation and UDA
//! consistency, all with infoloss's losses through candle, on the embedded digits (or `--data`).
//!
//! Runs, on one fixed split (test / labeled subset / the rest of the training set) and one seed:
//!
//! 1. **teacher** — a wide MLP trained on every training label with cross-entropy (label smoothing 0.1);
//! 2. **student, all labels** — the small student with cross-entropy on every training label (a reference);
//! 3. **student, labeled only** — the student with cross-entropy on the small labeled subset alone;
//! 4. **student + KD** — the same labeled cross-entropy mixed with distillation from the teacher on *all*
//!    training images (their labels unused): `alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha)·CE`;
//! 5. **student + KD, top-k cache** — run 4 with the teacher stored offline: its top-`topk` log-probabilities
//!    at T over the training images are written to a teacher cache ([`infoloss_cache`], `--teacher-cache`),
//!    read back, and distilled with `distill_topk` (the mass outside the top-k as one tail bucket), so the table
//!    shows what sparse offline distillation costs against the dense teacher;
//! 6. **student + UDA** — the same labeled cross-entropy plus `uda_coeff ·` UDA consistency on the
//!    unlabeled images (pixel shifts + noise, target sharpened by `softmax(ori/T)`, confidence mask).
//!
//! Runs 4–6 are compared with run 3 (same labels, same student, same steps).

pub mod data;
mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use infoloss_cache::{CacheReader, CacheWriter, Index, Mode};
use infoloss_candle::{
    CrossEntropyOptions, DistillOptions, Divergence, Reduction, Sharpen, SparseTeacher, UdaOptions,
    cross_entropy, distill, distill_topk, uda_consistency,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use data::{Dataset, Split};

/// Settings of `infoloss distill`.
#[derive(Debug, Clone)]
pub struct DistillConfig {
    /// `--data`: MNIST IDX directory or CSV file; `None` = embedded digits.
    pub data: Option<PathBuf>,
    /// Epochs per run (an epoch = as many steps as one pass over the training set).
    pub epochs: usize,
    /// Distillation temperature T.
    pub temperature: f64,
    /// Weight of the soft (distillation) loss.
    pub alpha: f64,
    /// Size of the labeled subset for runs 3–5.
    pub labeled: usize,
    /// Held-out test images.
    pub test: usize,
    /// Threads.
    pub threads: usize,
    /// Seed of the split, the initialization, the batches and the augmentation.
    pub seed: u64,
    /// Output directory for the plot and results.json.
    pub out: PathBuf,
    /// Weight of the UDA consistency loss.
    pub uda_coeff: f64,
    /// UDA sharpening temperature of the target.
    pub uda_temperature: f64,
    /// UDA confidence threshold.
    pub uda_threshold: Option<f64>,
    /// Unlabeled rows per step for UDA, as a multiple of the labeled batch.
    pub uda_batch_ratio: usize,
    /// Standard deviation of UDA's pixel noise (pixels in [0, 1]).
    pub uda_noise: f32,
    /// Largest pixel shift of UDA's augmentation.
    pub uda_shift: i32,
    /// Hidden width of the student.
    pub student_hidden: usize,
    /// Hidden width of the teacher (two layers).
    pub teacher_hidden: usize,
    /// Batch size.
    pub batch: usize,
    /// Show progress bars.
    pub progress: bool,
    /// Repeats of the student runs (different initialization and batch order); the table reports the mean.
    pub repeats: usize,
    /// Where the teacher's top-k is cached (`None`: `out/teacher-cache`); an existing cache of the same
    /// teacher is reused.
    pub teacher_cache: Option<PathBuf>,
    /// Teacher entries kept per image in the cache.
    pub topk: usize,
    /// The cache's storage mode.
    pub cache_mode: Mode,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            data: None,
            epochs: 40,
            temperature: 4.0,
            alpha: 0.7,
            labeled: 50,
            test: 500,
            threads: 0,
            seed: 0,
            out: PathBuf::from("out"),
            uda_coeff: 1.0,
            uda_batch_ratio: 3,
            uda_noise: 0.2,
            uda_shift: 1,
            uda_temperature: 0.4,
            uda_threshold: Some(0.5),
            student_hidden: 32,
            teacher_hidden: 256,
            batch: 64,
            progress: true,
            repeats: 3,
            teacher_cache: None,
            topk: 3,
            cache_mode: Mode::Lossless,
        }
    }
}

/// What one epoch of one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStat {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Test cross-entropy.
    pub test_loss: f64,
    /// Test accuracy in [0, 1].
    pub test_acc: f64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Run name.
    pub name: String,
    /// What it trains on and with which loss.
    pub recipe: String,
    /// Final test accuracy (the mean over repeats).
    pub test_acc: f64,
    /// Standard deviation of the final test accuracy over repeats (0 for one run).
    pub test_acc_std: f64,
    /// Final test accuracy of each repeat.
    pub test_acc_repeats: Vec<f64>,
    /// Final test cross-entropy.
    pub test_loss: f64,
    /// Training wall time in seconds.
    pub train_seconds: f64,
    /// Per-epoch curves (means over repeats).
    pub curve: Vec<EpochStat>,
}

/// Merges the repeats of one run: final accuracy as mean and standard deviation, curves averaged per epoch,
/// training time summed.
fn aggregate(group: Vec<RunResult>) -> RunResult {
    let k = group.len().max(1) as f64;
    let accs: Vec<f64> = group.iter().map(|r| r.test_acc).collect();
    let mean = accs.iter().sum::<f64>() / k;
    let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k).sqrt();
    let epochs = group.iter().map(|r| r.curve.len()).min().unwrap_or(0);
    let avg = |f: &dyn Fn(&EpochStat) -> f64, e: usize| group.iter().map(|r| f(&r.curve[e])).sum::<f64>() / k;
    let curve = (0..epochs)
        .map(|e| EpochStat {
            epoch: e + 1,
            train_loss: avg(&|c| c.train_loss, e),
            test_loss: avg(&|c| c.test_loss, e),
            test_acc: avg(&|c| c.test_acc, e),
        })
        .collect::<Vec<_>>();
    let name = group.first().map_or(String::new(), |r| r.name.split(" #").next().unwrap_or("").to_string());
    RunResult {
        name,
        recipe: group.first().map_or(String::new(), |r| r.recipe.clone()),
        test_acc: mean,
        test_acc_std: std,
        test_acc_repeats: accs,
        test_loss: curve.last().map_or(f64::NAN, |c| c.test_loss),
        train_seconds: group.iter().map(|r| r.train_seconds).sum(),
        curve,
    }
}

type CResult<T> = candle_core::Result<T>;

/// A multilayer perceptron with ReLU, initialized like PyTorch's `nn.Linear` from our own seeded RNG.
struct Mlp {
    layers: Vec<(Var, Var)>,
}

impl Mlp {
    fn new(sizes: &[usize], rng: &mut StdRng, dev: &Device) -> CResult<Self> {
        let mut layers = Vec::new();
        for w in sizes.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut init =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
            let wt = Tensor::from_vec(init(fan_out * fan_in), (fan_out, fan_in), dev)?;
            let b = Tensor::from_vec(init(fan_out), fan_out, dev)?;
            layers.push((Var::from_tensor(&wt)?, Var::from_tensor(&b)?));
        }
        Ok(Mlp { layers })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if i < last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// A copy with its own parameters (training it leaves `self` unchanged).
    fn clone_fresh(&self) -> CResult<Mlp> {
        let copy = |v: &Var| Var::from_tensor(&v.as_tensor().copy()?);
        let layers =
            self.layers.iter().map(|(w, b)| Ok((copy(w)?, copy(b)?))).collect::<CResult<Vec<_>>>()?;
        Ok(Mlp { layers })
    }

    fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }
}

/// Cycles through a pool of row indices in freshly shuffled order.
struct Batcher {
    pool: Vec<usize>,
    pos: usize,
}

impl Batcher {
    fn new(pool: &[usize]) -> Self {
        Batcher { pool: pool.to_vec(), pos: usize::MAX }
    }

    fn next(&mut self, n: usize, rng: &mut StdRng) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n.min(self.pool.len()) {
            if self.pos >= self.pool.len() {
                self.pool.shuffle(rng);
                self.pos = 0;
            }
            out.push(self.pool[self.pos]);
            self.pos += 1;
        }
        out
    }
}

fn tensor_of(data: &Dataset, idx: &[usize], dev: &Device) -> CResult<(Tensor, Tensor)> {
    let (x, y) = data.gather(idx);
    Ok((Tensor::from_vec(x, (idx.len(), data.dim()), dev)?, Tensor::from_vec(y, idx.len(), dev)?))
}

fn evaluate(model: &Mlp, x: &Tensor, y: &Tensor) -> CResult<(f64, f64)> {
    let logits = model.forward(x)?;
    let loss =
        cross_entropy(&logits.detach(), y, &CrossEntropyOptions::default())?.to_scalar::<f32>()? as f64;
    let pred = logits.argmax(1)?;
    let correct = pred.eq(y)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((loss, correct / y.dim(0)? as f64))
}

/// The loss recipe of a run.
enum Recipe<'a> {
    /// Cross-entropy on `pool` with `label_smoothing`.
    Supervised { pool: &'a [usize], label_smoothing: f64 },
    /// Labeled cross-entropy mixed with distillation on `transfer` from precomputed teacher logits.
    Distill { labeled: &'a [usize], transfer: &'a [usize], teacher_logits: &'a Tensor },
    /// Labeled cross-entropy mixed with distillation on `transfer` from the cached top-k of the teacher
    /// (`indices`, `logprobs`: one row per dataset row).
    DistillTopk { labeled: &'a [usize], transfer: &'a [usize], indices: &'a Tensor, logprobs: &'a Tensor },
    /// Labeled cross-entropy plus UDA consistency on `unlabeled`.
    Uda { labeled: &'a [usize], unlabeled: &'a [usize] },
}

struct Ctx<'a> {
    cfg: &'a DistillConfig,
    data: &'a Dataset,
    dev: Device,
    test_x: Tensor,
    test_y: Tensor,
    steps_per_epoch: usize,
}

fn train(ctx: &Ctx<'_>, name: &str, model: &Mlp, recipe: Recipe<'_>, seed: u64) -> CResult<RunResult> {
    let cfg = ctx.cfg;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut opt =
        AdamW::new(model.vars(), ParamsAdamW { lr: 2e-3, weight_decay: 1e-4, ..Default::default() })?;
    let bar = if cfg.progress { ProgressBar::new(cfg.epochs as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{prefix:<24} [{bar:30}] {pos:>3}/{len} epochs  {msg}")
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let (mut b1, mut b2) = match &recipe {
        Recipe::Supervised { pool, .. } => (Batcher::new(pool), Batcher::new(&[])),
        Recipe::Distill { labeled, transfer, .. } | Recipe::DistillTopk { labeled, transfer, .. } => {
            (Batcher::new(labeled), Batcher::new(transfer))
        }
        Recipe::Uda { labeled, unlabeled } => (Batcher::new(labeled), Batcher::new(unlabeled)),
    };
    let recipe_text = match &recipe {
        Recipe::Supervised { pool, label_smoothing } => {
            format!("cross-entropy on {} labels, label_smoothing {label_smoothing}", pool.len())
        }
        Recipe::Distill { labeled, transfer, .. } => format!(
            "{:.2}·T²·KL(teacher‖student) at T={} on {} images + {:.2}·CE on {} labels",
            cfg.alpha,
            cfg.temperature,
            transfer.len(),
            1.0 - cfg.alpha,
            labeled.len()
        ),
        Recipe::DistillTopk { labeled, transfer, indices, .. } => format!(
            "as KD, against the teacher's cached top-{} + tail ({}) on {} images + {:.2}·CE on {} labels",
            indices.dim(1).unwrap_or(0),
            cfg.cache_mode,
            transfer.len(),
            1.0 - cfg.alpha,
            labeled.len()
        ),
        Recipe::Uda { labeled, unlabeled } => format!(
            "CE on {} labels + {}·UDA on {} unlabeled (target T={}, threshold {})",
            labeled.len(),
            cfg.uda_coeff,
            unlabeled.len(),
            cfg.uda_temperature,
            cfg.uda_threshold.map_or("none".to_string(), |t| t.to_string())
        ),
    };
    let start = Instant::now();
    let mut curve = Vec::new();
    for epoch in 1..=cfg.epochs {
        let mut total = 0.0;
        for _ in 0..ctx.steps_per_epoch {
            let loss = match &recipe {
                Recipe::Supervised { label_smoothing, .. } => {
                    let (x, y) = tensor_of(ctx.data, &b1.next(cfg.batch, &mut rng), &ctx.dev)?;
                    let o = CrossEntropyOptions { label_smoothing: *label_smoothing, ..Default::default() };
                    cross_entropy(&model.forward(&x)?, &y, &o)?
                }
                Recipe::Distill { teacher_logits, .. } => {
                    kd_step(ctx, model, &mut b1, &mut b2, &mut rng, |s, pos| {
                        distill(s, &teacher_logits.index_select(pos, 0)?, None, &kd_options(cfg))
                    })?
                }
                Recipe::DistillTopk { indices, logprobs, .. } => {
                    kd_step(ctx, model, &mut b1, &mut b2, &mut rng, |s, pos| {
                        let teacher = SparseTeacher {
                            indices: indices.index_select(pos, 0)?,
                            logprobs: logprobs.index_select(pos, 0)?,
                            add_tail: true,
                        };
                        distill_topk(s, &teacher, None, &kd_options(cfg))
                    })?
                }
                Recipe::Uda { .. } => {
                    let (x, y) = tensor_of(ctx.data, &b1.next(cfg.batch, &mut rng), &ctx.dev)?;
                    let ce = cross_entropy(&model.forward(&x)?, &y, &CrossEntropyOptions::default())?;
                    let uidx = b2.next(cfg.batch * cfg.uda_batch_ratio.max(1), &mut rng);
                    let (xu, _) = ctx.data.gather(&uidx);
                    let xa = data::augment(&xu, ctx.data.side, cfg.uda_shift, cfg.uda_noise, &mut rng);
                    let n = uidx.len();
                    let ori = model.forward(&Tensor::from_vec(xu, (n, ctx.data.dim()), &ctx.dev)?)?;
                    let aug = model.forward(&Tensor::from_vec(xa, (n, ctx.data.dim()), &ctx.dev)?)?;
                    let o = UdaOptions {
                        temperature: cfg.uda_temperature,
                        sharpen: Sharpen::Target,
                        confidence_threshold: cfg.uda_threshold,
                        ..Default::default()
                    };
                    let u = uda_consistency(&ori, &aug, &o)?;
                    (ce + (u.loss * cfg.uda_coeff)?)?
                }
            };
            total += loss.to_scalar::<f32>()? as f64;
            opt.backward_step(&loss)?;
        }
        let (test_loss, test_acc) = evaluate(model, &ctx.test_x, &ctx.test_y)?;
        let train_loss = total / ctx.steps_per_epoch as f64;
        curve.push(EpochStat { epoch, train_loss, test_loss, test_acc });
        bar.set_message(format!("loss {train_loss:.4}  test acc {:.1}%", 100.0 * test_acc));
        bar.inc(1);
    }
    bar.finish();
    let last = curve.last().cloned().unwrap_or(EpochStat {
        epoch: 0,
        train_loss: f64::NAN,
        test_loss: f64::NAN,
        test_acc: 0.0,
    });
    Ok(RunResult {
        name: name.to_string(),
        recipe: recipe_text,
        test_acc: last.test_acc,
        test_acc_std: 0.0,
        test_acc_repeats: vec![last.test_acc],
        test_loss: last.test_loss,
        train_seconds: start.elapsed().as_secs_f64(),
        curve,
    })
}

/// The distillation term of runs 4 and 5: `T²·KL` at T, batch mean.
fn kd_options(cfg: &DistillConfig) -> DistillOptions {
    DistillOptions {
        temperature: cfg.temperature,
        t2_scaling: true,
        divergence: Divergence::ForwardKl,
        alpha: 1.0,
        reduction: Reduction::BatchMean,
        ..Default::default()
    }
}

/// One step's loss of a KD run: `alpha·kd(student logits, batch rows) + (1 − alpha)·CE` on a labeled batch, the
/// distillation term on a batch of the transfer set.
fn kd_step(
    ctx: &Ctx<'_>,
    model: &Mlp,
    labeled: &mut Batcher,
    transfer: &mut Batcher,
    rng: &mut StdRng,
    kd: impl Fn(&Tensor, &Tensor) -> CResult<Tensor>,
) -> CResult<Tensor> {
    let cfg = ctx.cfg;
    let (x, y) = tensor_of(ctx.data, &labeled.next(cfg.batch, rng), &ctx.dev)?;
    let ce = cross_entropy(&model.forward(&x)?, &y, &CrossEntropyOptions::default())?;
    let tidx = transfer.next(cfg.batch, rng);
    let (xt, _) = tensor_of(ctx.data, &tidx, &ctx.dev)?;
    let pos: Vec<u32> = tidx.iter().map(|&i| i as u32).collect();
    let kd = kd(&model.forward(&xt)?, &Tensor::new(pos.as_slice(), &ctx.dev)?)?;
    (kd * cfg.alpha)? + (ce * (1.0 - cfg.alpha))?
}

/// Everything `infoloss distill` produced.
#[derive(Debug, Clone, Serialize)]
pub struct DistillReport {
    /// Data set description.
    pub data: String,
    /// Sizes of the split.
    pub train: usize,
    /// Labeled subset size.
    pub labeled: usize,
    /// Test size.
    pub test: usize,
    /// Seed.
    pub seed: u64,
    /// Threads.
    pub threads: usize,
    /// Repeats of each student run.
    pub repeats: usize,
    /// The runs in order.
    pub runs: Vec<RunResult>,
    /// Path of the plot.
    pub plot: PathBuf,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs everything and writes the plot and `results.json` into `cfg.out`.
pub fn run(cfg: &DistillConfig) -> Result<DistillReport, String> {
    if cfg.epochs == 0 {
        return Err("invalid --epochs 0: must be at least 1".into());
    }
    if !(cfg.temperature.is_finite() && cfg.temperature > 0.0) {
        return Err(format!("invalid --temperature {}: must be finite and > 0", cfg.temperature));
    }
    if !(0.0..=1.0).contains(&cfg.alpha) {
        return Err(format!("invalid --alpha {}: must be in [0, 1]", cfg.alpha));
    }
    let data = data::load(cfg.data.as_deref())?;
    let test = cfg.test.min(data.len() / 3);
    let split: Split = data::split(&data, test, cfg.labeled, cfg.seed)?;
    let dev = Device::Cpu;
    let (test_x, test_y) = tensor_of(&data, &split.test, &dev).map_err(err)?;
    let ctx = Ctx {
        cfg,
        data: &data,
        dev: dev.clone(),
        test_x,
        test_y,
        steps_per_epoch: split.train.len().div_ceil(cfg.batch.max(1)),
    };
    let (d, c) = (data.dim(), data.classes);
    let mut init_rng = StdRng::seed_from_u64(cfg.seed);
    let teacher =
        Mlp::new(&[d, cfg.teacher_hidden, cfg.teacher_hidden, c], &mut init_rng, &dev).map_err(err)?;
    let s = cfg.seed.wrapping_mul(1000);
    let mut runs = Vec::new();
    let t = train(
        &ctx,
        "teacher",
        &teacher,
        Recipe::Supervised { pool: &split.train, label_smoothing: 0.1 },
        s + 1,
    )
    .map_err(err)?;
    runs.push(t);
    let (train_x, _) = tensor_of(&data, &split.train, &dev).map_err(err)?;
    let teacher_logits = teacher.forward(&train_x).map_err(err)?.detach();
    let cache_dir = cfg.teacher_cache.clone().unwrap_or_else(|| cfg.out.join("teacher-cache"));
    let about = format!(
        "infoloss distill teacher: {}, seed {}, {} training images, {} epochs",
        data.name,
        cfg.seed,
        split.train.len(),
        cfg.epochs
    );
    let cached = cache_teacher(&cache_dir, &about, &teacher_logits, cfg)?;
    // The five student runs, repeated `repeats` times; within a repeat every student starts from the same
    // weights, and each repeat has its own initialization and batch order.
    let mut per_run: Vec<Vec<RunResult>> = vec![Vec::new(); 5];
    for r in 0..cfg.repeats.max(1) as u64 {
        let init = Mlp::new(&[d, cfg.student_hidden, c], &mut init_rng, &dev).map_err(err)?;
        let student = || init.clone_fresh();
        let tag = |name: &str| if cfg.repeats > 1 { format!("{name} #{}", r + 1) } else { name.to_string() };
        let b = s + 10 * (r + 1);
        let m = student().map_err(err)?;
        let pool = Recipe::Supervised { pool: &split.train, label_smoothing: 0.0 };
        per_run[0].push(train(&ctx, &tag("student, all labels"), &m, pool, b + 2).map_err(err)?);
        let m = student().map_err(err)?;
        let lab = Recipe::Supervised { pool: &split.labeled, label_smoothing: 0.0 };
        per_run[1].push(train(&ctx, &tag("student, labeled only"), &m, lab, b + 3).map_err(err)?);
        let m = student().map_err(err)?;
        per_run[2]
            .push(train_kd(&ctx, &tag("student + KD"), &m, &split, &teacher_logits, b + 4).map_err(err)?);
        let m = student().map_err(err)?;
        let (name, seed) = (tag("student + KD, top-k cache"), b + 6);
        per_run[3].push(train_kd_topk(&ctx, &name, &m, &split, &cached, seed).map_err(err)?);
        let m = student().map_err(err)?;
        let uda = Recipe::Uda { labeled: &split.labeled, unlabeled: &split.unlabeled };
        per_run[4].push(train(&ctx, &tag("student + UDA"), &m, uda, b + 5).map_err(err)?);
    }
    for group in per_run {
        runs.push(aggregate(group));
    }
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| format!("{}: cannot create directory: {e}", cfg.out.display()))?;
    let plot_path = cfg.out.join("distill.svg");
    plot::curves(&plot_path, &runs)?;
    let report = DistillReport {
        data: data.name.clone(),
        train: split.train.len(),
        labeled: split.labeled.len(),
        test: split.test.len(),
        seed: cfg.seed,
        threads: cfg.threads,
        repeats: cfg.repeats.max(1),
        runs,
        plot: plot_path,
    };
    write_atomic(
        &cfg.out.join("results.json"),
        serde_json::to_string_pretty(&report).map_err(err)?.as_bytes(),
    )?;
    Ok(report)
}

/// The teacher's top-k over the training images (in `split.train` order), written to the teacher cache in
/// `dir` unless it already holds this teacher's, and read back: `(indices u32, logprobs f32)`, `(n, k)`.
fn cache_teacher(
    dir: &Path,
    about: &str,
    logits: &Tensor,
    cfg: &DistillConfig,
) -> Result<(Tensor, Tensor), String> {
    let t = logits.to_dtype(DType::F32).map_err(err)?;
    let (n, v) = t.dims2().map_err(err)?;
    let reuse = CacheReader::open(dir).ok().filter(|r| {
        let ix = r.index();
        ix.complete
            && ix.source == about
            && ix.k == cfg.topk
            && ix.temperature == cfg.temperature
            && ix.mode == cfg.cache_mode
            && ix.rows == n as u64
    });
    let reader = match reuse {
        Some(r) => r,
        None => {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("{}: cannot replace the cache: {e}", dir.display()))?;
            }
            let flat: Vec<f32> = t.flatten_all().and_then(|f| f.to_vec1()).map_err(err)?;
            let x = infoloss::ndarray::ArrayView2::from_shape((n, v), &flat).map_err(err)?;
            let index =
                Index::new(v, cfg.topk.min(v), cfg.temperature, cfg.cache_mode, 4096, about.to_string())
                    .map_err(|e| format!("invalid --topk or --cache-mode: {e}"))?;
            let mut w = CacheWriter::create(dir, index).map_err(err)?;
            w.push_logits(x).map_err(err)?;
            w.finish().map_err(err)?;
            CacheReader::open(dir).map_err(err)?
        }
    };
    let rows = reader.read(0..n as u64).map_err(err)?;
    let k = rows.k();
    let dev = logits.device();
    let idx = Tensor::from_vec(rows.indices.into_raw_vec_and_offset().0, (n, k), dev).map_err(err)?;
    let lp = Tensor::from_vec(rows.logprobs.into_raw_vec_and_offset().0, (n, k), dev).map_err(err)?;
    Ok((idx, lp))
}

/// Rows of `per_train` (one per `split.train` image) reordered into dataset-row order, for batches drawn as
/// dataset rows.
fn by_dataset_row(ctx: &Ctx<'_>, split: &Split, per_train: &Tensor) -> CResult<Tensor> {
    let mut row_of = vec![0u32; ctx.data.len()];
    for (p, &i) in split.train.iter().enumerate() {
        row_of[i] = p as u32;
    }
    per_train.index_select(&Tensor::new(row_of.as_slice(), &ctx.dev)?, 0)
}

fn train_kd_topk(
    ctx: &Ctx<'_>,
    name: &str,
    m: &Mlp,
    split: &Split,
    (indices, logprobs): &(Tensor, Tensor),
    seed: u64,
) -> CResult<RunResult> {
    let (indices, logprobs) = (by_dataset_row(ctx, split, indices)?, by_dataset_row(ctx, split, logprobs)?);
    let recipe = Recipe::DistillTopk {
        labeled: &split.labeled,
        transfer: &split.train,
        indices: &indices,
        logprobs: &logprobs,
    };
    train(ctx, name, m, recipe, seed)
}

fn train_kd(
    ctx: &Ctx<'_>,
    name: &str,
    m: &Mlp,
    split: &Split,
    teacher_logits: &Tensor,
    seed: u64,
) -> CResult<RunResult> {
    // Batches of the transfer set are drawn as dataset rows; the teacher logits rows follow `split.train`'s
    // order, so reorder them into dataset-row order once.
    let full = by_dataset_row(ctx, split, teacher_logits)?;
    train(
        ctx,
        name,
        m,
        Recipe::Distill { labeled: &split.labeled, transfer: &split.train, teacher_logits: &full },
        seed,
    )
}

/// Writes `bytes` to a temporary file beside `path`, then renames it, so nothing is ever half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot rename into place: {e}", path.display())
    })
}

/// The results table, with a verdict on KD and UDA against the student trained on the labeled subset alone.
///
/// A method "helps" (or "hurts") only when its mean differs from the baseline's by more than the two runs'
/// standard deviations combined and by at least half a point; otherwise the difference is "within noise".
pub fn table(r: &DistillReport) -> String {
    let mut s = format!(
        "data: {} — {} training images ({} labeled for the student runs), {} test images, seed {}\n\n",
        r.data, r.train, r.labeled, r.test, r.seed
    );
    s.push_str(&format!(
        "{:<26} {:>15} {:>10} {:>9}   {}\n",
        "run", "test acc", "test loss", "train s", "recipe"
    ));
    for run in &r.runs {
        let acc = if run.test_acc_repeats.len() > 1 {
            format!("{:.1}% ± {:.1}", 100.0 * run.test_acc, 100.0 * run.test_acc_std)
        } else {
            format!("{:.1}%", 100.0 * run.test_acc)
        };
        s.push_str(&format!(
            "{:<26} {:>15} {:>10.4} {:>9.2}   {}\n",
            run.name, acc, run.test_loss, run.train_seconds, run.recipe
        ));
    }
    let find = |name: &str| r.runs.iter().find(|x| x.name == name);
    if let Some(base) = find("student, labeled only") {
        s.push_str(&format!("\nagainst the student on {} labels alone", r.labeled));
        if r.repeats > 1 {
            s.push_str(&format!(" (means over {} repeats; ± is the standard deviation)", r.repeats));
        }
        s.push_str(":\n");
        for name in ["student + KD", "student + KD, top-k cache", "student + UDA"] {
            let Some(run) = find(name) else { continue };
            let d = run.test_acc - base.test_acc;
            let noise = (run.test_acc_std.powi(2) + base.test_acc_std.powi(2)).sqrt().max(0.005);
            let verdict = if d > noise {
                "helps"
            } else if d < -noise {
                "hurts"
            } else {
                "within noise: no clear effect"
            };
            s.push_str(&format!("  {name:<25} {:+.1} points — {verdict}\n", 100.0 * d));
        }
    }
    s.push_str(&format!("plot: {}\n", r.plot.display()));
    s
}
