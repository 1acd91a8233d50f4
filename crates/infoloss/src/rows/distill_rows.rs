//! Distillation rows in `f64`: the reference implementation of one row of `distill`, `distill_topk` and
//! UDA's consistency term (forward and reverse KL, generalized JSD, total variation, the hard-label mix) and
//! the online log-sum-exp they are built from. The fused linear distillation reuses them per chunk.

use std::f64::consts::LN_2;

use crate::base::{Element, Real};
use crate::options::Divergence;
use ndarray::ArrayView1;

pub(crate) const NEG_INF: f64 = f64::NEG_INFINITY;

/// Per-row configuration shared by all rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowCfg {
    pub(crate) temp: f64,
    pub(crate) div: Divergence,
    pub(crate) soft_on: bool,
    pub(crate) ce_on: bool,
    pub(crate) add_tail: bool,
}

/// Per-worker scratch buffers (reused across rows).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) s: Vec<f64>,
    pub(crate) t: Vec<f64>,
    pub(crate) idx: Vec<usize>,
    pub(crate) mark: Vec<bool>,
    pub(crate) lp: Vec<f64>,
    pub(crate) lq: Vec<f64>,
    pub(crate) e: Vec<f64>,
    pub(crate) kept: KeptExps,
}

/// Widens a row into `out`.
#[inline]
pub(crate) fn gather<T: Element>(row: ArrayView1<'_, T>, out: &mut Vec<f64>) {
    out.clear();
    out.extend(row.iter().map(|x| x.to_acc().f64()));
}

/// Rows per parallel task: enough that a task touches ~32k elements.
#[inline]
pub(crate) fn min_rows_per_task(classes: usize) -> usize {
    (32_768 / classes.max(1)).max(1)
}

/// The per-row gradient destination: buffer, soft coefficient (already divided by T), CE coefficient.
pub(crate) type GradDst<'a> = Option<(&'a mut [f64], f64, f64)>;

/// Running log-sum-exp: `lse = m + ln z` with `z = Σ exp(x − m)` and `m` the running maximum
/// (the online softmax of Milakov & Gimelshein, 2018).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnlineLse {
    pub(crate) m: f64,
    pub(crate) z: f64,
}

impl OnlineLse {
    pub(crate) const EMPTY: OnlineLse = OnlineLse { m: NEG_INF, z: 0.0 };

    /// Adds `x`. Returns `(r, w)`: the factor by which the earlier terms were rescaled (1 if the
    /// maximum did not move) and the new term's weight `exp(x − m)` (0 for `x = −inf`, NaN for NaN).
    #[inline(always)]
    pub(crate) fn push(&mut self, x: f64) -> (f64, f64) {
        if x > self.m {
            let r = if self.m == NEG_INF { 0.0 } else { (self.m - x).exp() };
            self.z = self.z * r + 1.0;
            self.m = x;
            (r, 1.0)
        } else if x == NEG_INF {
            (1.0, 0.0)
        } else {
            let w = (x - self.m).exp();
            self.z += w;
            (1.0, w)
        }
    }

    /// `log Σ exp(x)`: −inf for no (or only −inf) terms, NaN if a term was NaN.
    #[inline]
    pub(crate) fn lse(&self) -> f64 {
        if self.z == 0.0 { NEG_INF } else { self.m + self.z.ln() }
    }
}

/// `(m, z)` with `m = max(x/temp)` and `z = Σ exp(x/temp − m)` in one online pass; `z` is NaN if an
/// element is NaN, 0 for no (or only `−inf`) elements.
pub(crate) fn online_sum_exp(x: &[f64], temp: f64) -> (f64, f64) {
    let mut acc = OnlineLse::EMPTY;
    for &v in x {
        acc.push(v / temp);
    }
    (acc.m, acc.z)
}

/// `log Σ exp(x_i / temp)` in one pass: −inf for no (or only −inf) terms, NaN if a term is NaN.
#[inline]
pub(crate) fn row_lse(x: &[f64], temp: f64) -> f64 {
    let mut acc = OnlineLse::EMPTY;
    for &v in x {
        acc.push(v / temp);
    }
    acc.lse()
}

