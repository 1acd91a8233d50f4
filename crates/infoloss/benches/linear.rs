//! The fused linear cross-entropy against the three GEMMs alone, and its peak memory.
//!
//! Shapes: N = 2048 rows, H = 1024 hidden, V = 32000 classes, f32 (a language-model head). Targets: time of
//! `linear_cross_entropy` ≤ 1.25 × the three GEMMs of the same shapes (`X·Wᵀ`, `G·W`, `Gᵀ·X`, through the same
//! `gemm` crate, unchunked), and peak memory ≤ inputs + their gradients + one chunk of logits.
//!
//! ```text
//! cargo bench -p infoloss --bench linear                      # criterion (10 samples of each)
//! INFOLOSS_LINEAR_QUICK=1 cargo bench -p infoloss --bench linear   # interleaved rounds, best of 3, no criterion
//!     (INFOLOSS_LINEAR_CHUNKS=,128,512 adds chunk sizes (empty = automatic); INFOLOSS_LINEAR_ROUNDS=5;
//!      INFOLOSS_LINEAR_NO_MEMORY=1 skips the memory children; INFOLOSS_LINEAR_DISTILL=1 adds
//!      linear_distill_backward against its four GEMMs;
//!      INFOLOSS_LINEAR_DISTILL_CHUNK=rows sets its chunk)
//! ```
//!
//! Memory is measured in a child process (this binary re-executed with `INFOLOSS_LINEAR_CHILD=<mode>`): the
//! inputs are created and touched, `VmHWM` (peak resident set) is read from `/proc/self/status`, the operation runs
//! once, and `VmHWM` is read again; the difference is the peak memory beyond the inputs (gradients included). It
//! is printed next to `linear_cross_entropy_workspace`'s prediction for the temporaries.
//!
//! `linear_distill_backward` (forward KL, T = 2, student and teacher heads of the same shapes, no bias) is timed
//! against its four GEMMs (`Xs·Wsᵀ`, `Xt·Wtᵀ`, `G·Ws`, `Gᵀ·Xs`) and measured the same way (`distill` children;
//! its inputs are twice the cross-entropy's, its gradients the same).

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use infoloss::GradOutput;
use infoloss::distill::DistillOptions;
use infoloss::linear::{
    LinearCrossEntropyOptions, LinearDistillOptions, LinearHead, linear_cross_entropy,
    linear_cross_entropy_workspace, linear_distill_backward, linear_distill_workspace, matmul,
};
use infoloss::ndarray::{Array1, Array2};
use infoloss::{CrossEntropyExtrasOptions, cross_entropy_extras_with_grad};

const N: usize = 2048;
const H: usize = 1024;
const V: usize = 32000;
const MIB: f64 = 1024.0 * 1024.0;

/// Hidden `(N, H)` ~ U(−1, 1) and weight `(V, H)` ~ U(−0.05, 0.05) (logits of order 1) from an xorshift seed.
fn head(seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut s = seed;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let x = Array2::from_shape_fn((N, H), |_| u());
    let w = Array2::from_shape_fn((V, H), |_| u() * 0.05);
    (x, w)
}

/// Deterministic inputs: [`head`] and targets with 1/16 ignored.
fn inputs() -> (Array2<f32>, Array2<f32>, Array1<i64>) {
    let (x, w) = head(0x9E37_79B9_7F4A_7C15);
    let y = Array1::from_shape_fn(N, |i| if i % 16 == 5 { -100 } else { ((i * 7919) % V) as i64 });
    (x, w, y)
}

/// The teacher side of the distillation runs: its own hidden states and weight (same distributions, another seed).
fn teacher_inputs() -> (Array2<f32>, Array2<f32>) {
    head(0x2545_F491_4F6C_DD1D)
}

fn distill_opts() -> LinearDistillOptions {
    LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: std::env::var("INFOLOSS_LINEAR_DISTILL_CHUNK").ok().and_then(|c| c.parse().ok()),
    }
}

/// One `linear_distill_backward` call, student `(x, w)`, teacher `(xt, wt)`.
fn run_distill(x: &Array2<f32>, w: &Array2<f32>, xt: &Array2<f32>, wt: &Array2<f32>) {
    let student = LinearHead { hidden: x.view(), weight: w.view(), bias: None };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: None };
    let out = linear_distill_backward(&student, &teacher, None, None, &distill_opts(), &GradOutput::one())
        .expect("linear_distill");
    black_box(out);
}

/// The three GEMMs of the fused loss, unchunked, into preallocated buffers.
struct Gemms {
    logits: Array2<f32>,
    gx: Array2<f32>,
    gw: Array2<f32>,
}

