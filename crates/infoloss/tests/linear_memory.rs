//! Peak heap memory of the fused linear losses, measured with a counting global allocator: beyond the inputs,
//! `linear_cross_entropy` and `linear_distill_backward` must need no more than their returned gradients plus
//! the workspace they report (one chunk of logits — three chunk-sized buffers for distillation — and the small
//! per-row and packing buffers), never the `(N, V)` logits.
//!
//! The same allocator checks that the in-place training-path calls allocate no input-sized gradient (the
//! elementwise losses and the cross-entropy), where their allocating twins do, and that every allocating call
//! of the other losses (cross-entropy, NLL, softmax, `kl_div`, BCE, the information measures, distillation,
//! UDA; `f32`, `bf16` and `f16`) needs only the arrays it returns plus O(rows): no widened copy, no kept
//! log-probabilities, no temporary softmax.
//!
//! `cargo test -p infoloss --release --test linear_memory -- --ignored --nocapture` also measures the issue's
//! anchor size (N = 2048, H = 1024, V = 32000, f32) and prints the numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use infoloss::distill::{DistillOptions, SparseTeacher};
use infoloss::linear::{
    LinearDistillOptions, LinearHead, LinearWorkspace, TeacherTopK, linear_cross_entropy_workspace,
    linear_distill_backward, linear_distill_topk, linear_distill_topk_workspace,
    linear_distill_workspace_with,
};
use infoloss::ndarray::{Array1, Array2};
use infoloss::{GradOutput, LinearCrossEntropyOptions, LinearFloat, linear_cross_entropy};

/// The system allocator, counting the bytes currently allocated and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One measurement at a time (the tests of this file share the counters).
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes allocated at the peak of `f` beyond what was allocated before it, and `f`'s result.
fn peak_of<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = f();
    (PEAK.load(Ordering::SeqCst) - base, r)
}

/// `(peak of the first call, peak of a second call)`: the first call also allocates what stays cached for the
/// process (rayon's pool, `gemm`'s per-thread packing buffers, which it keeps and reuses); the second call
/// shows the memory each call needs.
fn peaks<R>(mut f: impl FnMut() -> R) -> (usize, usize, R) {
    let (first, r) = peak_of(&mut f);
    drop(r);
    let (second, r) = peak_of(&mut f);
    (first, second, r)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn matrix<T: LinearFloat>(rows: usize, cols: usize, seed: u64, scale: f64) -> Array2<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        T::c(((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale)
    })
}

struct Report {
    what: String,
    inputs: usize,
    grads: usize,
    workspace: LinearWorkspace,
    /// Peak of the first call (including the one-time caches).
    first: usize,
    /// Peak of a later call.
    peak: usize,
}

impl Report {
    fn print(&self) {
        let w = &self.workspace;
        println!(
            "{}: inputs {:.1} MiB; peak beyond the inputs {:.1} MiB (first call {:.1} MiB) = gradients {:.1} MiB + \
             {:.1} MiB temporaries (reported workspace {:.1} MiB: {} × {:.1} MiB logits chunk of {} rows, packing \
             {:.1} MiB, rows/bias/top-k {:.2} MiB)",
            self.what,
            mib(self.inputs),
            mib(self.peak),
            mib(self.first),
            mib(self.grads),
            mib(self.peak.saturating_sub(self.grads)),
            mib(w.total_bytes),
            w.chunk_buffers,
            mib(w.logits_chunk_bytes),
            w.chunk_rows,
            mib(w.gemm_packing_bytes),
            mib(w.per_row_bytes + w.bias_accumulator_bytes + w.teacher_topk_bytes + w.row_scratch_bytes),
        );
    }

    /// The peak stays within the gradients + the reported workspace (+ `slack` bytes), and (with `logits_bytes`)
    /// its temporaries far below the logits.
    fn check(&self, logits_bytes: Option<usize>, slack: usize) {
        self.print();
        assert!(
            self.peak <= self.grads + self.workspace.total_bytes + slack,
            "{}: peak {} > gradients {} + workspace {} + slack {slack}",
            self.what,
            self.peak,
            self.grads,
            self.workspace.total_bytes
        );
        assert!(self.peak >= self.grads, "{}: the gradients alone take {} bytes", self.what, self.grads);
        if let Some(logits) = logits_bytes {
            assert!(
                self.peak - self.grads < logits / 2,
                "{}: {} bytes of temporaries, the logits are {logits}",
                self.what,
                self.peak - self.grads
            );
        }
    }
}

