//! The communication a vocab-parallel loss needs, and two engines that need no library: one process
//! alone, and several threads of one process standing in for ranks (tests, examples, one machine).
//!
//! A vocab-parallel loss communicates only row statistics: a few element-wise all-reductions (max,
//! sum) of `f64` vectors whose length is a small multiple of the number of rows, never the logits.
//! An engine (MPI, `torch.distributed`) implements [`Collective`] over its communicator.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// An element-wise all-reduction over the ranks of a group: after the call every rank holds the
/// combination of every rank's `buf` (same length on every rank, the call made by every rank in the
/// same order).
///
/// Implementations must report a peer that fails or never arrives as an error (within a timeout they
/// document), never hang: the losses built on this trait propagate the error.
///
/// ```
/// use infoloss::vocab_parallel::{Collective, SingleProcess};
/// let mut v = [1.0, 2.0];
/// SingleProcess.all_reduce_sum(&mut v).unwrap();
/// assert_eq!((SingleProcess.rank(), SingleProcess.size(), v), (0, 1, [1.0, 2.0]));
/// ```
pub trait Collective {
    /// This process's rank in `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// `buf[i] = max over ranks of buf[i]` (NaN if any rank's is NaN, as `torch.max`).
    fn all_reduce_max(&self, buf: &mut [f64]) -> Result<()>;
    /// `buf[i] = Σ over ranks of buf[i]`, summed in rank order (so every rank gets the same bits).
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()>;
}

/// The group of one process: every reduction is the identity. A vocab-parallel loss over
/// `SingleProcess` with the whole vocabulary is the ordinary loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_max(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// The max that propagates NaN (`f64::max` drops it).
pub(crate) fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Which reduction a rank asked for (ranks asking for different ones in the same round is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Max,
    Sum,
}

/// One round of a [`LocalGroup`]: the buffers of the ranks that have arrived.
#[derive(Debug, Default)]
struct Round {
    /// The round number (every rank's `n`-th call meets in round `n`).
    number: u64,
    /// Each rank's buffer, once it arrived, and the reduction it asked for.
    arrived: Vec<Option<(Op, Vec<f64>)>>,
    /// The result of the previous round (read by the ranks that waited for it) or its error.
    done: Option<(u64, std::result::Result<Vec<f64>, String>)>,
    /// Ranks that left the group (dropped their member or called [`LocalMember::fail`]).
    gone: Vec<usize>,
}

/// Threads of one process acting as the ranks of a group: [`LocalGroup::members`] gives one
/// [`LocalMember`] per rank, to be moved into its own thread.
///
/// A rank that waits longer than the timeout for the others, or whose peer left the group (dropped
/// its member, e.g. by panicking or returning an error, or called [`LocalMember::fail`]), gets an
/// error naming the ranks it waited for — never a hang.
///
/// ```
/// use infoloss::vocab_parallel::{Collective, LocalGroup};
/// use std::time::Duration;
/// let members = LocalGroup::members(3, Duration::from_secs(10));
/// let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
///     let hs: Vec<_> = members
///         .into_iter()
///         .map(|m| s.spawn(move || {
///             let mut v = vec![m.rank() as f64, 1.0];
///             m.all_reduce_sum(&mut v).unwrap();
///             v
///         }))
///         .collect();
///     hs.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(sums.iter().all(|v| v == &[3.0, 3.0]));
/// ```
#[derive(Debug)]
pub struct LocalGroup;

impl LocalGroup {
    /// The members of a new group of `size` ranks (at least 1), each waiting at most `timeout` for
    /// the others in a reduction.
    pub fn members(size: usize, timeout: Duration) -> Vec<LocalMember> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(Round { arrived: vec![None; size], ..Default::default() }),
            cv: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalMember { rank, size, timeout, shared: shared.clone(), calls: 0.into() })
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<Round>,
    cv: Condvar,
}

/// One rank of a [`LocalGroup`].
#[derive(Debug)]
pub struct LocalMember {
    rank: usize,
    size: usize,
    timeout: Duration,
    shared: Arc<Shared>,
    /// How many reductions this rank has made (its next round's number).
    calls: std::cell::Cell<u64>,
}

