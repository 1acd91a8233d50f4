//! The adapter moves the core's buffers into candle instead of copying them: a loss's gradient reaches
//! candle as the `Vec` infoloss allocated, and an unreduced forward result as the core's output array.
//!
//! Measured with a counting global allocator, armed per thread: the number of allocations of at least one
//! gradient (or output) that `loss.backward()` (or the forward) makes on the calling thread. A backward
//! needs exactly three: the core's gradient, and candle's own `zeros_like` and `add` with which its
//! backprop accumulates every gradient it receives. A forward with `Reduction::None` needs one, the core's
//! output. A copy anywhere in the adapter adds one. (Other tests of the binary run on other threads and
//! are not counted.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::support::*;

use candle_core::{Tensor, Var};
use half::bf16;
use infoloss::ndarray::ArrayD;
use infoloss_candle::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, DistillOptions, KlDivOptions, NllOptions,
    Reduction, SparseTeacher, UdaOptions,
};

/// The system allocator; counts, on threads that armed it, the allocations of at least a given size.
struct Counting;

thread_local! {
    /// While armed on this thread: (the size from which an allocation counts, the count so far).
    static ARMED: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

fn note(size: usize) {
    // `try_with`: an allocation during thread teardown is simply not counted
    let _ = ARMED.try_with(|a| {
        if let Some((min, n)) = a.get()
            && size >= min
        {
            a.set(Some((min, n + 1)));
        }
    });
}

// SAFETY: forwards every call to `System` unchanged; only counts (a thread-local without destructor,
// which allocates nothing).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The number of allocations of at least `min` bytes `f` makes on this thread, and its result.
fn big_allocations<R>(min: usize, f: impl FnOnce() -> R) -> (usize, R) {
    ARMED.with(|a| a.set(Some((min, 0))));
    let r = f();
    let n = ARMED.with(|a| a.replace(None)).map_or(0, |(_, n)| n);
    (n, r)
}

const ROWS: usize = 64;
const CLASSES: usize = 1024;

/// A loss of the differentiated `(ROWS, CLASSES)` tensor; its other arguments are constants.
type LossOf = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;

/// Every loss with the input it is differentiated at.
fn losses<T: F>() -> Vec<(&'static str, ArrayD<T>, LossOf)> {
    let shape = [ROWS, CLASSES];
    let t = |a: &ArrayD<T>| tensor(a);
    let logits = rand::<T>(1, &shape, -3.0, 3.0);
    let logp = rand::<f64>(5, &shape, -6.0, -0.1).mapv(T::from_f64);
    let unit = rand::<T>(6, &shape, 0.01, 0.99);
    let idx = index_tensor(&classes(3, &[ROWS], CLASSES));
    let probs = t(&probs::<T>(4, &shape));
    let teacher = t(&rand::<T>(7, &shape, -3.0, 3.0));
    let topk = SparseTeacher {
        indices: index_tensor(&classes(8, &[ROWS, 1], CLASSES)),
        logprobs: t(&ArrayD::from_elem(infoloss::ndarray::IxDyn(&[ROWS, 1]), T::from_f64(-0.5))),
        add_tail: true,
    };
    let (i1, i2, i3) = (idx.clone(), idx.clone(), idx);
    let (p1, p2, p3, p4) = (probs.clone(), probs.clone(), probs.clone(), probs);
    let (t1, t2) = (teacher.clone(), teacher);
    vec![
        (
            "cross_entropy",
            logits.clone(),
            Box::new(move |x| infoloss_candle::cross_entropy(x, &i1, &CrossEntropyOptions::default())),
        ),
        (
            "cross_entropy (label smoothing)",
            logits.clone(),
            Box::new(move |x| {
                let o = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
                infoloss_candle::cross_entropy(x, &i2, &o)
            }),
        ),
        (
            "cross_entropy_probs",
            logits.clone(),
            Box::new(move |x| infoloss_candle::cross_entropy_probs(x, &p1, &CrossEntropyOptions::default())),
        ),
        (
            "nll_loss",
            logp.clone(),
            Box::new(move |x| infoloss_candle::nll_loss(x, &i3, &NllOptions::default())),
        ),
        (
            "kl_div",
            logp,
            Box::new(move |x| {
                let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
                infoloss_candle::kl_div(x, &p2, &o)
            }),
        ),
        (
            "binary_cross_entropy",
            unit,
            Box::new(move |x| infoloss_candle::binary_cross_entropy(x, &p3, &BceOptions::default())),
        ),
        (
            "binary_cross_entropy_with_logits",
            logits.clone(),
            Box::new(move |x| {
                infoloss_candle::binary_cross_entropy_with_logits(x, &p4, &BceWithLogitsOptions::default())
            }),
        ),
        (
            "distill",
            logits.clone(),
            Box::new(move |x| infoloss_candle::distill(x, &t1, None, &DistillOptions::default())),
        ),
        (
            "distill_topk",
            logits.clone(),
            Box::new(move |x| infoloss_candle::distill_topk(x, &topk, None, &DistillOptions::default())),
        ),
        (
            "uda_consistency",
            logits.clone(),
            Box::new(move |x| Ok(infoloss_candle::uda_consistency(&t2, x, &UdaOptions::default())?.loss)),
        ),
        ("log_softmax", logits.clone(), Box::new(|x| infoloss_candle::log_softmax(x, 1)?.mean_all())),
        ("logsumexp", logits, Box::new(|x| infoloss_candle::logsumexp(x, 1)?.mean_all())),
    ]
}

/// `loss.backward()` allocates a gradient-sized buffer three times: the core's gradient, which the adapter
/// hands to candle as it is, and candle's accumulation (`zeros_like` + `add`). `log_softmax`, whose
/// `(ROWS, CLASSES)` output goes through `mean_all` first, adds candle's accumulation of that output's
/// gradient: two more.
fn backward_moves_the_gradient<T: F>() {
    let grad_bytes = ROWS * CLASSES * std::mem::size_of::<T>();
    for (name, input, loss) in losses::<T>() {
        let x = Var::from_tensor(&tensor(&input)).unwrap();
        let l = loss(x.as_tensor()).unwrap();
        let (n, grads) = big_allocations(grad_bytes, || l.backward().unwrap());
        let want = if name == "log_softmax" { 5 } else { 3 };
        assert_eq!(n, want, "{name} ({:?}): gradient-sized allocations in backward()", dtype::<T>());
        assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), [ROWS, CLASSES], "{name}");
    }
}