impl Gemms {
    fn new() -> Self {
        Gemms { logits: Array2::zeros((N, V)), gx: Array2::zeros((N, H)), gw: Array2::zeros((V, H)) }
    }
    fn run(&mut self, x: &Array2<f32>, w: &Array2<f32>) {
        matmul(self.logits.view_mut(), x.view(), w.t(), false).expect("X·Wᵀ");
        // the logits buffer stands in for G
        matmul(self.gx.view_mut(), self.logits.view(), w.view(), false).expect("G·W");
        matmul(self.gw.view_mut(), self.logits.t(), x.view(), false).expect("Gᵀ·X");
    }
    /// The distillation's four: the teacher's logits (into `teacher`), then the student's three.
    fn run_distill(
        &mut self,
        x: &Array2<f32>,
        w: &Array2<f32>,
        xt: &Array2<f32>,
        wt: &Array2<f32>,
        teacher: &mut Array2<f32>,
    ) {
        matmul(teacher.view_mut(), xt.view(), wt.t(), false).expect("Xt·Wtᵀ");
        self.run(x, w);
    }
}

fn fused_opts(chunk: Option<usize>) -> LinearCrossEntropyOptions<'static, f32> {
    LinearCrossEntropyOptions { chunk_size: chunk, ..Default::default() }
}

