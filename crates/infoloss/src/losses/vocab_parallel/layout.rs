//! Where each rank's slice of the vocabulary lies, and the check that the ranks agree on it.

use super::collective::Collective;
use crate::base::shape::ensure_shapes;
use crate::{Error, Result};

/// This rank's slice `[start, start + len)` of a vocabulary of `total` classes.
///
/// ```
/// use infoloss::vocab_parallel::VocabShard;
/// // 10 classes over 3 ranks: [0, 4), [4, 7), [7, 10)
/// let s = VocabShard::even_split(10, 1, 3).unwrap();
/// assert_eq!((s.start, s.len, s.total), (4, 3, 10));
/// assert!(s.contains(6) && !s.contains(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabShard {
    /// The first class of the slice.
    pub start: usize,
    /// The number of classes in the slice (the shard's width).
    pub len: usize,
    /// The number of classes of the whole vocabulary.
    pub total: usize,
}

impl VocabShard {
    /// The slice `[start, start + len)` of `total` classes; an error unless it lies inside `[0, total)`.
    pub fn new(start: usize, len: usize, total: usize) -> Result<Self> {
        if start.checked_add(len).is_none_or(|end| end > total) {
            return Err(Error::invalid_option(
                "vocab_parallel",
                "vocab_start",
                start,
                format!("the slice [{start}, {start} + {len}) does not lie inside the {total} classes"),
            ));
        }
        Ok(VocabShard { start, len, total })
    }

    /// Rank `rank`'s slice when `total` classes are split over `ranks` ranks as evenly as possible, the
    /// first `total % ranks` ranks holding one class more (the split `torch.tensor_split` makes).
    pub fn even_split(total: usize, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(Error::invalid_option(
                "vocab_parallel",
                "rank",
                rank,
                format!("must be in [0, {ranks})"),
            ));
        }
        let (base, extra) = (total / ranks, total % ranks);
        let start = rank * base + rank.min(extra);
        VocabShard::new(start, base + usize::from(rank < extra), total)
    }

    /// Whether class `c` lies in this slice.
    pub fn contains(&self, c: usize) -> bool {
        c >= self.start && c - self.start < self.len
    }
}

/// Checks across ranks that every rank has the same `rows`, the same `total`, the same `fingerprint`
/// (of the targets/labels and options every rank must share), and that the slices tile `[0, total)`
/// without gap or overlap. One sum-reduction of `4·ranks` numbers; every rank reaches the same verdict.
pub(crate) fn check_layout<C: Collective + ?Sized>(
    op: &'static str,
    comm: &C,
    shard: &VocabShard,
    rows: usize,
    fingerprint: f64,
) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    let mut all = vec![0.0; 5 * size];
    let mine = [shard.start as f64, shard.len as f64, shard.total as f64, rows as f64, fingerprint];
    all[5 * rank..5 * rank + 5].copy_from_slice(&mine);
    comm.all_reduce_sum(&mut all)?;
    let err = |d: String| Error::collective(op, rank, d);
    let of = |r: usize| &all[5 * r..5 * r + 5];
    for r in 1..size {
        let (a, b) = (of(0), of(r));
        if b[3] != a[3] {
            return Err(err(format!("rank {r} has {} rows, rank 0 has {}", b[3], a[3])));
        }
        if b[2] != a[2] {
            return Err(err(format!(
                "rank {r} says the vocabulary has {} classes, rank 0 says {}",
                b[2], a[2]
            )));
        }
        if b[4] != a[4] {
            return Err(err(format!("rank {r}'s targets or options differ from rank 0's")));
        }
    }
    let mut slices: Vec<(usize, usize, usize)> =
        (0..size).map(|r| (of(r)[0] as usize, of(r)[1] as usize, r)).collect();
    slices.sort_unstable();
    let mut next = 0;
    for &(start, len, r) in &slices {
        if start != next {
            let what = if start > next { "leaves a gap before" } else { "overlaps the previous slice at" };
            return Err(err(format!(
                "rank {r}'s vocabulary slice [{start}, {}) {what} class {next}",
                start + len
            )));
        }
        next = start + len;
    }
    if next != shard.total {
        return Err(err(format!(
            "the ranks' slices end at class {next}, the vocabulary has {}",
            shard.total
        )));
    }
    Ok(())
}

/// A number that changes when a target, its position or a shared option changes: what
/// [`check_layout`] compares across ranks. Exact in `f64` (kept below 2^52).
pub(crate) fn fingerprint(values: impl Iterator<Item = i64>, options: &[f64]) -> f64 {
    const M: u64 = (1 << 52) - 1;
    let mut h: u64 = 0x9e37_79b9;
    let mut mix = |v: u64| h = (h.rotate_left(13) ^ v).wrapping_mul(0x0000_0100_0000_01b3) & M;
    for v in values {
        mix(v as u64);
    }
    for o in options {
        mix(o.to_bits());
    }
    h as f64
}

/// The checks every shard step starts with: `x` `(N, shard.len)`; `same` (if any, e.g. the teacher)
/// of `x`'s shape; `targets` (if any) `(N,)`, each a class of the whole vocabulary or `ignore_index`.
pub(crate) fn check_slice(
    op: &'static str,
    (name, x): (&'static str, &[usize]),
    same: Option<(&'static str, &[usize])>,
    shard: &VocabShard,
    targets: Option<(&'static str, &[i64])>,
    ignore_index: i64,
) -> Result<()> {
    if let Some(other) = same {
        ensure_shapes(other.1 == x, op, (name, x), other, "must be equal")?;
    }
    let slice = [x[0], shard.len];
    ensure_shapes(x[1] == shard.len, op, (name, x), ("vocab slice (rows, len)", &slice), "must be equal")?;
    if let Some((tname, t)) = targets {
        ensure_shapes(t.len() == x[0], op, (name, x), (tname, &[t.len()]), "must have one target per row")?;
        for (i, &y) in t.iter().enumerate() {
            if y != ignore_index && (y < 0 || y as u64 >= shard.total as u64) {
                return Err(Error::target_out_of_range(op, &[i], y, shard.total));
            }
        }
    }
    Ok(())
}

/// An error unless a buffer handed back by the engine has the length the step produced.
pub(crate) fn check_len(
    op: &'static str,
    name: &'static str,
    got: usize,
    want: usize,
    from: &str,
) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::invalid_option(
        op,
        name,
        format!("{got} values"),
        format!("must hold the {want} values of {from}"),
    ))
}
