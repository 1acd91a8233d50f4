#!/usr/bin/env python3
"""Fixtures for infoloss's distillation and UDA losses, computed by PyTorch (forward and autograd gradient).

Writes testdata/distill.json (dense and top-k distillation) and testdata/uda.json (UDA consistency) in the common
fixture schema (testdata/README.md; `to_schema` below maps the values onto it). Every case holds its inputs
(float32 cases store float32-exact values), the "exact" result as `expected` (the same PyTorch code run in float64
on the same upcast inputs) and, for float32 cases, the result PyTorch computes in float32 as an `also_expected`
entry with its own, wider tolerance (PyTorch rounds every intermediate). For float64 cases the two coincide.

    python scripts/gen_fixtures_distill.py            # with torch 2.15

Each loss is written as the PyTorch expression users write:

- forward KL:  F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1), reduction=..., log_target=True) * T**2
- reverse KL:  F.kl_div(lq, lp, reduction='none', log_target=True)
- generalized JSD: TRL's GKDTrainer.generalized_jsd_loss (beta == 0 / 1 special-cased as forward / reverse KL)
- total variation: 0.5 * (lp.exp() - lq.exp()).abs()
- hard+soft: alpha * soft + (1 - alpha) * F.cross_entropy(s, labels, ignore_index=...)
- top-k: the same divergences over the buckets (top-k classes [+ tail]) built densely with gather/logsumexp
- UDA: the articles' PyTorch code (softmax / confidence mask under no_grad, KLDivLoss(reduction='none').sum(-1),
  masked sum / max(count, 1)) and Google's target-sharpening variant. Every UDA case also holds the gradient for a
  non-unit upstream gradient (`upstream`; `loss.backward(upstream)` by autograd): `grad_upstream` (float64) and
  `grad_upstream_torch` (the case's dtype).
"""
import json
import math
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "testdata")
DTYPES = {"f32": torch.float32, "f64": torch.float64}
GEN = torch.Generator().manual_seed(20240611)