#[test]
fn backward_moves_the_gradient_f32() {
    backward_moves_the_gradient::<f32>();
}

#[test]
fn backward_moves_the_gradient_bf16() {
    backward_moves_the_gradient::<bf16>();
}

/// An unreduced forward result reaches candle as the core's output array: one allocation of its size.
#[test]
fn unreduced_forward_moves_the_output() {
    let shape = [ROWS, CLASSES];
    let x = tensor(&rand::<f32>(1, &shape, -3.0, 3.0));
    let probs = tensor(&probs::<f32>(4, &shape));
    let unit = tensor(&rand::<f32>(6, &shape, 0.01, 0.99));
    let out_bytes = ROWS * CLASSES * 4;
    let none = Reduction::None;
    type Forward<'a> = Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>;
    let cases: Vec<(&str, Forward<'_>)> = vec![
        (
            "kl_div",
            Box::new(|| {
                infoloss_candle::kl_div(&x, &probs, &KlDivOptions { reduction: none, log_target: false })
            }),
        ),
        (
            "binary_cross_entropy",
            Box::new(|| {
                infoloss_candle::binary_cross_entropy(
                    &unit,
                    &probs,
                    &BceOptions { weight: None, reduction: none },
                )
            }),
        ),
        (
            "binary_cross_entropy_with_logits",
            Box::new(|| {
                let o = BceWithLogitsOptions { reduction: none, ..Default::default() };
                infoloss_candle::binary_cross_entropy_with_logits(&x, &probs, &o)
            }),
        ),
        ("log_softmax", Box::new(|| infoloss_candle::log_softmax(&x, 1))),
        ("softmax", Box::new(|| infoloss_candle::softmax(&x, -1))),
    ];
    for (name, f) in cases {
        let (n, out) = big_allocations(out_bytes, || f().unwrap());
        assert_eq!(n, 1, "{name}: output-sized allocations in the forward");
        assert_eq!(out.dims(), shape, "{name}");
        assert!(out.is_contiguous(), "{name}");
    }
}