/// One pass over a student row `s` and a teacher row `t`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairStats {
    /// `lse(s / ts)`.
    pub(crate) lse_s: f64,
    /// `lse(t / tt)`.
    pub(crate) lse_t: f64,
    /// `KL(q‖p)` with `q = softmax(t/tt)`, `p = softmax(s/ts)`.
    pub(crate) fkl: f64,
    /// `KL(p‖q)`.
    pub(crate) rkl: f64,
    /// `Σ exp(t/tt − max(t/tt))`, i.e. `1 / max(q)` when `tt = 1`.
    pub(crate) z_t: f64,
    /// `max(s/ts)`, `max(t/tt)` and `Σ exp(s/ts − max(s/ts))`: `p_i = exp(s_i/ts − max)/z_s` without
    /// the absorption of `ln z` into a huge `max` that `exp(s_i/ts − lse_s)` suffers.
    pub(crate) m_s: f64,
    pub(crate) m_t: f64,
    pub(crate) z_s: f64,
}

/// Block length of the fused pass: the running maxima advance once per block (the sums are rescaled
/// when they grow), and the exponentials inside a block are taken against that block's maxima.
pub(crate) const BLOCK: usize = 64;

/// `exp(x − m)`, with `x = −inf` giving 0 even when `m = −inf`; NaN propagates.
#[inline(always)]
pub(crate) fn exp_rel(x: f64, m: f64) -> f64 {
    if x == NEG_INF { 0.0 } else { (x - m).exp() }
}

/// Factor taking sums relative to the maximum `old` to the larger maximum `new`.
#[inline(always)]
pub(crate) fn rescale(old: f64, new: f64) -> f64 {
    if old == NEG_INF { 0.0 } else { (old - new).exp() }
}

/// The exponentials of the fused pass, kept for the gradient pass so that it needs no `exp` per
/// element: `ea[i] = exp(a_i − m_a(k))`, `eb[i] = exp(b_i − m_b(k))` with `m(k)` the running maxima
/// after block `k ∋ i`, so `p_i = ea[i]·exp(m_a(k) − lse(a))` and likewise `q_i`. Per-row scratch (two
/// rows of `f64`), reused across rows; never a full array.
#[derive(Debug, Default)]
pub(crate) struct KeptExps {
    pub(crate) ea: Vec<f64>,
    pub(crate) eb: Vec<f64>,
    pub(crate) m: Vec<[f64; 2]>,
}

