//! The packed mode's row code.
//!
//! A row's `k` entries are stored sorted by class index, as one bit stream (see [`crate::bits`]):
//!
//! 1. `r`, 5 bits: the Rice parameter of the row (chosen to make the row shortest);
//! 2. the `k` index gaps `g_0 = i_0`, `g_j = i_j − i_{j−1} − 1`, each as `g >> r` one bits, a zero bit, then
//!    the low `r` bits of `g`;
//! 3. `σ`, 5 bits: the Rice parameter of the levels;
//! 4. the `k` log-probabilities in the same order, each a level `q` in `0 ..= 2^b − 1` on the row's range
//!    `[lo, hi]` (stored beside the stream as two `f16`, `lo` rounded down and `hi` up),
//!    `lp ≈ lo + q·(hi − lo)/(2^b − 1)`, Rice-coded as the gaps are: a heavy-tailed row has most of its top-k
//!    near `lo`, so this takes about one bit per value less than `b` bits.
//!
//! Log-probabilities more than [`SPAN`] nats below the row's best are stored as `hi − SPAN` (their mass,
//! below `e^-SPAN` of the best's, does not show in a loss). On reading, the dequantized values are shifted by one
//! common `ln(M/Σ exp(lp))`, so that the top-k mass is exactly `M = 1 − exp(tail)` from the stored tail.

use half::f16;

use crate::bits::{BitReader, BitWriter};

/// How far below the row's best log-probability the quantization range reaches, in nats.
pub const SPAN: f32 = 80.0;

/// The largest `f16` not above `x` (`x` finite and within `f16`'s range).
fn f16_down(x: f32) -> f16 {
    let h = f16::from_f32(x);
    if h.to_f32() <= x { h } else { f16::from_bits(step(h, false)) }
}

/// The smallest `f16` not below `x`.
fn f16_up(x: f32) -> f16 {
    let h = f16::from_f32(x);
    if h.to_f32() >= x { h } else { f16::from_bits(step(h, true)) }
}

/// The bits of the next `f16` after finite `h`, upward or downward.
fn step(h: f16, up: bool) -> u16 {
    let b = h.to_bits();
    let negative = b & 0x8000 != 0;
    let magnitude = b & 0x7fff;
    if magnitude == 0 {
        // ±0: the smallest subnormal of the direction's sign
        return if up { 0x0001 } else { 0x8001 };
    }
    if up != negative { b + 1 } else { b - 1 }
}

/// The row's quantization range `[lo, hi]` as stored.
pub(crate) fn range(lp: &[f32]) -> (f16, f16) {
    let hi = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lo = lp.iter().copied().fold(f32::INFINITY, f32::min).max(hi - SPAN);
    (f16_down(lo), f16_up(hi))
}

