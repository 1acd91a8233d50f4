//! `infoloss`: the command line of the infoloss library.
//!
//! `infoloss <loss> FILES…` computes a loss or information measure on arrays stored in `.npy`, `.npz`,
//! `.safetensors` or CSV files (see [`files`]); `infoloss bench` times the losses; `infoloss distill` runs
//! the distillation demo; `infoloss teacher-cache` stores a teacher's top-k for offline distillation.

mod bench;
mod distill;
mod files;
mod teacher_cache;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Examples shown after the top-level help.
const EXAMPLES: &str =
    "Inputs: .npy, .npz (--key NAME or FILE.npz#NAME), .safetensors (--tensor NAME or FILE#NAME), CSV.

Examples:
  infoloss cross-entropy logits.npy labels.npy --label-smoothing 0.1 --grad-out g.npy
  infoloss kl-div --input logp.npy --target q.npy --reduction batchmean
  infoloss entropy p.csv --base 2 --axis 1
  infoloss js p.npy q.npy --json

Run `infoloss <command> --help` for each command's options.";

/// Information-theoretic losses exactly as PyTorch computes them.
#[derive(Debug, Parser)]
#[command(name = "infoloss", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time each loss over a size sweep, with GB/s and the ratio to a memory copy of the same bytes.
    Bench(BenchArgs),
    /// Train a teacher and distill students (KD and UDA) on the embedded digits, with infoloss's losses in candle.
    Distill(DistillArgs),
    /// Store a teacher's top-k log-probabilities (from its logits, or hidden states and output layer) in a
    /// compressed, crash-safe cache for offline distillation.
    TeacherCache(teacher_cache::TeacherCacheArgs),
    #[command(flatten)]
    Loss(files::cmd::LossCommand),
}

#[derive(Debug, clap::Args)]
struct DistillArgs {
    /// MNIST IDX directory (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) or a CSV file with
    /// rows `label,pixel,...` (.csv.gz accepted). Default: the embedded UCI digits.
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Epochs per run.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Distillation temperature T (the soft loss is multiplied by T²).
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// Weight of the soft loss: alpha·soft + (1 − alpha)·cross-entropy.
    #[arg(long, default_value_t = 0.7)]
    alpha: f64,
    /// Labeled images the students see (class-balanced).
    #[arg(long, default_value_t = 50)]
    labeled: usize,
    /// Held-out test images.
    #[arg(long, default_value_t = 500)]
    test: usize,
    /// Weight of the UDA consistency loss.
    #[arg(long, default_value_t = 1.0)]
    uda_coeff: f64,
    /// UDA target sharpening temperature (softmax(ori / T)).
    #[arg(long, default_value_t = 0.4)]
    uda_temperature: f64,
    /// UDA confidence threshold on max softmax(ori); negative disables the mask.
    #[arg(long, default_value_t = 0.5)]
    uda_threshold: f64,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of the split, initialization, batches and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory for distill.svg and results.json.
    #[arg(long, default_value = "out")]
    out: std::path::PathBuf,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    /// Repeat each student run this many times (new initialization and batch order) and report the mean.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The teacher cache of the top-k run (default: OUT/teacher-cache); reused when it holds this teacher.
    #[arg(long)]
    teacher_cache: Option<std::path::PathBuf>,
    /// Teacher classes kept per image in the cache (the rest is one tail bucket).
    #[arg(long, default_value_t = 3)]
    topk: usize,
    /// The cache's storage mode: lossless or packedB (B = 2..16 bits per log-probability).
    #[arg(long, default_value = "lossless")]
    cache_mode: String,
}

fn distill_cmd(a: DistillArgs) -> Result<(), String> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err("invalid --threads 0: must be at least 1".into());
    }
    // candle's CPU kernels and infoloss share rayon's global pool; size it once.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    let cfg = distill::DistillConfig {
        data: a.data,
        epochs: a.epochs,
        temperature: a.temperature,
        alpha: a.alpha,
        labeled: a.labeled,
        test: a.test,
        threads,
        seed: a.seed,
        out: a.out,
        uda_coeff: a.uda_coeff,
        uda_temperature: a.uda_temperature,
        uda_threshold: (a.uda_threshold >= 0.0).then_some(a.uda_threshold),
        progress: !a.quiet && !a.json,
        repeats: a.repeats,
        teacher_cache: a.teacher_cache,
        topk: a.topk,
        cache_mode: a.cache_mode.parse().map_err(|e| format!("invalid --cache-mode: {e}"))?,
        ..Default::default()
    };
    let report = distill::run(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", distill::table(&report));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Comma-separated operations (default: all); an unknown name lists the known ones. Losses: ce, ce-ls,
    /// ce-weight, ce-probs, ce-inplace, ce-probs-inplace, nll, log-softmax, softmax, log-softmax-bwd,
    /// logsumexp, kl, kl-log, kl-inplace, bce, bce-inplace, bce-logits, bce-logits-inplace, entropy,
    /// rel-entropy, js, entropy-bwd, js-bwd; distillation: kd, kd-inplace, kd-reverse, kd-jsd, kd-tvd,
    /// kd-mix, kd-topk, uda; fused linear heads (H = 1024): linear-ce, linear-distill, linear-distill-topk; candle (forward +
    /// `backward()` through infoloss-candle): candle-ce, candle-ce-fwd, candle-kl, candle-bce-logits, candle-kd,
    /// and for comparison candle-nn-ce (candle-nn's cross-entropy) and candle-accum (candle's own gradient
    /// accumulation).
    #[arg(long)]
    ops: Option<String>,
    /// Comma-separated sizes ROWSxCLASSES.
    #[arg(long, default_value = "4096x32000,1024x128256")]
    sizes: String,
    /// Comma-separated dtypes: f32, f64, bf16, f16.
    #[arg(long, default_value = "f32,bf16")]
    dtypes: String,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Timed repetitions per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

fn bench_cmd(a: BenchArgs) -> Result<(), String> {
    let ops = match &a.ops {
        Some(list) => bench::parse_ops(list)?,
        None => bench::OPS.to_vec(),
    };
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err("invalid --threads 0: must be at least 1".into());
    }
    let cfg = bench::BenchConfig {
        ops,
        sizes: bench::parse_sizes(&a.sizes)?,
        dtypes: a.dtypes.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        reps: a.reps.max(1),
        threads,
    };
    if !a.json {
        println!(
            "{:<12} {:<5} {:>14} {:>3} {:>13} {:>12} {:>12}  {:>13}  {:>11}",
            "op", "dtype", "size", "thr", "median", "bytes", "GB/s", "copy (same)", "ratio"
        );
    }
    let rows = bench::run(&cfg, |r| {
        if !a.json {
            println!("{}", bench::format_row(r));
        }
    })?;
    if a.json {
        let doc = serde_json::json!({
            "infoloss_version": env!("CARGO_PKG_VERSION"),
            "threads": threads,
            "results": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(a) => bench_cmd(a),
        Command::Distill(a) => distill_cmd(a),
        Command::TeacherCache(a) => teacher_cache::run(a),
        Command::Loss(cmd) => files::cmd::run(cmd).and_then(|out| {
            use std::io::Write;
            let mut so = std::io::stdout().lock();
            match so.write_all(out.as_bytes()).and_then(|_| so.flush()) {
                // A closed pipe (`infoloss … | head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(format!("cannot write to standard output: {e}"))
                }
                _ => Ok(()),
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infoloss: error: {e}");
            ExitCode::FAILURE
        }
    }
}