/// The fused forward pass: with `a = s/ts`, `b = t/tt`, accumulates online (running maxima `m_a`,
/// `m_b`, sums rescaled whenever a maximum grows)
///
/// ```text
/// Z_a = Σ e^{a−m_a},  Z_b = Σ e^{b−m_b},  W_q = Σ e^{b−m_b}·(b − a),  W_p = Σ e^{a−m_a}·(a − b)
/// KL(q‖p) = W_q/Z_b − lse(b) + lse(a),    KL(p‖q) = W_p/Z_a − lse(a) + lse(b)
/// ```
///
/// (`E_q[b − a] = W_q/Z_b`). Terms whose weight is 0 (a `−inf` logit) are skipped: `0·log 0 = 0`.
/// With `keep`, the exponentials are also stored (see [`KeptExps`]).
pub(crate) fn pair_stats_keep(
    s: &[f64],
    t: &[f64],
    ts: f64,
    tt: f64,
    mut keep: Option<&mut KeptExps>,
) -> PairStats {
    if let Some(k) = keep.as_deref_mut() {
        k.ea.clear();
        k.eb.clear();
        k.m.clear();
    }
    let (mut ma, mut mb) = (NEG_INF, NEG_INF);
    let (mut za, mut zb, mut wq, mut wp) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut buf_a, mut buf_b) = ([0.0f64; BLOCK], [0.0f64; BLOCK]);
    let (mut exp_a, mut exp_b) = ([0.0f64; BLOCK], [0.0f64; BLOCK]);
    for (cs, ct) in s.chunks(BLOCK).zip(t.chunks(BLOCK)) {
        let n = cs.len().min(ct.len());
        let (mut ca, mut cb) = (NEG_INF, NEG_INF);
        for (((pa, pb), &x), &y) in buf_a.iter_mut().zip(buf_b.iter_mut()).zip(cs).zip(ct) {
            *pa = x / ts;
            *pb = y / tt;
            ca = ca.max(*pa);
            cb = cb.max(*pb);
        }
        if ca > ma {
            let r = rescale(ma, ca);
            za *= r;
            wp *= r;
            ma = ca;
        }
        if cb > mb {
            let r = rescale(mb, cb);
            zb *= r;
            wq *= r;
            mb = cb;
        }
        for (((&a, &b), ea_out), eb_out) in
            buf_a.iter().zip(buf_b.iter()).zip(exp_a.iter_mut()).zip(exp_b.iter_mut()).take(n)
        {
            let ea = exp_rel(a, ma);
            let eb = exp_rel(b, mb);
            za += ea;
            zb += eb;
            if eb != 0.0 {
                wq += eb * (b - a);
            }
            if ea != 0.0 {
                wp += ea * (a - b);
            }
            *ea_out = ea;
            *eb_out = eb;
        }
        if let Some(k) = keep.as_deref_mut() {
            k.ea.extend_from_slice(exp_a.get(..n).unwrap_or(&[]));
            k.eb.extend_from_slice(exp_b.get(..n).unwrap_or(&[]));
            k.m.push([ma, mb]);
        }
    }
    let lse = |m: f64, z: f64| if z == 0.0 { NEG_INF } else { m + z.ln() };
    let (lse_s, lse_t) = (lse(ma, za), lse(mb, zb));
    PairStats {
        lse_s,
        lse_t,
        fkl: wq / zb + lse_s - lse_t,
        rkl: wp / za + lse_t - lse_s,
        z_t: zb,
        m_s: ma,
        m_t: mb,
        z_s: za,
    }
}

/// [`pair_stats_keep`] without keeping the exponentials.
#[inline]
pub(crate) fn pair_stats(s: &[f64], t: &[f64], ts: f64, tt: f64) -> PairStats {
    pair_stats_keep(s, t, ts, tt, None)
}

/// `p_i` and `q_i` of a row from the kept exponentials, block by block, passed to `f(i, p_i, q_i)`.
#[inline(always)]
pub(crate) fn for_each_kept_pq(k: &KeptExps, st: &PairStats, mut f: impl FnMut(usize, f64, f64)) {
    let mut i = 0;
    for ((ea, eb), m) in k.ea.chunks(BLOCK).zip(k.eb.chunks(BLOCK)).zip(&k.m) {
        let fa = (m[0] - st.m_s).exp() / st.z_s;
        let fb = (m[1] - st.m_t).exp() / st.z_t;
        for (&x, &y) in ea.iter().zip(eb) {
            f(i, x * fa, y * fb);
            i += 1;
        }
    }
}

/// Forward-KL gradient from the kept exponentials: `out_i = coef·(p_i − q_i)`, plus, when `ce =
/// Some((y, c))` (temperature 1, so `softmax(s) = p`), the cross-entropy gradient `c·(p_i − [i = y])`.
pub(crate) fn fkl_grad_kept(
    k: &KeptExps,
    st: &PairStats,
    coef: f64,
    ce: Option<(usize, f64)>,
    out: &mut [f64],
) {
    let cc = ce.map_or(0.0, |(_, c)| c);
    for_each_kept_pq(k, st, |i, p, q| {
        if let Some(o) = out.get_mut(i) {
            *o = coef * (p - q) + cc * p;
        }
    });
    if let Some((y, c)) = ce {
        if let Some(o) = out.get_mut(y) {
            *o -= c;
        }
    }
}