def enc(x):
    """Flat list of floats, non-finite as strings."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float64).reshape(-1).tolist()
    elif not isinstance(x, list):
        x = [x]
    out = []
    for v in x:
        v = float(v)
        if math.isnan(v):
            out.append("nan")
        elif math.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


def randn(rows, cols, dtype, scale=2.0):
    return (torch.randn(rows, cols, generator=GEN, dtype=torch.float64) * scale).to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Distillation references
# ---------------------------------------------------------------------------------------------------------------


def divergence_elements(lp, lq, div, beta):
    """Per-element divergence terms between student log-probs lp and teacher log-probs lq (rows x buckets)."""
    if div == "forward_kl" or (div == "jsd" and beta == 0.0):
        return F.kl_div(lp, lq, reduction="none", log_target=True)
    if div == "reverse_kl" or (div == "jsd" and beta == 1.0):
        return F.kl_div(lq, lp, reduction="none", log_target=True)
    if div == "jsd":
        # TRL GKDTrainer.generalized_jsd_loss
        b = torch.tensor(beta, dtype=lp.dtype)
        mixture = torch.logsumexp(torch.stack([lp + torch.log1p(-b), lq + torch.log(b)]), dim=0)
        kl_teacher = F.kl_div(mixture, lq, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture, lp, reduction="none", log_target=True)
        return b * kl_teacher + (1 - b) * kl_student
    if div == "tvd":
        return 0.5 * (lp.exp() - lq.exp()).abs()
    raise ValueError(div)


def combine(el, s, labels, o, classes, lp_kept=None, lq_kept=None):
    """Reduce per-element soft terms `el` (rows x buckets) and mix with cross-entropy, as infoloss defines it."""
    rows = s.shape[0]
    T, alpha, red, nz = o["temperature"], o["alpha"], o["reduction"], o["normalizer"]
    c = T * T if o["t2_scaling"] else 1.0
    ii = o["ignore_index"]
    keep = (labels != ii) if labels is not None else torch.ones(rows, dtype=torch.bool)
    n = float(keep.sum()) if nz is None else nz
    soft_rows = el.sum(1)
    soft = None
    if alpha > 0:
        if red == "none":
            soft = torch.where(keep, soft_rows, torch.zeros_like(soft_rows))
        elif lp_kept is not None and nz is None:
            # forward KL: exactly F.kl_div's own reduction over the kept rows
            soft = F.kl_div(lp_kept, lq_kept, reduction=red, log_target=True)
        else:
            total = soft_rows[keep].sum()
            soft = {"sum": total, "batchmean": total / n, "mean": total / (n * classes)}[red]
    ce = None
    if alpha < 1:
        if red == "none":
            ce = F.cross_entropy(s, labels, ignore_index=ii, reduction="none")
        elif nz is None:
            ce = F.cross_entropy(s, labels, ignore_index=ii, reduction="sum" if red == "sum" else "mean")
        else:
            ce = F.cross_entropy(s, labels, ignore_index=ii, reduction="sum") / nz
    if soft is None:
        return (1 - alpha) * ce
    if ce is None:
        return alpha * soft * c
    return alpha * soft * c + (1 - alpha) * ce


def distill_ref(s, t, labels, o):
    T = o["temperature"]
    lp = F.log_softmax(s / T, dim=1)
    if o.get("teacher_probs"):
        # teacher logits with -inf: KL via probability targets (xlogy(0, 0) = 0), log_target=False
        q = F.softmax(t / T, dim=1)
        el = F.kl_div(lp, q, reduction="none")
        return combine(el, s, labels, o, s.shape[1])
    lq = F.log_softmax(t / T, dim=1)
    el = divergence_elements(lp, lq, o["divergence"], o["beta"])
    rows = s.shape[0]
    keep = (labels != o["ignore_index"]) if labels is not None else torch.ones(rows, dtype=torch.bool)
    if o["divergence"] == "forward_kl":
        return combine(el, s, labels, o, s.shape[1], lp[keep], lq[keep])
    return combine(el, s, labels, o, s.shape[1])


def log1mexp(x):
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def sparse_buckets(s, T, idx, lqk, add_tail):
    """Student and teacher log-probabilities over the top-k buckets `idx` (teacher log-probabilities `lqk`), plus
    the tail bucket of the remaining mass with `add_tail` (also used by gen_fixtures_linear.py)."""
    a = s / T
    lse = torch.logsumexp(a, dim=1)
    lp = a.gather(1, idx) - lse[:, None]
    lq = lqk
    in_topk = torch.zeros(s.shape, dtype=torch.bool).scatter(1, idx, True)
    if add_tail and bool(in_topk.all()):
        # every class is among the top-k: the tail is empty and there is no tail bucket (the teacher's
        # leftover mass is only the rounding of its log-probabilities)
        add_tail = False
    assert not (add_tail and bool(in_topk.all(1).any())), "rows with and without a tail in one case"
    if add_tail:
        lp_tail = torch.logsumexp(a.masked_fill(in_topk, -math.inf), dim=1) - lse
        lq_tail = log1mexp(torch.logsumexp(lqk, dim=1))
        lp = torch.cat([lp, lp_tail[:, None]], dim=1)
        lq = torch.cat([lq, lq_tail[:, None]], dim=1)
    return lp, lq


def topk_ref(s, idx, lqk, add_tail, labels, o):
    lp, lq = sparse_buckets(s, o["temperature"], idx, lqk, add_tail)
    el = divergence_elements(lp, lq, o["divergence"], o["beta"])
    return combine(el, s, labels, o, s.shape[1])


def run(fn, s, upstream):
    s = s.detach().clone().requires_grad_()
    loss = fn(s)
    if upstream is None:
        loss.backward()
    else:
        (loss * upstream).sum().backward()
    return loss.detach(), s.grad.detach()


def options(**kw):
    o = dict(temperature=1.0, t2_scaling=True, divergence="forward_kl", beta=0.0, alpha=1.0, ignore_index=-100,
             reduction="batchmean", normalizer=None)
    o.update(kw)
    return o


def make_labels(rows, classes, pattern, dtype_gen=GEN):
    if pattern is None:
        return None
    y = torch.randint(0, classes, (rows,), generator=dtype_gen)
    if pattern == "ignored" and rows > 1:
        y[1] = -100
        if rows > 3:
            y[3] = -100
    if pattern == "all_ignored":
        y[:] = -100
    return y


def distill_case(name, dtype, s, t, labels, o, upstream=None, topk=None):
    """Evaluate in dtype and exactly (float64 on the same inputs)."""
    def fn_for(dt):
        if topk is None:
            tt = t.to(dt)
            return lambda x: distill_ref(x, tt, labels, o)
        idx, lqk, tail = topk
        lq_dt = lqk.to(dt)
        return lambda x: topk_ref(x, idx, lq_dt, tail, labels, o)

    up64 = None if upstream is None else upstream.to(torch.float64)
    up_dt = None if upstream is None else upstream.to(DTYPES[dtype])
    loss_t, grad_t = run(fn_for(DTYPES[dtype]), s, up_dt)
    loss_x, grad_x = run(fn_for(torch.float64), s.to(torch.float64), up64)
    case = {
        "name": name,
        "dtype": dtype,
        "shape": list(s.shape),
        "student": enc(s),
        "teacher": None if t is None else enc(t),
        "labels": None if labels is None else labels.tolist(),
        "options": o,
        "upstream": None if upstream is None else enc(upstream),
        "loss": enc(loss_x),
        "grad": enc(grad_x),
        "loss_torch": enc(loss_t),
        "grad_torch": enc(grad_t),
    }
    if topk is not None:
        idx, lqk, tail = topk
        case["topk"] = {"k": int(idx.shape[1]), "indices": idx.reshape(-1).tolist(), "logprobs": enc(lqk),
                        "add_tail": tail}
    return case


def distill_cases():
    cases = []
    divs = [("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.0), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9),
            ("jsd", 1.0), ("tvd", 0.0)]
    reductions = ["batchmean", "mean", "sum", "none"]
    temps = [1.0, 2.0, 0.5, 4.0, 1.5]
    shapes = [(4, 7), (5, 10), (3, 33), (6, 4), (1, 5)]
    mixes = [(None, 1.0), ("ignored", 0.5), ("plain", 0.3), ("ignored", 1.0), ("plain", 0.0), ("ignored", 0.7)]
    i = 0
    for dtype in ["f32", "f64"]:
        for div, beta in divs:
            for red in reductions:
                rows, classes = shapes[i % len(shapes)]
                T = temps[i % len(temps)]
                pattern, alpha = mixes[i % len(mixes)]
                if rows == 1 and pattern == "ignored":
                    pattern = "plain"
                t2 = i % 3 != 1
                nz = None
                if red in ("batchmean", "mean") and i % 4 == 0:
                    nz = 13.0
                dt = DTYPES[dtype]
                s = randn(rows, classes, dt)
                t = randn(rows, classes, dt)
                labels = make_labels(rows, classes, pattern)
                o = options(temperature=T, t2_scaling=t2, divergence=div, beta=beta, alpha=alpha, reduction=red,
                            normalizer=nz)
                upstream = randn(rows, 1, dt, 1.0).reshape(-1) if red == "none" else None
                name = f"dense_{dtype}_{div}{beta if div == 'jsd' else ''}_{red}_T{T}_a{alpha}_{pattern}"
                cases.append(distill_case(name, dtype, s, t, labels, o, upstream))
                i += 1
    # edge cases
    for dtype in ["f32", "f64"]:
        dt = DTYPES[dtype]
        # teacher with -inf logits: those classes contribute 0 (kl_div with probability targets)
        s = randn(3, 6, dt)
        t = randn(3, 6, dt)
        t[0, 2] = -math.inf
        t[2, 0] = -math.inf
        t[2, 5] = -math.inf
        o = options(temperature=2.0, teacher_probs=True)
        cases.append(distill_case(f"edge_{dtype}_teacher_neg_inf", dtype, s, t, None, o))
        # one class: every divergence is 0, gradient 0; the CE is 0 too
        s = randn(3, 1, dt)
        t = randn(3, 1, dt)
        labels = torch.zeros(3, dtype=torch.long)
        cases.append(distill_case(f"edge_{dtype}_one_class", dtype, s, t, labels, options(alpha=0.5)))
        # all rows ignored: NaN loss (0/0), zero gradient
        s = randn(3, 4, dt)
        t = randn(3, 4, dt)
        labels = torch.full((3,), -100, dtype=torch.long)
        cases.append(distill_case(f"edge_{dtype}_all_ignored", dtype, s, t, labels, options(alpha=0.5)))
        # custom ignore_index, identical student and teacher (soft part 0)
        s = randn(4, 5, dt)
        labels = torch.tensor([1, 7, 0, 4])
        o = options(alpha=0.25, ignore_index=7, temperature=3.0, reduction="sum")
        cases.append(distill_case(f"edge_{dtype}_student_eq_teacher", dtype, s, s.clone(), labels, o))
        # large logits (stability): scale 60
        s = randn(3, 9, dt, 60.0)
        t = randn(3, 9, dt, 60.0)
        for div, beta in [("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.5), ("tvd", 0.0)]:
            o = options(divergence=div, beta=beta, temperature=2.0)
            cases.append(distill_case(f"edge_{dtype}_large_logits_{div}{beta}", dtype, s, t, None, o))
    # top-k teacher
    j = 0
    for dtype in ["f32", "f64"]:
        dt = DTYPES[dtype]
        for div, beta in [("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.5), ("jsd", 0.2), ("tvd", 0.0)]:
            for tail in [False, True]:
                rows, classes, k = [(4, 12, 3), (5, 9, 4), (3, 20, 6)][j % 3]
                T = [1.0, 2.0, 0.7][j % 3]
                pattern, alpha = [(None, 1.0), ("ignored", 0.6), ("plain", 1.0), ("ignored", 1.0)][j % 4]
                red = ["batchmean", "sum", "mean", "none"][j % 4]
                s = randn(rows, classes, dt)
                t = randn(rows, classes, dt)
                lq_full = F.log_softmax(t / T, dim=1)
                idx = torch.topk(t, k, dim=1).indices
                lqk = lq_full.gather(1, idx)
                labels = make_labels(rows, classes, pattern)
                o = options(temperature=T, divergence=div, beta=beta, alpha=alpha, reduction=red,
                            t2_scaling=j % 2 == 0)
                upstream = randn(rows, 1, dt, 1.0).reshape(-1) if red == "none" else None
                name = f"topk_{dtype}_{div}{beta if div == 'jsd' else ''}_tail{tail}_{red}_k{k}"
                cases.append(distill_case(name, dtype, s, None, labels, o, upstream, (idx, lqk, tail)))
                j += 1
        # k = V, no tail: must equal the dense loss (indices in a shuffled order)
        for div, beta in [("forward_kl", 0.0), ("jsd", 0.3)]:
            s = randn(4, 8, dt)
            t = randn(4, 8, dt)
            idx = torch.stack([torch.randperm(8, generator=GEN) for _ in range(4)])
            lqk = F.log_softmax(t, dim=1).gather(1, idx)
            o = options(divergence=div, beta=beta)
            c = distill_case(f"topk_{dtype}_kV_{div}", dtype, s, None, None, o, None, (idx, lqk, False))
            c["dense_teacher"] = enc(t)
            cases.append(c)
    cases += empty_tail_and_nan_teacher_cases()
    return cases


def empty_tail_and_nan_teacher_cases():
    """k = V with the tail bucket asked for (the tail is empty: the loss is the dense one, never +inf), and the
    TVD of a NaN teacher row (torch's abs backward takes sign(nan) = 0: NaN loss, zero gradient row). A
    generator of their own, so the cases before them keep their values."""
    gen = torch.Generator().manual_seed(2424)
    rnd = lambda r, c, dt, sc=2.0: (torch.randn(r, c, generator=gen, dtype=torch.float64) * sc).to(dt)
    cases = []
    for dtype in ["f32", "f64"]:
        dt = DTYPES[dtype]
        for div, beta in [("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.3), ("tvd", 0.0)]:
            for T, labels_on in [(1.0, False), (2.0, True)]:
                s = rnd(4, 6, dt)
                t = rnd(4, 6, dt)
                idx = torch.stack([torch.randperm(6, generator=gen) for _ in range(4)])
                lqk = F.log_softmax(t / T, dim=1).gather(1, idx)
                labels = torch.randint(0, 6, (4,), generator=gen) if labels_on else None
                o = options(divergence=div, beta=beta, temperature=T, alpha=0.6 if labels_on else 1.0)
                c = distill_case(f"topk_{dtype}_kV_tail_{div}_T{T}", dtype, s, None, labels, o, None,
                                 (idx, lqk, True))
                c["dense_teacher"] = enc(t)
                cases.append(c)
        for red, alpha in [("batchmean", 1.0), ("none", 1.0), ("sum", 0.5)]:
            s = rnd(3, 5, dt)
            t = rnd(3, 5, dt)
            t[1, 2] = math.nan
            labels = torch.tensor([0, 3, 4]) if alpha < 1 else None
            o = options(divergence="tvd", temperature=2.0, alpha=alpha, reduction=red)
            up = rnd(3, 1, dt, 1.0).reshape(-1) if red == "none" else None
            cases.append(distill_case(f"edge_{dtype}_tvd_nan_teacher_row_{red}", dtype, s, t, labels, o, up))
    return cases


# ---------------------------------------------------------------------------------------------------------------
# UDA (the articles' PyTorch code, and Google's target sharpening)
# ---------------------------------------------------------------------------------------------------------------


def uda_ref(ori_logits, aug_logits, T, sharpen, thresh, normalize):
    dtype = ori_logits.dtype
    rows = ori_logits.shape[0]
    with torch.no_grad():
        ori_prob = F.softmax(ori_logits, dim=-1)
        if thresh is not None:
            unsup_loss_mask = torch.max(ori_prob, dim=-1)[0] > thresh
            unsup_loss_mask = unsup_loss_mask.type(dtype)
        else:
            unsup_loss_mask = torch.ones(rows, dtype=dtype)
        if sharpen == "target":
            target = F.softmax(ori_logits / T, dim=-1)  # Google UDA: sharpen the (no-grad) target
        else:
            target = ori_prob
    uda_softmax_temp = T if sharpen == "augmented" else 1.0
    aug_log_prob = F.log_softmax(aug_logits / uda_softmax_temp, dim=-1)
    unsup_criterion = nn.KLDivLoss(reduction="none")
    row_kl = torch.sum(unsup_criterion(aug_log_prob, target), dim=-1)
    if normalize == "kept_rows":
        loss = torch.sum(row_kl * unsup_loss_mask, dim=-1) / torch.max(
            torch.sum(unsup_loss_mask, dim=-1), torch.tensor(1.0, dtype=dtype))
    else:
        loss = torch.mean(row_kl * unsup_loss_mask)
    return loss, row_kl.detach(), unsup_loss_mask


# Non-unit upstream gradients of the UDA cases (`loss.backward(upstream)`), picked by the case name.
UDA_UPSTREAMS = [-1.75, 0.3, 2.5, -0.625, 7.0]


def uda_case(name, dtype, ori, aug, T, sharpen, thresh, normalize):
    def ev(o, a, upstream=None):
        a = a.detach().clone().requires_grad_()
        loss, row_kl, mask = uda_ref(o, a, T, sharpen, thresh, normalize)
        if upstream is None:
            loss.backward()
        else:
            loss.backward(torch.tensor(upstream, dtype=loss.dtype))
        return loss.detach(), a.grad.detach(), row_kl, mask

    l_t, g_t, r_t, m_t = ev(ori, aug)
    l_x, g_x, r_x, m_x = ev(ori.to(torch.float64), aug.to(torch.float64))
    assert torch.equal(m_t.to(torch.float64), m_x), name
    up = UDA_UPSTREAMS[sum(name.encode()) % len(UDA_UPSTREAMS)]
    gu_t = ev(ori, aug, up)[1]
    gu_x = ev(ori.to(torch.float64), aug.to(torch.float64), up)[1]
    return {
        "name": name,
        "dtype": dtype,
        "shape": list(ori.shape),
        "ori": enc(ori),
        "aug": enc(aug),
        "options": {"temperature": T, "sharpen": sharpen, "confidence_threshold": thresh, "normalize": normalize},
        "loss": enc(l_x),
        "grad": enc(g_x),
        "row_kl": enc(r_x),
        "mask": enc(m_x),
        "kept": int(m_x.sum()),
        "loss_torch": enc(l_t),
        "grad_torch": enc(g_t),
        "row_kl_torch": enc(r_t),
        # the gradient for the upstream gradient `upstream` (loss.backward(upstream))
        "upstream": up,
        "grad_upstream": enc(gu_x),
        "grad_upstream_torch": enc(gu_t),
    }


def uda_logits(rows, classes, dt, thresh):
    """Random logits whose max softmax is not within 1e-3 of the threshold (so f32 and f64 masks agree)."""
    while True:
        ori = randn(rows, classes, dt, 1.5)
        if thresh is None:
            return ori
        mp = F.softmax(ori.to(torch.float64), dim=-1).max(dim=-1)[0]
        if bool(((mp - thresh).abs() > 1e-3).all()):
            return ori


def uda_cases():
    cases = []
    i = 0
    shapes = [(6, 5), (8, 10), (5, 3), (7, 16)]
    for dtype in ["f32", "f64"]:
        dt = DTYPES[dtype]
        for sharpen in ["target", "augmented"]:
            for thresh in [None, 0.5, 0.8]:
                for normalize in ["kept_rows", "all_rows"]:
                    rows, classes = shapes[i % len(shapes)]
                    T = [0.4, 1.0, 2.0, 0.85][i % 4]
                    ori = uda_logits(rows, classes, dt, thresh)
                    aug = ori + randn(rows, classes, dt, 0.7)
                    name = f"uda_{dtype}_{sharpen}_T{T}_thr{thresh}_{normalize}"
                    cases.append(uda_case(name, dtype, ori, aug, T, sharpen, thresh, normalize))
                    i += 1
        # every row masked out: loss 0 (kept_rows) / 0 (all_rows), zero gradient
        ori = torch.zeros(3, 4, dtype=dt)
        aug = randn(3, 4, dt)
        for normalize in ["kept_rows", "all_rows"]:
            cases.append(uda_case(f"uda_{dtype}_all_masked_{normalize}", dtype, ori, aug, 0.4, "target", 0.9,
                                  normalize))
        # identical inputs, no temperature: KL 0
        ori = randn(4, 6, dt)
        cases.append(uda_case(f"uda_{dtype}_identical", dtype, ori, ori.clone(), 1.0, "augmented", None,
                              "kept_rows"))
        # empty batch: kept_rows gives 0/1 = 0, all_rows NaN
        ori = torch.zeros(0, 4, dtype=dt)
        for normalize in ["kept_rows", "all_rows"]:
            cases.append(uda_case(f"uda_{dtype}_empty_{normalize}", dtype, ori, ori.clone(), 0.4, "target", 0.5,
                                  normalize))
    return cases


# float64 results are compared with the exact value at atol 1e-13 (one order tighter than the other files)
TOLERANCES = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


def torch_f32_tolerance(name):
    """PyTorch's own float32 result is further from the exact value than infoloss's: within 1.05x (rtol 1e-6,
    atol 1e-7) of it for ordinary logits, 21x for the logits of scale 60 (`large_logits`), where each float32
    log-probability of size ~45 carries an absolute rounding error of ~4e-6."""
    return {"rtol": 5e-5, "atol": 5e-6} if "large_logits" in name else {"rtol": 2e-6, "atol": 2e-7}


def to_schema(c):
    """One case of this generator in the common layout (scripts/fixture_schema.py)."""
    rec = fixture_schema.record
    dtype = {"f32": "float32", "f64": "float64"}[c["dtype"]]
    rows, cols = c["shape"]
    out = {"name": c["name"], "dtype": dtype}
    torch_f32 = {}
    if "ori" in c:  # UDA consistency
        out["function"] = "uda_consistency"
        out["inputs"] = {"ori": rec(c["shape"], c["ori"]), "aug": rec(c["shape"], c["aug"])}
        out["options"] = c["options"]
        out["grad_output"] = rec([], enc(c["upstream"]))
        out["expected"] = {
            "output": rec([], c["loss"]),
            "grad_input": rec(c["shape"], c["grad_upstream"]),
            "grad_input_unit": rec(c["shape"], c["grad"]),
            "row_kl": rec([rows], c["row_kl"]),
            "mask": rec([rows], c["mask"]),
            "kept": rec([], [c["kept"]], integer=True),
        }
        torch_f32 = {
            "output": rec([], c["loss_torch"]),
            "grad_input": rec(c["shape"], c["grad_upstream_torch"]),
            "grad_input_unit": rec(c["shape"], c["grad_torch"]),
            "row_kl": rec([rows], c["row_kl_torch"]),
        }
    else:
        inputs = {"student": rec(c["shape"], c["student"])}
        tk = c.get("topk")
        if tk is None:
            out["function"] = "distill"
            inputs["teacher"] = rec(c["shape"], c["teacher"])
            options = dict(c["options"])
        else:
            out["function"] = "distill_topk"
            inputs["topk_indices"] = rec([rows, tk["k"]], tk["indices"], integer=True)
            inputs["topk_logprobs"] = rec([rows, tk["k"]], tk["logprobs"])
            if "dense_teacher" in c:
                inputs["dense_teacher"] = rec(c["shape"], c["dense_teacher"])
            options = dict(c["options"], add_tail=tk["add_tail"])
        if c["labels"] is not None:
            inputs["labels"] = rec([rows], c["labels"], integer=True)
        out["inputs"] = inputs
        out["options"] = options
        loss_shape = [rows] if options["reduction"] == "none" else []
        out["grad_output"] = None if c["upstream"] is None else rec(loss_shape, c["upstream"])
        out["expected"] = {"output": rec(loss_shape, c["loss"]), "grad_input": rec(c["shape"], c["grad"])}
        torch_f32 = {"output": rec(loss_shape, c["loss_torch"]), "grad_input": rec(c["shape"], c["grad_torch"])}
    if dtype == "float32":
        out["also_expected"] = [dict(source="torch float32", **torch_f32_tolerance(c["name"]), expected=torch_f32)]
    return out


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
    os.makedirs(OUT_DIR, exist_ok=True)
    versions = {"torch": torch.__version__}
    d = distill_cases()
    u = uda_cases()
    for family, cases in [("distill", d), ("uda", u)]:
        head = fixture_schema.header(family, "scripts/gen_fixtures_distill.py", versions, len(cases),
                                     tolerances=TOLERANCES)
        with open(os.path.join(OUT_DIR, family + ".json"), "w") as f:
            f.write(fixture_schema.dumps(head, [to_schema(c) for c in cases]))
    print(f"wrote {len(d)} distillation cases and {len(u)} UDA cases (torch {torch.__version__})")


if __name__ == "__main__":
    main()