/// Encodes one row (indices `ix`, log-probabilities `lp`, any order) at `bits` bits per value; returns the stored
/// range. `order` is scratch.
pub(crate) fn encode_row(
    ix: &[u32],
    lp: &[f32],
    bits: u32,
    order: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> (f16, f16) {
    order.clear();
    order.extend(0..ix.len());
    order.sort_unstable_by_key(|&j| ix[j]);
    let gap = |n: usize| -> u64 {
        let i = u64::from(ix[order[n]]);
        if n == 0 { i } else { i - u64::from(ix[order[n - 1]]) - 1 }
    };
    let gaps: Vec<u64> = (0..order.len()).map(gap).collect();
    let (lo, hi) = range(lp);
    let (lo_f, hi_f) = (lo.to_f32(), hi.to_f32());
    let levels = ((1u64 << bits) - 1) as f32;
    let scale = if hi_f > lo_f { levels / (hi_f - lo_f) } else { 0.0 };
    let qs: Vec<u64> = order
        .iter()
        .map(|&j| ((lp[j].clamp(lo_f, hi_f) - lo_f) * scale).round().clamp(0.0, levels) as u64)
        .collect();
    let mut w = BitWriter::new(out);
    put_rice(&mut w, &gaps, 31);
    put_rice(&mut w, &qs, bits);
    w.finish();
    (lo, hi)
}

/// Writes the Rice parameter (5 bits, at most `max_param`) that makes `values` shortest, then the values.
fn put_rice(w: &mut BitWriter<'_>, values: &[u64], max_param: u32) {
    let cost = |r: u32| -> u64 { values.iter().map(|&v| (v >> r) + 1 + u64::from(r)).sum() };
    let r = (0..=max_param).min_by_key(|&r| cost(r)).expect("a parameter");
    w.put(u64::from(r), 5);
    for &v in values {
        w.put_unary(v >> r);
        w.put(v & ((1u64 << r) - 1), r);
    }
}

/// Reads one Rice-coded value with parameter `r`; its quotient is at most `max >> r`.
fn get_rice(rd: &mut BitReader<'_>, r: u32, max: u64) -> Result<u64, crate::bits::Truncated> {
    let q = rd.get_unary(max >> r)?;
    Ok(q << r | rd.get(r)?)
}

/// Decodes one row of `k` entries from `data` (exactly the row's bytes) into `ix`/`lp`, renormalized to the
/// stored `tail`. Errors say what failed.
pub(crate) fn decode_row(
    data: &[u8],
    vocab: usize,
    bits: u32,
    (lo, hi): (f16, f16),
    tail: f32,
    ix: &mut [u32],
    lp: &mut [f32],
) -> Result<(), String> {
    let k = ix.len();
    let (lo, hi) = (f64::from(lo.to_f32()), f64::from(hi.to_f32()));
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(format!("its range [{lo}, {hi}] is not an ordered pair of finite numbers"));
    }
    if tail.is_nan() || tail > 0.0 {
        return Err(format!("its tail log-mass {tail} is not ≤ 0"));
    }
    let short = |_| format!("its bit stream ends early ({} bytes)", data.len());
    let mut rd = BitReader::new(data);
    let r = rd.get(5).map_err(short)? as u32;
    let mut next = 0u64;
    for o in ix.iter_mut() {
        let i = next + get_rice(&mut rd, r, vocab as u64).map_err(short)?;
        if i >= vocab as u64 {
            return Err(format!("a class index {i} is not below the vocabulary size {vocab}"));
        }
        *o = i as u32;
        next = i + 1;
    }
    let top = (1u64 << bits) - 1;
    let step = (hi - lo) / top as f64;
    let sigma = rd.get(5).map_err(short)? as u32;
    if sigma > bits {
        return Err(format!("its level parameter {sigma} exceeds the {bits} value bits"));
    }
    let mut mass = 0f64;
    let mut vals = Vec::with_capacity(k);
    for _ in 0..k {
        let q = get_rice(&mut rd, sigma, top).map_err(short)?;
        if q > top {
            return Err(format!("a level {q} exceeds the {bits}-bit maximum {top}"));
        }
        let v = lo + q as f64 * step;
        mass += v.exp();
        vals.push(v);
    }
    if rd.bytes_used() != data.len() {
        return Err(format!("its bit stream holds {} bytes, {} are used", data.len(), rd.bytes_used()));
    }
    // top-k mass M = 1 − exp(tail), exactly as stored
    let target = -f64::from(tail).exp_m1();
    let shift = if mass > 0.0 && target > 0.0 { (target / mass).ln() } else { 0.0 };
    for (o, v) in lp.iter_mut().zip(vals) {
        *o = (v + shift) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounding_brackets_the_value() {
        for x in [-79.123f32, -0.3, -1e-3, 0.0, -11.7654, -65.5] {
            assert!(f16_down(x).to_f32() <= x && f16_up(x).to_f32() >= x, "{x}");
            assert!(f16_up(x).to_f32() - f16_down(x).to_f32() < 0.07, "{x}");
        }
    }

    #[test]
    fn a_row_round_trips_its_indices_exactly_and_its_values_within_half_a_level() {
        let ix = [70_000u32, 3, 128_255, 4, 900];
        let lp = [-1.7f32, -3.0, -9.5, -4.25, -2.1];
        let p: f64 = lp.iter().map(|&v| f64::from(v).exp()).sum();
        let tail = (1.0 - p).ln() as f32;
        let mut buf = Vec::new();
        let range = encode_row(&ix, &lp, 8, &mut Vec::new(), &mut buf);
        let (mut ix2, mut lp2) = ([0u32; 5], [0f32; 5]);
        decode_row(&buf, 128_256, 8, range, tail, &mut ix2, &mut lp2).unwrap();
        assert_eq!(ix2, [3, 4, 900, 70_000, 128_255]);
        let step = (range.1.to_f32() - range.0.to_f32()) / 255.0;
        for (j, want) in [-3.0f32, -4.25, -2.1, -1.7, -9.5].iter().enumerate() {
            assert!((lp2[j] - want).abs() <= step, "{j}: {} vs {want}", lp2[j]);
        }
        let p2: f64 = lp2.iter().map(|&v| f64::from(v).exp()).sum();
        assert!((p2 - p).abs() < 1e-6, "the top-k mass is the stored one: {p2} vs {p}");
    }

    #[test]
    fn damaged_streams_are_errors() {
        let ix = [5u32, 9];
        let lp = [-0.1f32, -2.5];
        let mut buf = Vec::new();
        let range = encode_row(&ix, &lp, 6, &mut Vec::new(), &mut buf);
        let (mut a, mut b) = ([0u32; 2], [0f32; 2]);
        assert!(
            decode_row(&buf[..buf.len() - 1], 10, 6, range, -1.0, &mut a, &mut b)
                .unwrap_err()
                .contains("ends early")
        );
        assert!(decode_row(&buf, 9, 6, range, -1.0, &mut a, &mut b).unwrap_err().contains("not below"));
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode_row(&longer, 10, 6, range, -1.0, &mut a, &mut b).unwrap_err().contains("are used"));
    }
}