/// Reverse-KL gradient from the kept exponentials: `out_i = coef·p_i·(a_i − b_i − (lse_a − lse_b) − KL(p‖q))`.
pub(crate) fn rkl_grad_kept(
    s: &[f64],
    t: &[f64],
    temp: f64,
    k: &KeptExps,
    st: &PairStats,
    coef: f64,
    out: &mut [f64],
) {
    let shift = st.lse_s - st.lse_t + st.rkl;
    for_each_kept_pq(k, st, |i, p, _| {
        if let (Some(o), Some(&x), Some(&y)) = (out.get_mut(i), s.get(i), t.get(i)) {
            *o = if p == 0.0 { 0.0 } else { coef * p * (x / temp - y / temp - shift) };
        }
    });
}

/// Gradient of `KL(q‖p)` wrt `s` times `coef·ts` (callers fold `1/ts` into `coef`):
/// `out_i = coef·(p_i − q_i)`.
pub(crate) fn fkl_grad(s: &[f64], t: &[f64], ts: f64, tt: f64, st: &PairStats, coef: f64, out: &mut [f64]) {
    for ((o, &x), &y) in out.iter_mut().zip(s).zip(t) {
        let p = (x / ts - st.lse_s).exp();
        let q = (y / tt - st.lse_t).exp();
        *o = coef * (p - q);
    }
}

/// `w·d` with `0·d = 0` (the `xlogy` convention).
#[inline(always)]
pub(crate) fn xl(w: f64, d: f64) -> f64 {
    if w == 0.0 { 0.0 } else { w * d }
}

