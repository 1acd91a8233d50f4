//! `infoloss`: the command line of the infoloss library.

mod bench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Information-theoretic losses exactly as PyTorch computes them.
#[derive(Debug, Parser)]
#[command(name = "infoloss", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time each loss over a size sweep, with GB/s and the ratio to a memory copy of the same bytes.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Comma-separated operations (default: all). Known: ce, ce-ls, ce-weight, ce-probs, nll, log-softmax, kl,
    /// kl-log, bce, bce-logits, entropy, js.
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infoloss: error: {e}");
            ExitCode::FAILURE
        }
    }
}