impl LocalMember {
    /// Leaves the group as a failed rank: the others' pending and future reductions fail at once,
    /// naming this rank (what a process that raised mid-step does to its peers).
    pub fn fail(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.gone.contains(&self.rank) {
            st.gone.push(self.rank);
        }
        self.shared.cv.notify_all();
    }

    fn reduce(&self, op: Op, buf: &mut [f64]) -> Result<()> {
        let err = |detail: String| Error::collective("vocab_parallel", self.rank, detail);
        let number = self.calls.get();
        self.calls.set(number + 1);
        let deadline = Instant::now() + self.timeout;
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        // Wait until the previous round is over (a fast rank may come back before the slow ones read it).
        while st.number != number {
            if let Some(g) = gone_peer(&st, self.rank) {
                return Err(err(format!("rank {g} left the group")));
            }
            let missing = st_ranks(&st);
            st = wait(&self.shared.cv, st, deadline).map_err(|()| err(self.waiting_for(&missing)))?;
        }
        st.arrived[self.rank] = Some((op, buf.to_vec()));
        if st.arrived.iter().all(Option::is_some) {
            let result = combine(&st.arrived);
            st.arrived.iter_mut().for_each(|a| *a = None);
            st.done = Some((number, result));
            st.number += 1;
            self.shared.cv.notify_all();
        } else {
            loop {
                if matches!(&st.done, Some((n, _)) if *n == number) {
                    break;
                }
                if let Some(g) = gone_peer(&st, self.rank) {
                    return Err(err(format!("rank {g} left the group during a reduction")));
                }
                let missing = st_ranks(&st);
                st = wait(&self.shared.cv, st, deadline).map_err(|()| err(self.waiting_for(&missing)))?;
            }
        }
        match &st.done {
            Some((_, Ok(v))) if v.len() == buf.len() => {
                buf.copy_from_slice(v);
                Ok(())
            }
            Some((_, Ok(v))) => {
                Err(err(format!("reduction of {} values, another rank sent {}", buf.len(), v.len())))
            }
            Some((_, Err(e))) => Err(err(e.clone())),
            None => Err(err("no result".into())),
        }
    }

    fn waiting_for(&self, ranks: &[usize]) -> String {
        format!("timed out after {:?} waiting for rank(s) {ranks:?}", self.timeout)
    }
}

/// The ranks of a round that have not arrived.
fn st_ranks(st: &Round) -> Vec<usize> {
    (0..st.arrived.len()).filter(|&r| st.arrived[r].is_none()).collect()
}

/// A rank other than `me` that left the group.
fn gone_peer(st: &Round, me: usize) -> Option<usize> {
    st.gone.iter().copied().find(|&g| g != me)
}

/// Waits on `cv` until notified or `deadline`; `Err` once the deadline has passed.
fn wait<'a>(
    cv: &Condvar,
    guard: std::sync::MutexGuard<'a, Round>,
    deadline: Instant,
) -> std::result::Result<std::sync::MutexGuard<'a, Round>, ()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(());
    }
    let (g, _) = cv.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner());
    Ok(g)
}

/// The combination of every rank's buffer, in rank order; an error when the ranks disagree on the
/// reduction or the length.
fn combine(arrived: &[Option<(Op, Vec<f64>)>]) -> std::result::Result<Vec<f64>, String> {
    let (op0, first) = arrived[0].as_ref().expect("every rank arrived");
    let mut acc = first.clone();
    for (r, a) in arrived.iter().enumerate().skip(1) {
        let (op, v) = a.as_ref().expect("every rank arrived");
        if op != op0 {
            return Err(format!("rank 0 asked for a {op0:?} reduction, rank {r} for a {op:?} one"));
        }
        if v.len() != acc.len() {
            return Err(format!("rank 0 reduces {} values, rank {r} {}", acc.len(), v.len()));
        }
        for (x, &y) in acc.iter_mut().zip(v) {
            *x = match op {
                Op::Max => nan_max(*x, y),
                Op::Sum => *x + y,
            };
        }
    }
    Ok(acc)
}

impl Collective for LocalMember {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_max(&self, buf: &mut [f64]) -> Result<()> {
        self.reduce(Op::Max, buf)
    }
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        self.reduce(Op::Sum, buf)
    }
}

impl Drop for LocalMember {
    fn drop(&mut self) {
        self.fail();
    }
}
