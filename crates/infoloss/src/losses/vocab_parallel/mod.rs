//! Vocab-parallel losses: the output layer's vocabulary split across processes (tensor-parallel
//! `lm_head`, vocabularies of 128k–256k classes), each rank holding the logits of its slice
//! `[start, start + len)` — cross-entropy (label smoothing over the whole vocabulary, class weights,
//! z-loss, softcap) and knowledge distillation (every [`Divergence`](crate::Divergence), temperature,
//! T², hard-label mix, student scale and softcap).
//!
//! # How
//!
//! Each loss is a handful of **local steps** on one rank's slice, separated by element-wise
//! all-reductions of a few numbers per row ([`CrossEntropyShard`], [`DistillShard`]): the row maxima
//! (all-reduce max), then the row sums the loss needs (one all-reduce sum of the concatenated sums),
//! then — only for generalized JSD with `0 < β < 1` and total variation, whose element terms need the
//! global log-sum-exps — one more sum. The last step gives every rank the same loss and its own
//! gradient slice, with no communication: the gradient of the logits needs none.
//!
//! | loss | collectives per step (after the layout check) | numbers per row |
//! |---|---|---|
//! | cross-entropy | max, sum | 1 + 4 (+1 in all) |
//! | distill, forward/reverse KL | max, sum | 3 + 6 |
//! | distill, JSD (0 < β < 1), TVD | max, sum, sum | 3 + 6 + 2 |
//!
//! Communication is `O(rows)` per step, independent of the vocabulary; compute is `O(rows · V /
//! ranks)` per rank. The steps are plain functions, so any engine can drive them: the
//! [`Collective`] trait (all-reduce max / sum of `f64` vectors) lets the drivers here
//! ([`vocab_parallel_cross_entropy_with_grad`], [`vocab_parallel_distill_with_grad`]) run them over
//! MPI, `torch.distributed` (`infoloss.torch`), threads of one process ([`LocalGroup`]) or one process
//! alone ([`SingleProcess`]). The core depends on no engine.
//!
//! Before the steps, the drivers check in one more sum-reduction that every rank has the same number
//! of rows, the same targets/labels and options (a fingerprint), and that the slices tile
//! `[0, total)`; a disagreement is an [`Error::Collective`](crate::Error::Collective) naming the rank.
//!
//! # Precision
//!
//! Every step computes in `f64` and the results are rounded once to the element type, as the
//! reference path of the single-process losses does; the sums are reduced in rank order, so every rank
//! holds the same bits, and the result does not depend on the thread count. Against the
//! single-process loss the only difference is the order of the sums (by slice, then across slices):
//! within about `1e-15` relative in `f64` and one rounding of the element type for `f32`/`f16`/`bf16`.
//!
//! # PyTorch
//!
//! What Megatron-LM's `vocab_parallel_cross_entropy` computes (there label smoothing is averaged over
//! the local slice only; here over the whole vocabulary, so the result equals `F.cross_entropy` of the
//! gathered logits); for distillation, `distill` of the gathered logits.

mod collective;
mod cross_entropy;
mod distill;
mod layout;
mod rows;

use ndarray::{ArrayView1, ArrayView2};

pub use collective::{Collective, LocalGroup, LocalMember, SingleProcess};
pub use cross_entropy::{CrossEntropyShard, VocabParallelCrossEntropyOutput};
pub use distill::{DistillShard, VocabParallelDistillOutput};
pub use layout::VocabShard;

use crate::options::DistillOptions;
use crate::{CrossEntropyExtrasOptions, Element, Result};