fn measure_ce<T: LinearFloat>(n: usize, h: usize, v: usize, chunk: Option<usize>) -> Report {
    let e = std::mem::size_of::<T>();
    let x = matrix::<T>(n, h, 1, 1.0);
    let w = matrix::<T>(v, h, 2, 0.05);
    let b = Array1::from_shape_fn(v, |i| T::c((i % 7) as f64 * 0.01));
    let y = Array1::from_shape_fn(n, |i| ((i * 7919) % v) as i64);
    let opts = LinearCrossEntropyOptions::<T> { chunk_size: chunk, ..Default::default() };
    let (first, peak, out) = peaks(|| {
        linear_cross_entropy(x.view(), w.view(), Some(b.view()), y.view(), &opts).expect("linear ce")
    });
    assert!(out.loss.scalar().expect("scalar").f64().is_finite());
    Report {
        what: format!("linear_cross_entropy N={n} H={h} V={v} {}", std::any::type_name::<T>()),
        inputs: (n * h + v * h + v) * e + n * 8,
        grads: (n * h + v * h + v) * e,
        workspace: linear_cross_entropy_workspace(n, h, v, true, &opts),
        first,
        peak,
    }
}

fn measure_distill<T: LinearFloat>(
    n: usize,
    h: usize,
    v: usize,
    chunk: Option<usize>,
    topk: Option<TeacherTopK>,
) -> Report {
    let e = std::mem::size_of::<T>();
    let (xs, ws, xt, wt) = (
        matrix::<T>(n, h, 3, 1.0),
        matrix::<T>(v, h, 4, 0.05),
        matrix::<T>(n, h, 5, 1.0),
        matrix::<T>(v, h, 6, 0.05),
    );
    let (bs, bt) = (Array1::from_elem(v, T::c(0.01)), Array1::from_elem(v, T::c(-0.02)));
    let opts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: chunk,
    };
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: Some(bt.view()) };
    let (first, peak, out) = peaks(|| {
        linear_distill_backward(&student, &teacher, None, topk, &opts, &GradOutput::Scalar(T::c(0.5)))
            .expect("linear distill")
    });
    assert!(out.loss.scalar().expect("scalar").f64().is_finite());
    Report {
        what: format!("linear_distill N={n} H={h} V={v} {} top-k {topk:?}", std::any::type_name::<T>()),
        inputs: (2 * n * h + 2 * v * h + 2 * v) * e,
        grads: (n * h + v * h + v) * e,
        workspace: linear_distill_workspace_with::<T>(n, h, h, v, true, topk, &opts),
        first,
        peak,
    }
}

/// A stored top-k teacher for `n` rows of `v` classes: `k` distinct classes per row, log-probabilities that
/// leave mass for the tail.
fn stored_teacher<T: LinearFloat>(n: usize, v: usize, k: usize) -> (Array2<i64>, Array2<T>) {
    let idx = Array2::from_shape_fn((n, k), |(r, j)| ((r + j * (v / k)) % v) as i64);
    let lq = Array2::from_shape_fn((n, k), |(_, j)| T::c(-6.0 - 0.01 * j as f64));
    (idx, lq)
}

fn measure_distill_topk<T: LinearFloat>(
    n: usize,
    h: usize,
    v: usize,
    k: usize,
    chunk: Option<usize>,
) -> Report {
    let e = std::mem::size_of::<T>();
    let (xs, ws) = (matrix::<T>(n, h, 3, 1.0), matrix::<T>(v, h, 4, 0.05));
    let bs = Array1::from_elem(v, T::c(0.01));
    let (idx, lq) = stored_teacher::<T>(n, v, k);
    let opts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: chunk,
    };
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let (first, peak, out) = peaks(|| {
        linear_distill_topk(&student, &teacher, None, &opts, &GradOutput::Scalar(T::c(0.5))).expect("topk")
    });
    assert!(out.loss.scalar().expect("scalar").f64().is_finite());
    Report {
        what: format!("linear_distill_topk N={n} H={h} V={v} k={k} {}", std::any::type_name::<T>()),
        inputs: (n * h + v * h + v) * e + n * k * (8 + e),
        grads: (n * h + v * h + v) * e,
        workspace: linear_distill_topk_workspace::<T>(n, h, v, true, &opts),
        first,
        peak,
    }
}