fn vm_hwm() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Child mode: one operation, print the growth of the peak RSS.
fn child(mode: &str) {
    let (x, w, y) = inputs();
    let before = vm_hwm();
    let t = Instant::now();
    match mode {
        "gemms" => {
            let mut g = Gemms::new();
            g.run(&x, &w);
            black_box(&g.gw);
        }
        "unfused" => {
            // materialized logits + cross-entropy with gradient + the two backward GEMMs
            let mut logits = Array2::<f32>::zeros((N, V));
            matmul(logits.view_mut(), x.view(), w.t(), false).expect("X·Wᵀ");
            let out = cross_entropy_extras_with_grad(
                logits.view(),
                y.view(),
                &CrossEntropyExtrasOptions::default(),
            )
            .expect("ce");
            drop(logits);
            let mut gx = Array2::<f32>::zeros((N, H));
            let mut gw = Array2::<f32>::zeros((V, H));
            matmul(gx.view_mut(), out.grad.view(), w.view(), false).expect("G·W");
            matmul(gw.view_mut(), out.grad.t(), x.view(), false).expect("Gᵀ·X");
            black_box((&gx, &gw));
        }
        "distill" => {
            drop(y);
            let (xt, wt) = teacher_inputs();
            let before = vm_hwm();
            run_distill(&x, &w, &xt, &wt);
            println!("CHILD {} {} {}", vm_hwm().saturating_sub(before), before, t.elapsed().as_secs_f64());
            return;
        }
        m => {
            let chunk = m.strip_prefix("fused:").and_then(|c| c.parse::<usize>().ok());
            let out =
                linear_cross_entropy(x.view(), w.view(), None, y.view(), &fused_opts(chunk)).expect("fused");
            black_box(&out);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("CHILD {} {} {secs}", vm_hwm().saturating_sub(before), before);
}

/// Runs one child; `mmap_all` sets glibc's `MALLOC_MMAP_THRESHOLD_=1 MiB`, so every large buffer is its own
/// mapping, returned to the system when freed: the peak RSS then tracks the peak of live allocations instead of
/// also counting freed heap memory glibc keeps.
fn measure_memory(mode: &str, mmap_all: bool) -> Option<(f64, f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new(exe);
    cmd.env("INFOLOSS_LINEAR_CHILD", mode);
    if mmap_all {
        cmd.env("MALLOC_MMAP_THRESHOLD_", "1048576");
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("CHILD "))?;
    let mut it = line.split_whitespace().skip(1);
    let delta: f64 = it.next()?.parse().ok()?;
    let base: f64 = it.next()?.parse().ok()?;
    let secs: f64 = it.next()?.parse().ok()?;
    Some((delta / MIB, base / MIB, secs))
}

fn report_memory() {
    let grads_mib = ((N * H + V * H) * 4) as f64 / MIB;
    let inputs_mib = ((N * H + V * H) * 4 + N * 8) as f64 / MIB;
    println!("linear bench: N={N}, H={H}, V={V}, f32, {} rayon threads", rayon_threads());
    println!(
        "inputs {inputs_mib:.1} MiB; their gradients {grads_mib:.1} MiB; full logits {:.1} MiB",
        (N * V * 4) as f64 / MIB
    );
    let modes: Vec<(String, Option<usize>)> = vec![
        ("fused:auto".into(), None),
        ("fused:128".into(), Some(128)),
        ("fused:263".into(), Some(263)),
        ("gemms".into(), None),
        ("unfused".into(), None),
        ("distill".into(), None),
    ];
    for (mode, chunk) in modes {
        let predicted = if mode == "distill" {
            let ws = linear_distill_workspace::<f32>(N, H, H, V, &distill_opts());
            format!(
                "; predicted temporaries {:.1} MiB (chunk {} rows; teacher inputs not counted)",
                ws.total_bytes as f64 / MIB,
                ws.chunk_rows
            )
        } else if mode.starts_with("fused") {
            let ws = linear_cross_entropy_workspace::<f32>(N, H, V, false, &fused_opts(chunk));
            format!(
                "; predicted temporaries {:.1} MiB (chunk {} rows)",
                ws.total_bytes as f64 / MIB,
                ws.chunk_rows
            )
        } else {
            String::new()
        };
        let glibc = measure_memory(&mode, false);
        let live = measure_memory(&mode, true);
        match (glibc, live) {
            (Some((d, base, secs)), Some((dl, _, _))) => println!(
                "peak memory {mode:>10}: +{d:.1} MiB over the inputs with glibc defaults, +{dl:.1} MiB with \
                 MALLOC_MMAP_THRESHOLD_=1MiB, i.e. {:.1} / {:.1} MiB beyond inputs + gradients{predicted} \
                 (RSS before {base:.1} MiB; one run {secs:.2} s)",
                d - grads_mib,
                dl - grads_mib
            ),
            _ => println!("peak memory {mode}: child process failed"),
        }
    }
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// Interleaved timing (rounds of: the three GEMMs, then each chunk size), best of `INFOLOSS_LINEAR_ROUNDS` (3):
/// robust to other load on the machine, which slows whichever run it overlaps.
fn quick() {
    let (x, w, y) = inputs();
    let chunks: Vec<Option<usize>> = match std::env::var("INFOLOSS_LINEAR_CHUNKS") {
        Ok(s) => s.split(',').map(|c| c.parse().ok()).collect(),
        Err(_) => vec![None],
    };
    let rounds: usize =
        std::env::var("INFOLOSS_LINEAR_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut g = Gemms::new();
    g.run(&x, &w); // warm-up
    let mut best_gemms = f64::INFINITY;
    let mut best = vec![f64::INFINITY; chunks.len()];
    for round in 0..rounds {
        let t = Instant::now();
        g.run(&x, &w);
        best_gemms = best_gemms.min(t.elapsed().as_secs_f64());
        for (b, &chunk) in best.iter_mut().zip(&chunks) {
            let t = Instant::now();
            let out =
                linear_cross_entropy(x.view(), w.view(), None, y.view(), &fused_opts(chunk)).expect("fused");
            *b = b.min(t.elapsed().as_secs_f64());
            black_box(out);
        }
        println!("round {round}: GEMMs {best_gemms:.3} s, fused {best:.3?} s (best so far)");
    }
    println!("three GEMMs alone: {best_gemms:.3} s (best of {rounds})");
    if std::env::var("INFOLOSS_LINEAR_DISTILL").is_ok() {
        let (xt, wt) = teacher_inputs();
        let mut teacher = Array2::<f32>::zeros((N, V));
        let (mut best_g4, mut best_d) = (f64::INFINITY, f64::INFINITY);
        for round in 0..rounds {
            let t = Instant::now();
            g.run_distill(&x, &w, &xt, &wt, &mut teacher);
            best_g4 = best_g4.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            run_distill(&x, &w, &xt, &wt);
            best_d = best_d.min(t.elapsed().as_secs_f64());
            println!(
                "distill round {round}: four GEMMs {best_g4:.3} s, linear_distill_backward {best_d:.3} s"
            );
        }
        let rows = linear_distill_workspace::<f32>(N, H, H, V, &distill_opts()).chunk_rows;
        println!(
            "linear_distill_backward chunk {rows:>4}: {best_d:.3} s = {:.3} × its four GEMMs ({best_g4:.3} s, best of {rounds})",
            best_d / best_g4
        );
    }
    for (b, &chunk) in best.iter().zip(&chunks) {
        let rows = linear_cross_entropy_workspace::<f32>(N, H, V, false, &fused_opts(chunk)).chunk_rows;
        println!(
            "linear_cross_entropy chunk {rows:>4}: {b:.3} s = {:.3} × the GEMMs (best of {rounds})",
            b / best_gemms
        );
    }
}

fn main() {
    if let Ok(mode) = std::env::var("INFOLOSS_LINEAR_CHILD") {
        child(&mode);
        return;
    }
    if std::env::var("INFOLOSS_LINEAR_NO_MEMORY").is_err() {
        report_memory();
    }
    if std::env::var("INFOLOSS_LINEAR_QUICK").is_ok() {
        quick();
        return;
    }
    let (x, w, y) = inputs();
    let mut c =
        Criterion::default().sample_size(10).measurement_time(Duration::from_secs(60)).configure_from_args();
    let mut group = c.benchmark_group("linear_cross_entropy_2048x1024x32000_f32");
    group.throughput(Throughput::Elements((6 * N * H * V) as u64)); // flops of the three GEMMs
    {
        let mut g = Gemms::new();
        group.bench_function("three_gemms", |b| b.iter(|| g.run(black_box(&x), black_box(&w))));
    }
    group.bench_function("fused_auto_chunk", |b| {
        b.iter(|| {
            linear_cross_entropy(black_box(x.view()), w.view(), None, y.view(), &fused_opts(None))
                .expect("fused")
        })
    });
    group.finish();
    c.final_summary();
}