/// Declares a vocab-parallel loss as the naming scheme has it: `f` (the loss; the output's `grad` is
/// empty) and `f_with_grad` (the loss and this rank's gradient for an upstream gradient of 1), both
/// running the loss's shard steps over `comm`.
macro_rules! vocab_parallel_api {
    (
        $shard:ident -> $out:ident ($($arg:ident: $ty:ty),*);
        $(#[$fm:meta])* fn $f:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
    ) => {
        $(#[$fm])*
        pub fn $f<T: Element, C: Collective + ?Sized>($($arg: $ty,)* comm: &C) -> Result<$out<T>> {
            $shard::new($($arg),*)?.run(comm, false)
        }

        $(#[$gm])*
        pub fn $with_grad<T: Element, C: Collective + ?Sized>($($arg: $ty,)* comm: &C) -> Result<$out<T>> {
            $shard::new($($arg),*)?.run(comm, true)
        }
    };
}

vocab_parallel_api! {
    CrossEntropyShard -> VocabParallelCrossEntropyOutput (
        logits: ArrayView2<'_, T>,
        target: ArrayView1<'_, i64>,
        shard: VocabShard,
        opts: &CrossEntropyExtrasOptions<'_, T>
    );
    /// The loss of [`vocab_parallel_cross_entropy_with_grad`] without the gradient (its `grad` is empty).
    fn vocab_parallel_cross_entropy;
    /// Cross-entropy of logits whose vocabulary is split across the ranks of `comm`: this rank holds
    /// `logits` `(N, shard.len)`, the columns `[shard.start, shard.start + shard.len)` of the `(N, total)`
    /// logits; every rank passes the same `target` `(N,)` (classes of the whole vocabulary).
    ///
    /// # Formula
    ///
    /// That of [`cross_entropy_extras`](crate::cross_entropy_extras) on the gathered logits: with `x̃ =
    /// c·tanh(x/c)` (softcap) and `lse = log Σ_{all ranks} exp(x̃)`, row loss `(1−ε)·w_y·(lse − x̃_y) +
    /// (ε/V)·Σ_k w_k·(lse − x̃_k) + s·lse²`, reduced as `F.cross_entropy` (÷ `Σ w_y` for `Mean`; the z-loss
    /// ÷ the number of kept rows).
    ///
    /// # Gradient
    ///
    /// This rank's slice of `{[(1−ε)·w_y·(p − e_y) + (ε/V)·(p·Σw − w)]/W + 2·s·lse·p/n}·(1 − tanh²(x/c))`,
    /// `p = softmax(x̃)` over the whole vocabulary; 0 at ignored rows.
    ///
    /// # PyTorch
    ///
    /// `F.cross_entropy(torch.cat(all_ranks_logits, 1), target, ...)` and its gradient's columns; Megatron's
    /// `vocab_parallel_cross_entropy` (which smooths over the local slice only).
    ///
    /// # Errors
    ///
    /// Shapes and targets as [`cross_entropy_extras`](crate::cross_entropy_extras) (targets against the
    /// whole vocabulary); [`Error::Collective`](crate::Error::Collective) when a rank fails or times out,
    /// or when the ranks disagree on rows, targets, options or slices (naming the rank).
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::vocab_parallel::{LocalGroup, VocabShard, vocab_parallel_cross_entropy_with_grad};
    /// use infoloss::{CrossEntropyExtrasOptions, cross_entropy_extras_with_grad, ndarray::{array, s}};
    /// use std::time::Duration;
    /// let x = array![[1.0f64, 2.0, 3.0, 0.5, -1.0], [0.5, -1.0, 2.0, 0.0, 1.0]];
    /// let y = array![4i64, 0];
    /// let opts = CrossEntropyExtrasOptions { label_smoothing: 0.1, ..Default::default() };
    /// let whole = cross_entropy_extras_with_grad(x.view(), y.view(), &opts).unwrap();
    /// // Two "ranks" (threads): classes [0, 3) and [3, 5).
    /// let members = LocalGroup::members(2, Duration::from_secs(10));
    /// let outs: Vec<_> = std::thread::scope(|sc| {
    ///     let hs: Vec<_> = members.into_iter().map(|m| {
    ///         let (x, y, opts) = (&x, &y, &opts);
    ///         sc.spawn(move || {
    ///             let shard = VocabShard::even_split(5, infoloss::vocab_parallel::Collective::rank(&m), 2).unwrap();
    ///             let part = x.slice(s![.., shard.start..shard.start + shard.len]);
    ///             vocab_parallel_cross_entropy_with_grad(part, y.view(), shard, opts, &m).unwrap()
    ///         })
    ///     }).collect();
    ///     hs.into_iter().map(|h| h.join().unwrap()).collect()
    /// });
    /// let loss = outs[0].loss.scalar().unwrap();
    /// assert!((loss - whole.loss.scalar().unwrap()).abs() < 1e-14);
    /// assert!((outs[1].grad[[0, 1]] - whole.grad[[0, 4]]).abs() < 1e-15);
    /// ```
    fn vocab_parallel_cross_entropy_with_grad;
}

vocab_parallel_api! {
    DistillShard -> VocabParallelDistillOutput (
        student: ArrayView2<'_, T>,
        teacher: ArrayView2<'_, T>,
        labels: Option<ArrayView1<'_, i64>>,
        shard: VocabShard,
        opts: &DistillOptions
    );
    /// The loss of [`vocab_parallel_distill_with_grad`] without the gradient (its `grad` is empty).
    fn vocab_parallel_distill;
    /// Knowledge distillation of student and teacher logits whose vocabulary is split across the ranks of
    /// `comm`: this rank holds the columns `[shard.start, shard.start + shard.len)` of both; every rank
    /// passes the same `labels` (if any).
    ///
    /// # Formula and gradient
    ///
    /// Those of [`distill`](crate::distill()) on the gathered logits (see its module docs): `row_loss =
    /// alpha·c_T·D(q, p) + (1 − alpha)·CE`, `p = softmax(s'/T)`, `q = softmax(t/T)`, `s' = c·tanh(a·s/c)`,
    /// reductions `BatchMean`/`Mean`/`Sum`/`None` with `V` = the whole vocabulary; this rank gets its
    /// slice of the gradient wrt `s`.
    ///
    /// # PyTorch
    ///
    /// The `distill` expression on `torch.cat(all_ranks_student, 1)`, `torch.cat(all_ranks_teacher, 1)`.
    ///
    /// # Errors
    ///
    /// Those of [`distill`](crate::distill()) (labels against the whole vocabulary), and
    /// [`Error::Collective`](crate::Error::Collective) as [`vocab_parallel_cross_entropy_with_grad`].
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::vocab_parallel::{SingleProcess, VocabShard, vocab_parallel_distill_with_grad};
    /// use infoloss::distill::{DistillOptions, Divergence, distill_with_grad};
    /// use infoloss::ndarray::array;
    /// let s = array![[1.0f64, 2.0, 0.5]];
    /// let t = array![[0.5f64, 1.5, 2.0]];
    /// let o = DistillOptions { divergence: Divergence::GeneralizedJsd { beta: 0.5 }, temperature: 2.0, ..Default::default() };
    /// let one = vocab_parallel_distill_with_grad(s.view(), t.view(), None, VocabShard::new(0, 3, 3).unwrap(), &o, &SingleProcess).unwrap();
    /// let (loss, grad) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
    /// assert!((one.loss.scalar().unwrap() - loss.scalar().unwrap()).abs() < 1e-15);
    /// assert!((one.grad[[0, 2]] - grad[[0, 2]]).abs() < 1e-15);
    /// ```
    fn vocab_parallel_distill_with_grad;
}