/// Small per-call allocations the workspace does not list (rayon job bookkeeping, `Vec` growth of the per-row
/// losses, a few ndarray headers).
const SLACK: usize = 1 << 20;

#[test]
fn in_place_calls_allocate_no_gradient() {
    use infoloss::half::bf16;
    use infoloss::{BceOptions, BceWithLogitsOptions, KlDivOptions, Reduction};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (rows, cols) = (64, 8192);
    let x = matrix::<f32>(rows, cols, 1, 4.0);
    let u = x.mapv(|v| (v.abs() / 4.0).min(1.0));
    let t = matrix::<f32>(rows, cols, 2, 1.0).mapv(f32::abs);
    let bytes = rows * cols * 4;
    let kl = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let mut buf = x.clone();
    // the allocating call needs the gradient; the in-place one only small per-task buffers
    let (_, alloc, _) = peaks(|| infoloss::kl_div_with_grad(x.view(), t.view(), &kl).unwrap());
    assert!(alloc >= bytes, "kl_div_with_grad peak {alloc} < {bytes}");
    let (_, ip, _) = peaks(|| infoloss::kl_div_with_grad_in_place(buf.view_mut(), t.view(), &kl).unwrap());
    assert!(ip < bytes / 8, "kl_div_with_grad_in_place peak {ip} bytes for a {bytes}-byte input");
    let mut bu = u.clone();
    let (_, ip, _) = peaks(|| {
        bu.assign(&u);
        infoloss::binary_cross_entropy_with_grad_in_place(bu.view_mut(), t.view(), &BceOptions::default())
            .unwrap()
    });
    assert!(ip < bytes / 8, "binary_cross_entropy_with_grad_in_place peak {ip}");
    let o = BceWithLogitsOptions::default();
    let (_, ip, _) = peaks(|| {
        infoloss::binary_cross_entropy_with_logits_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap()
    });
    assert!(ip < bytes / 8, "binary_cross_entropy_with_logits_with_grad_in_place peak {ip}");
    // bf16 too (its tiles are converted in L1, not whole)
    let mut xb = x.mapv(bf16::from_f32);
    let tb = t.mapv(bf16::from_f32);
    let (_, ip, _) = peaks(|| infoloss::kl_div_with_grad_in_place(xb.view_mut(), tb.view(), &kl).unwrap());
    assert!(ip < bytes / 16, "bf16 kl_div_with_grad_in_place peak {ip}");
    // and the cross-entropy
    let y = infoloss::ndarray::Array1::from_shape_fn(rows, |i| (i * 37 % cols) as i64);
    let (_, ip, _) = peaks(|| {
        infoloss::cross_entropy_with_grad_in_place(buf.view_mut(), y.view(), &Default::default()).unwrap()
    });
    assert!(ip < bytes / 8, "cross_entropy_with_grad_in_place peak {ip}");
}

#[test]
fn peak_memory_is_gradients_plus_one_chunk() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (n, h, v) = (768, 128, 6000);
    let tk = Some(TeacherTopK { k: 64, add_tail: true });
    measure_ce::<f32>(n, h, v, Some(64)).check(Some(n * v * 4), SLACK);
    measure_ce::<f64>(n, h, v, Some(100)).check(Some(n * v * 8), SLACK);
    measure_distill::<f32>(n, h, v, Some(64), None).check(Some(n * v * 4), SLACK);
    measure_distill::<f32>(n, h, v, Some(64), tk).check(Some(n * v * 4), SLACK);
    measure_distill::<f64>(n, h, v, Some(50), None).check(Some(n * v * 8), SLACK);
    measure_distill_topk::<f32>(n, h, v, 64, Some(64)).check(Some(n * v * 4), SLACK);
    measure_distill_topk::<f64>(n, h, v, 64, Some(50)).check(Some(n * v * 8), SLACK);
    measure_distill_topk::<f32>(n, h, v, 64, None).check(None, SLACK);
    // the automatic chunk holds at least 64 MiB of logits: here all rows, still within the reported workspace
    measure_ce::<f32>(n, h, v, None).check(None, SLACK);
    measure_distill::<f32>(n, h, v, None, tk).check(None, SLACK);
}