/// `log(e^x + e^y)`, exact for infinite arguments, NaN if either is NaN.
#[inline(always)]
pub(crate) fn logaddexp(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    if lo == NEG_INF { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// `log(1 − e^x)` for `x ≤ 0` without cancellation; −inf for `x ≥ 0` (no mass left), 0 for `x = −inf`.
#[inline]
pub(crate) fn log1mexp(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x >= 0.0 {
        NEG_INF
    } else if x > -LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// Generalized JSD for `0 < β < 1` (loss, and gradient `coef·(1−β)·p·(log p − log m − KL(p‖m))`),
/// with `p`, `q` from pass 1's kept exponentials. This is pass 2 (the loss, storing `log p − log m`
/// in `out`) and pass 3 (the gradient).
pub(crate) fn jsd_row(
    s: &[f64],
    t: &[f64],
    temp: f64,
    kept: &KeptExps,
    st: &PairStats,
    beta: f64,
    grad: Option<(&mut [f64], f64)>,
) -> f64 {
    let (lb, l1b) = (beta.ln(), (-beta).ln_1p());
    let (mut loss, mut kpm) = (0.0f64, 0.0f64);
    let mut out = grad;
    for_each_kept_pq(kept, st, |i, p, q| {
        let (Some(&x), Some(&y)) = (s.get(i), t.get(i)) else { return };
        let lp = x / temp - st.lse_s;
        let lq = y / temp - st.lse_t;
        let lm = logaddexp(lq + lb, lp + l1b);
        let tq = xl(q, lq - lm);
        let tp = xl(p, lp - lm);
        loss += beta * tq + (1.0 - beta) * tp;
        kpm += tp;
        if let Some(o) = out.as_mut().and_then(|(o, _)| o.get_mut(i)) {
            *o = lp - lm;
        }
    });
    if let Some((o, coef)) = out {
        let c = coef * (1.0 - beta);
        for_each_kept_pq(kept, st, |i, p, _| {
            if let Some(g) = o.get_mut(i) {
                *g = if p == 0.0 { 0.0 } else { c * p * (*g - kpm) };
            }
        });
    }
    loss
}

/// `sign(d)/2` with `sign(0) = 0` and `sign(NaN) = 0`, as PyTorch's `abs` backward (`torch.sign(nan)`
/// is 0): a NaN teacher row gives a NaN loss but a zero gradient, as in torch. A NaN student row still
/// gets a NaN gradient, through `p`.
#[inline(always)]
pub(crate) fn half_sign(d: f64) -> f64 {
    if d > 0.0 {
        0.5
    } else if d < 0.0 {
        -0.5
    } else {
        0.0
    }
}

/// Total variation `½·Σ|p − q|`; gradient `coef·p·(σ − Σ_j p_j σ_j)` with `σ = ½·sign(p − q)`;
/// `p`, `q` from pass 1's kept exponentials.
pub(crate) fn tvd_row(kept: &KeptExps, st: &PairStats, grad: Option<(&mut [f64], f64)>) -> f64 {
    let (mut sum_abs, mut gsum) = (0.0f64, 0.0f64);
    let mut out = grad;
    for_each_kept_pq(kept, st, |i, p, q| {
        let d = p - q;
        sum_abs += d.abs();
        let sg = half_sign(d);
        gsum += p * sg;
        if let Some(o) = out.as_mut().and_then(|(o, _)| o.get_mut(i)) {
            *o = sg;
        }
    });
    if let Some((o, coef)) = out {
        for_each_kept_pq(kept, st, |i, p, _| {
            if let Some(g) = o.get_mut(i) {
                *g = coef * p * (*g - gsum);
            }
        });
    }
    0.5 * sum_abs
}

/// Adds the cross-entropy gradient `coef·(softmax(s) − onehot(y))` to `out`.
pub(crate) fn ce_grad_add(s: &[f64], lse1: f64, y: usize, coef: f64, out: &mut [f64]) {
    for (o, &x) in out.iter_mut().zip(s) {
        *o += coef * (x - lse1).exp();
    }
    if let Some(o) = out.get_mut(y) {
        *o -= coef;
    }
}

/// One dense row: `(soft divergence, cross-entropy)`; writes the row gradient when asked. Forward and
/// reverse KL keep the pass-1 exponentials (`kept`) so their gradient pass takes no `exp` per element.
pub(crate) fn dense_row(
    s: &[f64],
    t: &[f64],
    label: Option<usize>,
    cfg: &RowCfg,
    kept: &mut KeptExps,
    grad: GradDst<'_>,
) -> (f64, f64) {
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let temp = cfg.temp;
    let (mut out, soft_coef, ce_coef) = match grad {
        Some((o, a, b)) => (Some(o), a, b),
        None => (None, 0.0, 0.0),
    };
    let ce_label = if cfg.ce_on { label } else { None };
    let mut soft = 0.0;
    let mut lse_s1 = None;
    let mut ce_done = false;
    if cfg.soft_on {
        let div = match cfg.div {
            Divergence::GeneralizedJsd { beta: 0.0 } => Divergence::ForwardKl,
            Divergence::GeneralizedJsd { beta: 1.0 } => Divergence::ReverseKl,
            d => d,
        };
        // JSD and TVD always use the kept exponentials; FKL/RKL only in their gradient pass
        let keep =
            out.is_some() || matches!(div, Divergence::GeneralizedJsd { .. } | Divergence::TotalVariation);
        let st = pair_stats_keep(s, t, temp, temp, if keep { Some(&mut *kept) } else { None });
        if temp == 1.0 {
            lse_s1 = Some(st.lse_s);
        }
        soft = match div {
            Divergence::ForwardKl => {
                if let Some(o) = out.as_deref_mut() {
                    // at T = 1 the cross-entropy's softmax is p: fold its gradient into this pass
                    let fold = if temp == 1.0 { ce_label.map(|y| (y, ce_coef)) } else { None };
                    ce_done = fold.is_some();
                    fkl_grad_kept(kept, &st, soft_coef, fold, o);
                }
                st.fkl
            }
            Divergence::ReverseKl => {
                if let Some(o) = out.as_deref_mut() {
                    rkl_grad_kept(s, t, temp, kept, &st, soft_coef, o);
                }
                st.rkl
            }
            Divergence::GeneralizedJsd { beta } => {
                jsd_row(s, t, temp, kept, &st, beta, out.as_deref_mut().map(|o| (o, soft_coef)))
            }
            Divergence::TotalVariation => tvd_row(kept, &st, out.as_deref_mut().map(|o| (o, soft_coef))),
        };
    }
    let mut ce = 0.0;
    if let Some(y) = ce_label {
        let lse1 = lse_s1.unwrap_or_else(|| row_lse(s, 1.0));
        ce = lse1 - s.get(y).copied().unwrap_or(f64::NAN);
        if let (Some(o), false) = (out, ce_done) {
            ce_grad_add(s, lse1, y, ce_coef, o);
        }
    }
    (soft, ce)
}

/// Divergence between bucket distributions given as log-probabilities (`lp` student, `lq` teacher).
/// Returns the loss and writes `e_b = p_b·∂D/∂p_b` for every bucket.
pub(crate) fn bucket_divergence(lp: &[f64], lq: &[f64], div: Divergence, e: &mut Vec<f64>) -> f64 {
    e.clear();
    let div = match div {
        Divergence::GeneralizedJsd { beta: 0.0 } => Divergence::ForwardKl,
        Divergence::GeneralizedJsd { beta: 1.0 } => Divergence::ReverseKl,
        d => d,
    };
    let mut loss = 0.0f64;
    match div {
        Divergence::ForwardKl => {
            for (&p, &q) in lp.iter().zip(lq) {
                let qq = q.exp();
                loss += xl(qq, q - p);
                e.push(-qq);
            }
        }
        Divergence::ReverseKl => {
            for (&p, &q) in lp.iter().zip(lq) {
                let pp = p.exp();
                loss += xl(pp, p - q);
                e.push(xl(pp, p - q + 1.0));
            }
        }
        Divergence::GeneralizedJsd { beta } => {
            let (lb, l1b) = (beta.ln(), (-beta).ln_1p());
            for (&p, &q) in lp.iter().zip(lq) {
                let lm = logaddexp(q + lb, p + l1b);
                let tq = xl(q.exp(), q - lm);
                let tp = xl(p.exp(), p - lm);
                loss += beta * tq + (1.0 - beta) * tp;
                e.push((1.0 - beta) * tp);
            }
        }
        Divergence::TotalVariation => {
            for (&p, &q) in lp.iter().zip(lq) {
                let pp = p.exp();
                let d = pp - q.exp();
                loss += d.abs();
                e.push(pp * half_sign(d));
            }
            loss *= 0.5;
        }
    }
    loss
}

/// One row against a sparse teacher (`sc.s` student logits, `sc.idx` top-k classes, `sc.t` their
/// teacher log-probabilities, `sc.mark` all false on entry and exit).
///
/// Gradient: `∂D/∂s_i = (1/T)·(e_{b(i)}·p_i/p_{b(i)} − p_i·Σ_b e_b)`, `e_b = p_b·∂D/∂p_b`; for a top-k
/// class `p_i/p_b = 1`, for a tail class `p_i/p_tail = exp(s_i/T − lse_tail)`.
pub(crate) fn topk_row(
    sc: &mut Scratch,
    label: Option<usize>,
    cfg: &RowCfg,
    grad: GradDst<'_>,
) -> (f64, f64) {
    let temp = cfg.temp;
    let (mut out, soft_coef, ce_coef) = match grad {
        Some((o, a, b)) => (Some(o), a, b),
        None => (None, 0.0, 0.0),
    };
    let Scratch { s, t: lq_in, idx, mark, lp, lq, e, .. } = sc;
    let s: &[f64] = s;
    let mut soft = 0.0;
    let mut lse_s1 = None;
    if cfg.soft_on {
        let lse_s = row_lse(s, temp);
        if temp == 1.0 {
            lse_s1 = Some(lse_s);
        }
        lp.clear();
        lq.clear();
        for (&i, &q) in idx.iter().zip(lq_in.iter()) {
            lp.push(s.get(i).map_or(f64::NAN, |&x| x / temp - lse_s));
            lq.push(q);
        }
        let mut lse_tail = NEG_INF;
        // With every class among the top-k there is no tail bucket at all: the teacher's "missing"
        // mass is only the rounding of its log-probabilities, and comparing it against an empty
        // student tail would give +inf where the loss is the dense one.
        let mut has_tail = false;
        if cfg.add_tail {
            for &i in idx.iter() {
                if let Some(m) = mark.get_mut(i) {
                    *m = true;
                }
            }
            let mut acc = OnlineLse::EMPTY;
            for (&x, &m) in s.iter().zip(mark.iter()) {
                if !m {
                    has_tail = true;
                    acc.push(x / temp);
                }
            }
            if has_tail {
                lse_tail = acc.lse();
                lp.push(lse_tail - lse_s);
                lq.push(log1mexp(row_lse(lq_in, 1.0)));
            }
        }
        soft = bucket_divergence(lp, lq, cfg.div, e);
        if let Some(o) = out.as_deref_mut() {
            let gsum: f64 = e.iter().sum();
            let e_tail = if has_tail { e.last().copied().unwrap_or(0.0) } else { 0.0 };
            let tail_on = has_tail && e_tail != 0.0 && lse_tail > NEG_INF;
            for ((g, &x), &m) in o.iter_mut().zip(s).zip(mark.iter()) {
                let a = x / temp;
                let p = (a - lse_s).exp();
                let mut v = -p * gsum;
                if tail_on && !m {
                    v += e_tail * (a - lse_tail).exp();
                }
                *g = soft_coef * v;
            }
            for ((&i, &eb), &lpb) in idx.iter().zip(e.iter()).zip(lp.iter()) {
                if let Some(g) = o.get_mut(i) {
                    *g = soft_coef * (eb - lpb.exp() * gsum);
                }
            }
        }
        if cfg.add_tail {
            for &i in idx.iter() {
                if let Some(m) = mark.get_mut(i) {
                    *m = false;
                }
            }
        }
    }
    let mut ce = 0.0;
    if let (true, Some(y)) = (cfg.ce_on, label) {
        let lse1 = lse_s1.unwrap_or_else(|| row_lse(s, 1.0));
        ce = lse1 - s.get(y).copied().unwrap_or(f64::NAN);
        if let Some(o) = out {
            ce_grad_add(s, lse1, y, ce_coef, o);
        }
    }
    (soft, ce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_lse_matches_direct() {
        let x = [0.3, -2.0, 5.0, 1.0, NEG_INF, 4.9];
        let direct = x.iter().map(|v| (v - 5.0f64).exp()).sum::<f64>().ln() + 5.0;
        assert!((row_lse(&x, 1.0) - direct).abs() < 1e-15);
        assert_eq!(row_lse(&[NEG_INF, NEG_INF], 1.0), NEG_INF);
        assert!(row_lse(&[1.0, f64::NAN], 1.0).is_nan());
    }

    #[test]
    fn fused_kl_matches_two_pass() {
        let s = [0.5, -1.0, 2.0, 0.0, 3.5];
        let t = [1.5, 0.2, -0.7, 2.2, 0.1];
        let temp = 1.7;
        let st = pair_stats(&s, &t, temp, temp);
        let ls = row_lse(&s, temp);
        let lt = row_lse(&t, temp);
        let (mut fkl, mut rkl) = (0.0, 0.0);
        for (&x, &y) in s.iter().zip(&t) {
            let (lp, lq) = (x / temp - ls, y / temp - lt);
            fkl += lq.exp() * (lq - lp);
            rkl += lp.exp() * (lp - lq);
        }
        assert!((st.fkl - fkl).abs() < 1e-15, "{} {}", st.fkl, fkl);
        assert!((st.rkl - rkl).abs() < 1e-15);
        assert!((st.lse_s - ls).abs() < 1e-15);
    }

    #[test]
    fn log1mexp_branches() {
        assert_eq!(log1mexp(0.0), NEG_INF);
        assert_eq!(log1mexp(NEG_INF), 0.0);
        assert!((log1mexp(-0.1) - (1.0 - (-0.1f64).exp()).ln()).abs() < 1e-15);
        assert!((log1mexp(-3.0) - (1.0 - (-3.0f64).exp()).ln()).abs() < 1e-15);
    }

    #[test]
    fn logaddexp_edges() {
        assert_eq!(logaddexp(NEG_INF, NEG_INF), NEG_INF);
        assert_eq!(logaddexp(NEG_INF, 1.5), 1.5);
        assert!((logaddexp(0.0, 0.0) - LN_2).abs() < 1e-16);
        assert!(logaddexp(f64::NAN, 0.0).is_nan() && logaddexp(0.0, f64::NAN).is_nan());
    }
}