#[test]
#[ignore = "large (N = 2048, H = 1024, V = 32000): run with --ignored --nocapture for the numbers"]
fn peak_memory_at_the_issue_anchor_size() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (n, h, v) = (2048, 1024, 32000);
    let tk = Some(TeacherTopK { k: 64, add_tail: true });
    for chunk in [None, Some(128)] {
        let t = std::time::Instant::now();
        measure_ce::<f32>(n, h, v, chunk).check(Some(n * v * 4), SLACK);
        println!("  (chunk {chunk:?}; two calls {:.2} s)", t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        measure_distill_topk::<f32>(n, h, v, 128, chunk).check(Some(n * v * 4), SLACK);
        println!("  (chunk {chunk:?}; two calls {:.2} s)", t.elapsed().as_secs_f64());
        for topk in [None, tk] {
            let t = std::time::Instant::now();
            measure_distill::<f32>(n, h, v, chunk, topk).check(Some(n * v * 4), SLACK);
            println!("  (chunk {chunk:?}; two calls {:.2} s)", t.elapsed().as_secs_f64());
        }
    }
}

/// Median of `reps` timed calls of `f` (after one warm-up call), in seconds.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

#[test]
#[ignore = "large (N = 2048, H = 1024, V = 32000): run with --ignored --nocapture for the numbers"]
fn time_against_the_gemms_alone_at_the_anchor_size() {
    use infoloss::linear::matmul;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (n, h, v) = (2048, 1024, 32000);
    let (xs, ws, xt, wt) = (
        matrix::<f32>(n, h, 3, 1.0),
        matrix::<f32>(v, h, 4, 0.05),
        matrix::<f32>(n, h, 5, 1.0),
        matrix::<f32>(v, h, 6, 0.05),
    );
    let y = Array1::from_shape_fn(n, |i| ((i * 7919) % v) as i64);
    // the products of the fused losses, unchunked: logits (student, teacher), G·W, Gᵀ·X
    let mut logits = Array2::<f32>::zeros((n, v));
    let mut gx = Array2::<f32>::zeros((n, h));
    let mut gw = Array2::<f32>::zeros((v, h));
    let mut gemms = |teacher: bool| {
        matmul(logits.view_mut(), xs.view(), ws.t(), false).expect("logits");
        if teacher {
            matmul(logits.view_mut(), xt.view(), wt.t(), false).expect("teacher logits");
        }
        matmul(gx.view_mut(), logits.view(), ws.view(), false).expect("grad hidden");
        matmul(gw.view_mut(), logits.t(), xs.view(), false).expect("grad weight");
    };
    let reps = 3;
    let three = median_secs(reps, || gemms(false));
    let four = median_secs(reps, || gemms(true));
    let opts = LinearCrossEntropyOptions::<f32>::default();
    let ce = median_secs(reps, || drop(linear_cross_entropy(xs.view(), ws.view(), None, y.view(), &opts)));
    let dopts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        chunk_size: None,
    };
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: None };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: None };
    let run = |topk| {
        drop(
            linear_distill_backward(&student, &teacher, None, topk, &dopts, &GradOutput::one())
                .expect("distill"),
        )
    };
    let kd = median_secs(reps, || run(None));
    let kd_topk = median_secs(reps, || run(Some(TeacherTopK { k: 64, add_tail: true })));
    let bs = Array1::from_elem(v, 0.01f32);
    let (idx, lq) = stored_teacher::<f32>(n, v, 128);
    let stored = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let with_bias = LinearHead { bias: Some(bs.view()), ..student };
    let stored_kd = median_secs(reps, || {
        drop(linear_distill_topk(&with_bias, &stored, None, &dopts, &GradOutput::one()).expect("stored"))
    });
    println!(
        "linear_distill_topk (stored top-128 + tail, student bias) {stored_kd:.2} s ({:.2}× the three GEMMs)",
        stored_kd / three
    );
    println!(
        "{} threads: three GEMMs {three:.2} s, linear_cross_entropy {ce:.2} s ({:.2}×); four GEMMs {four:.2} s, \
         linear_distill {kd:.2} s ({:.2}×), with a top-64 teacher + tail {kd_topk:.2} s ({:.2}×)",
        rayon::current_num_threads(),
        ce / three,
        kd / four,
        kd_topk / four
    );
}

/// Peak bytes of the second of two calls of `f` beyond what was allocated before it.
fn peak_bytes<R>(f: impl FnMut() -> R) -> usize {
    peaks(f).1
}

/// The issue's memory target for every fast path: beyond the inputs and the returned arrays, a call needs
/// O(rows) — per-row values and per-thread scratch rows — never a second input-sized array (a widened `f32`
/// copy of a half-type input, log-probabilities kept for the backward, a temporary softmax).
fn allocating_calls_need_only_their_outputs<T: infoloss::Element>(dtype: &str) {
    use infoloss::distill::{DistillOptions, Divergence, distill, distill_with_grad};
    use infoloss::uda::{UdaOptions, uda_consistency_backward, uda_consistency_with_grad};
    use infoloss::{
        BceOptions, BceWithLogitsOptions, CrossEntropyOptions, EntropyOptions, JensenShannonOptions,
        KlDivOptions, NllOptions, Reduction,
    };
    let (rows, cols) = (256, 8192);
    let conv = |a: &Array2<f32>| a.mapv(|v| T::from_acc(<T::Acc as infoloss::Real>::c(f64::from(v))));
    let logits = conv(&matrix::<f32>(rows, cols, 11, 4.0));
    let logits2 = conv(&matrix::<f32>(rows, cols, 12, 4.0));
    let unit = conv(&matrix::<f32>(rows, cols, 13, 1.0).mapv(|v| v.abs().clamp(0.001, 0.999)));
    let probs32 = matrix::<f32>(rows, cols, 14, 1.0).mapv(|v| (v.abs() + 1e-3) / cols as f32);
    let probs = conv(&probs32);
    let probs2 = conv(&matrix::<f32>(rows, cols, 15, 1.0).mapv(|v| (v.abs() + 1e-3) / cols as f32));
    let logp = conv(&probs32.mapv(f32::ln));
    let binary = conv(&matrix::<f32>(rows, cols, 16, 1.0).mapv(|v| if v > 0.4 { 1.0 } else { 0.0 }));
    let weight =
        conv(&Array2::from_shape_fn((1, cols), |(_, j)| 0.5 + (j % 7) as f32 / 4.0)).row(0).to_owned();
    let ones = conv(&Array2::ones((1, rows))).row(0).to_owned();
    let y = Array1::from_shape_fn(rows, |i| if i % 9 == 4 { -100 } else { (i * 7919 % cols) as i64 });
    let size = std::mem::size_of::<T>() * rows * cols;
    let bm = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let ls = CrossEntropyOptions { label_smoothing: 0.1, weight: Some(weight.view()), ..Default::default() };
    let pw = weight.view().into_dyn();
    let bcel = BceWithLogitsOptions { pos_weight: Some(pw), ..Default::default() };
    let ent = EntropyOptions { base: None, axis: 1 };
    let js = JensenShannonOptions { axis: 1, ..Default::default() };
    let kd = |divergence, alpha| DistillOptions { temperature: 2.0, divergence, alpha, ..Default::default() };
    let uda = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
    // (name, arrays of the input's size the call returns, peak of a second call)
    macro_rules! peak {
        ($name:expr, $outputs:expr, $call:expr) => {
            ($name, $outputs, peak_bytes(|| $call))
        };
    }
    let calls: Vec<(&str, usize, usize)> = vec![
        peak!("cross_entropy", 0, infoloss::cross_entropy(logits.view(), y.view(), &ls).unwrap()),
        peak!(
            "cross_entropy_with_grad",
            1,
            infoloss::cross_entropy_with_grad(logits.view(), y.view(), &ls).unwrap()
        ),
        peak!(
            "cross_entropy_probs_with_grad",
            1,
            infoloss::cross_entropy_probs_with_grad(logits.view(), probs.view(), &Default::default())
                .unwrap()
        ),
        peak!(
            "nll_loss_with_grad",
            1,
            infoloss::nll_loss_with_grad(logp.view(), y.view(), &NllOptions::default()).unwrap()
        ),
        peak!("softmax", 1, infoloss::softmax(logits.view(), 1).unwrap()),
        peak!("log_softmax", 1, infoloss::log_softmax(logits.view(), 1).unwrap()),
        peak!(
            "log_softmax_backward",
            1,
            infoloss::log_softmax_backward(logp.view(), logits2.view(), 1).unwrap()
        ),
        peak!("logsumexp", 0, infoloss::logsumexp(logits.view(), 1).unwrap()),
        peak!("kl_div", 0, infoloss::kl_div(logp.view(), probs2.view(), &bm).unwrap()),
        peak!("kl_div_with_grad", 1, infoloss::kl_div_with_grad(logp.view(), probs2.view(), &bm).unwrap()),
        peak!(
            "binary_cross_entropy_with_grad",
            1,
            infoloss::binary_cross_entropy_with_grad(unit.view(), binary.view(), &BceOptions::default())
                .unwrap()
        ),
        peak!(
            "binary_cross_entropy_with_logits_with_grad",
            1,
            infoloss::binary_cross_entropy_with_logits_with_grad(logits.view(), binary.view(), &bcel)
                .unwrap()
        ),
        peak!("entropy", 0, infoloss::entropy(probs.view(), None, &ent).unwrap()),
        peak!(
            "entropy_backward",
            1,
            infoloss::entropy_backward(probs.view(), None, &ent, ones.view()).unwrap()
        ),
        peak!("jensenshannon", 0, infoloss::jensenshannon(probs.view(), probs2.view(), &js).unwrap()),
        peak!(
            "jensenshannon_backward",
            2,
            infoloss::jensenshannon_backward(probs.view(), probs2.view(), &js, ones.view()).unwrap()
        ),
        peak!(
            "distill",
            0,
            distill(logits.view(), logits2.view(), None, &kd(Divergence::ForwardKl, 1.0)).unwrap()
        ),
        peak!(
            "distill_with_grad forward KL",
            1,
            distill_with_grad(logits.view(), logits2.view(), None, &kd(Divergence::ForwardKl, 1.0)).unwrap()
        ),
        peak!(
            "distill_with_grad reverse KL",
            1,
            distill_with_grad(logits.view(), logits2.view(), None, &kd(Divergence::ReverseKl, 1.0)).unwrap()
        ),
        peak!(
            "distill_with_grad JSD",
            1,
            distill_with_grad(
                logits.view(),
                logits2.view(),
                None,
                &kd(Divergence::GeneralizedJsd { beta: 0.5 }, 1.0)
            )
            .unwrap()
        ),
        peak!(
            "distill_with_grad TVD",
            1,
            distill_with_grad(logits.view(), logits2.view(), None, &kd(Divergence::TotalVariation, 1.0))
                .unwrap()
        ),
        peak!(
            "distill_with_grad mix",
            1,
            distill_with_grad(logits.view(), logits2.view(), Some(y.view()), &kd(Divergence::ForwardKl, 0.5))
                .unwrap()
        ),
        peak!("uda_consistency", 1, uda_consistency_with_grad(logits2.view(), logits.view(), &uda).unwrap()),
        peak!(
            "uda_consistency_backward",
            1,
            uda_consistency_backward(logits2.view(), logits.view(), &uda, &infoloss::GradOutput::one())
                .unwrap()
        ),
    ];
    let mut over = Vec::new();
    for (name, outputs, peak) in calls {
        let extra = peak as f64 - (outputs * size) as f64;
        println!(
            "{dtype} {name}: peak {:.2} MiB, {:.2} MiB beyond its outputs",
            mib(peak),
            extra / (1u64 << 20) as f64
        );
        // an input-sized temporary would be `size` bytes (an f32 copy of a half-type input: 2·size)
        if peak > outputs * size + size / 4 {
            over.push(format!("{name}: {peak} bytes for {outputs} output(s) of {size}"));
        }
    }
    assert!(over.is_empty(), "{dtype}: calls needing an input-sized temporary: {over:#?}");
}

#[test]
fn allocating_calls_need_only_their_outputs_f32() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    allocating_calls_need_only_their_outputs::<f32>("f32");
}

#[test]
fn allocating_calls_need_only_their_outputs_bf16() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    allocating_calls_need_only_their_outputs::<infoloss::half::bf16>("bf16");
}

#[test]
fn allocating_calls_need_only_their_outputs_f16() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    allocating_calls_need_only_their_outputs::<infoloss::half::f16>("f16");
}
