"""The NumPy API of the later losses — distill, distill_topk, uda_consistency, cross_entropy_extras,
linear_cross_entropy, linear_distill: signatures, result types, dtypes, memory layouts, upstream gradients, finite
differences, identities between the functions, errors and crashes. (Against torch: test_torch_distill_linear.py;
the committed fixtures: test_fixtures_distill_linear.py.)"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import infoloss
from conftest import assert_close
from test_api import finite_difference, layouts, same
from test_errors import run_isolated

RNG = np.random.default_rng(20261123)


def logits(*shape, dt=np.float64, scale=2.0):
    return (RNG.normal(size=shape) * scale).astype(dt)


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------- signatures

DISTILL_OPTIONS = [("temperature", 1.0), ("t2_scaling", True), ("divergence", "forward_kl"), ("beta", 0.5),
                   ("alpha", 1.0), ("ignore_index", -100), ("reduction", "batchmean"), ("normalizer", None),
                   ("logit_scale", 1.0), ("softcap", None)]
SIGNATURES = {
    # name: (positional-or-keyword parameters, keyword-only parameters with defaults)
    "distill": (["student_logits", "teacher_logits", "labels"], DISTILL_OPTIONS),
    "distill_topk": (["student_logits", "topk_indices", "topk_logprobs", "labels"],
                     [("add_tail", False)] + DISTILL_OPTIONS),
    "uda_consistency": (["ori_logits", "aug_logits"], [("temperature", 1.0), ("sharpen", "target"),
                                                       ("confidence_threshold", None), ("normalize", "kept_rows")]),
    "cross_entropy_extras": (["input", "target", "weight", "ignore_index", "reduction", "label_smoothing"],
                             [("lse_square_scale", 0.0), ("softcap", None), ("return_lse", False),
                              ("return_token_accuracy", False)]),
    # torch 2.15's F.linear_cross_entropy, then the extras
    "linear_cross_entropy": (["input", "linear_weight", "target"],
                             [("linear_bias", None), ("weight", None), ("reduction", "mean"), ("ignore_index", -100),
                              ("label_smoothing", 0.0), ("lse_square_scale", 0.0), ("softcap", None),
                              ("chunk_size", None)]),
    "linear_distill": (["student_hidden", "student_weight", "teacher_hidden", "teacher_weight", "labels"],
                       [("student_bias", None), ("teacher_bias", None), ("teacher_topk", None), ("add_tail", False)]
                       + DISTILL_OPTIONS + [("chunk_size", None)]),
    "uda_consistency_backward": (["ori_logits", "aug_logits", "grad_output"],
                                 [("temperature", 1.0), ("sharpen", "target"), ("confidence_threshold", None),
                                  ("normalize", "kept_rows")]),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signatures_and_with_grad_twins(name):
    positional, keyword = SIGNATURES[name]
    params = list(inspect.signature(getattr(infoloss, name)).parameters.values())
    assert [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD] == positional
    kw = [(p.name, p.default) for p in params if p.kind == p.KEYWORD_ONLY]
    assert kw == keyword
    for p, (_, d) in zip([p for p in params if p.kind == p.KEYWORD_ONLY], keyword):
        assert type(p.default) is type(d), (p.name, p.default)
    if name.startswith("uda_consistency"):
        return  # one call returns the loss, its gradient, the mask and the kept count; the backward has no twin
    twin = list(inspect.signature(getattr(infoloss, name + "_with_grad")).parameters.values())
    assert [p.name for p in twin[: len(params)]] == [p.name for p in params]
    extra = twin[len(params):]
    assert all(p.kind == p.KEYWORD_ONLY for p in extra) and extra[-1].name == "grad_output"


def test_result_types():
    s, t = logits(4, 5), logits(4, 5)
    y = np.array([0, 4, -100, 2])
    assert type(infoloss.distill(s, t)) is float
    v = infoloss.distill(s, t, y, alpha=0.3, reduction="none")
    assert isinstance(v, np.ndarray) and v.shape == (4,) and v[2] == 0.0
    r = infoloss.uda_consistency(s, t)
    assert isinstance(r, tuple) and r._fields == ("loss", "grad_aug", "mask", "kept", "row_kl")
    e = infoloss.cross_entropy_extras(s, np.array([0, 4, 1, 2]))
    assert e._fields == ("loss", "grad_input", "z_loss", "lse", "token_accuracy")
    assert e.grad_input is None and e.lse is None and e.token_accuracy is None and e.z_loss == 0.0
    e = infoloss.cross_entropy_extras_with_grad(s, np.array([0, 4, 1, 2]), reduction="none", return_lse=True,
                                                return_token_accuracy=True)
    assert e.loss.shape == e.z_loss.shape == e.lse.shape == e.token_accuracy.shape == (4,)
    assert e.grad_input.shape == (4, 5)
    h, w = logits(4, 3), logits(5, 3)
    assert type(infoloss.linear_cross_entropy(h, w, np.array([0, 4, 1, 2]))) is float
    r = infoloss.linear_cross_entropy_with_grad(h, w, np.array([0, 4, 1, 2]), linear_bias=np.zeros(5))
    assert r._fields[:4] == ("loss", "grad_input", "grad_linear_weight", "grad_linear_bias")
    assert r.grad_linear_bias.shape == (5,) and r.lse is None
    # a 1-D input is one row, as in torch: 'none' gives a 0-d array
    v = infoloss.linear_cross_entropy(h[0], w, np.array(3), reduction="none")
    assert isinstance(v, np.ndarray) and v.shape == ()
    assert float(v) == pytest.approx(infoloss.linear_cross_entropy(h[:1], w, np.array([3])), rel=1e-15)
    loss, gx, gw, gb = infoloss.linear_distill_with_grad(h, w, logits(4, 2), logits(5, 2))
    assert type(loss) is float and gx.shape == (4, 3) and gw.shape == (5, 3) and gb is None
    r = infoloss.linear_distill_with_grad(h, w, logits(4, 2), logits(5, 2), student_bias=np.zeros(5), teacher_topk=2)
    assert r._fields == ("loss", "grad_student_hidden", "grad_student_weight", "grad_student_bias")
    assert r.grad_student_bias.shape == (5,)
    g = infoloss.uda_consistency_backward(s, t, 2.0)
    assert isinstance(g, np.ndarray) and g.shape == (4, 5)


# ---------------------------------------------------------------------------------------------- identities


def test_distill_equals_its_formula():
    s, t = logits(6, 7), logits(6, 7)
    y = np.array([1, -100, 6, 0, 3, -100])
    T = 2.5
    lp, lq = log_softmax(s / T), log_softmax(t / T)
    fkl = (np.exp(lq) * (lq - lp)).sum(1)
    ce = -log_softmax(s)[np.arange(6), np.where(y < 0, 0, y)]
    keep = y != -100
    want = (0.7 * T * T * fkl[keep].sum() + 0.3 * ce[keep].sum()) / keep.sum()
    got, g = infoloss.distill_with_grad(s, t, y, temperature=T, alpha=0.7)
    assert got == pytest.approx(want, rel=1e-13)
    onehot = np.eye(7)[np.where(y < 0, 0, y)]
    gwant = (0.7 * T * (np.exp(lp) - np.exp(lq)) + 0.3 * (np.exp(log_softmax(s)) - onehot)) / keep.sum()
    gwant[~keep] = 0
    assert_close(g, gwant, rtol=1e-12, atol=1e-15, what="distill grad")
    # reverse KL, TVD and the JSD's end points
    rkl = (np.exp(lp) * (lp - lq)).sum(1)
    assert infoloss.distill(s, t, temperature=T, divergence="reverse_kl", t2_scaling=False,
                            reduction="sum") == pytest.approx(rkl.sum(), rel=1e-13)
    tvd = 0.5 * np.abs(np.exp(lp) - np.exp(lq)).sum(1)
    assert_close(infoloss.distill(s, t, temperature=T, divergence="tvd", t2_scaling=False, reduction="none"), tvd,
                 rtol=1e-12, atol=1e-15)
    assert infoloss.distill(s, t, divergence="jsd", beta=0.0) == infoloss.distill(s, t)
    assert infoloss.distill(s, t, divergence="jsd", beta=1.0) == infoloss.distill(s, t, divergence="reverse_kl")
    m = np.log(0.5 * np.exp(lp) + 0.5 * np.exp(lq))
    jsd = 0.5 * (np.exp(lq) * (lq - m)).sum(1) + 0.5 * (np.exp(lp) * (lp - m)).sum(1)
    assert infoloss.distill(s, t, temperature=T, divergence="jsd", t2_scaling=False,
                            reduction="mean") == pytest.approx(jsd.sum() / (6 * 7), rel=1e-12)
    # the normalizer replaces the number of kept rows
    assert infoloss.distill(s, t, y, alpha=0.5, normalizer=100.0) == pytest.approx(
        infoloss.distill(s, t, y, alpha=0.5, reduction="sum") / 100, rel=1e-14)


def test_topk_with_every_class_equals_the_dense_loss():
    s, t = logits(5, 6), logits(5, 6)
    lq = log_softmax(t / 1.5)
    idx = np.argsort(-t, axis=1)
    for div in ("forward_kl", "reverse_kl", "jsd", "tvd"):
        kw = dict(temperature=1.5, divergence=div, beta=0.3)
        a = infoloss.distill_topk_with_grad(s, idx, np.take_along_axis(lq, idx, 1), **kw)
        b = infoloss.distill_with_grad(s, t, **kw)
        assert a[0] == pytest.approx(b[0], rel=1e-12, abs=1e-15)
        assert_close(a[1], b[1], rtol=1e-10, atol=1e-14, what=f"{div} grad")
    # with a tail bucket: the divergence between the (k+1)-bucket distributions
    k = 2
    sel = idx[:, :k]
    lp = log_softmax(s)
    p_in, q_in = np.take_along_axis(np.exp(lp), sel, 1), np.take_along_axis(np.exp(log_softmax(t)), sel, 1)
    p = np.concatenate([p_in, 1 - p_in.sum(1, keepdims=True)], 1)
    q = np.concatenate([q_in, 1 - q_in.sum(1, keepdims=True)], 1)
    want = (q * np.log(q / p)).sum() / 5
    got = infoloss.distill_topk(s, sel, np.log(q_in), add_tail=True)
    assert got == pytest.approx(want, rel=1e-10)


def test_uda_equals_its_formula():
    ori, aug = logits(8, 5), logits(8, 5)
    T, th = 0.6, 0.5
    for sharpen in ("target", "augmented"):
        for normalize in ("kept_rows", "all_rows"):
            r = infoloss.uda_consistency(ori, aug, temperature=T, sharpen=sharpen, confidence_threshold=th,
                                         normalize=normalize)
            to, ta = (T, 1.0) if sharpen == "target" else (1.0, T)
            q = np.exp(log_softmax(ori / to))
            lp = log_softmax(aug / ta)
            kl = (q * (np.log(q) - lp)).sum(1)
            mask = (np.exp(log_softmax(ori)).max(1) > th).astype(float)
            denom = max(mask.sum(), 1) if normalize == "kept_rows" else 8
            assert 0 < r.kept < 8 and r.kept == int(mask.sum())
            assert r.mask.tolist() == mask.tolist()
            assert_close(r.row_kl, kl, rtol=1e-12, atol=1e-15, what="row_kl")
            assert r.loss == pytest.approx((kl * mask).sum() / denom, rel=1e-13)
            g = mask[:, None] / denom * (np.exp(lp) - q) / ta
            assert_close(r.grad_aug, g, rtol=1e-11, atol=1e-15, what="grad_aug")


def test_fused_linear_losses_equal_the_unfused_ones():
    h, w, b = logits(9, 4), logits(6, 4, scale=0.5), logits(6)
    y = np.array([0, 5, -100, 2, 2, 1, 3, 4, -100])
    cw = RNG.uniform(0.5, 2.0, size=6)
    kw = dict(ignore_index=-100, label_smoothing=0.1, lse_square_scale=1e-2, softcap=3.0)
    for red in ("mean", "sum", "none"):
        logits_ = h @ w.T + b
        ref = infoloss.cross_entropy_extras_with_grad(logits_, y, cw, reduction=red, return_lse=True,
                                                      return_token_accuracy=True, **kw)
        for chunk in (1, 4, None):
            r = infoloss.linear_cross_entropy_with_grad(h, w, y, linear_bias=b, weight=cw, reduction=red,
                                                        chunk_size=chunk, return_lse=True,
                                                        return_token_accuracy=True, **kw)
            for f in ("loss", "z_loss", "lse", "token_accuracy"):
                assert_close(getattr(r, f), getattr(ref, f), rtol=1e-12, atol=1e-14, what=f)
            assert_close(r.grad_input, ref.grad_input @ w, rtol=1e-11, atol=1e-14, what="grad_input")
            assert_close(r.grad_linear_weight, ref.grad_input.T @ h, rtol=1e-11, atol=1e-14, what="grad_weight")
            assert_close(r.grad_linear_bias, ref.grad_input.sum(0), rtol=1e-11, atol=1e-14, what="grad_bias")
    xt, wt = logits(9, 3), logits(6, 3)
    opts = dict(temperature=2.0, divergence="jsd", beta=0.3, alpha=0.6)
    loss, gx, gw, _ = infoloss.linear_distill_with_grad(h, w, xt, wt, y, chunk_size=4, **opts)
    dl, dg = infoloss.distill_with_grad(h @ w.T, xt @ wt.T, y, **opts)
    assert loss == pytest.approx(dl, rel=1e-12)
    assert_close(gx, dg @ w, rtol=1e-11, atol=1e-14, what="linear_distill grad_hidden")
    assert_close(gw, dg.T @ h, rtol=1e-11, atol=1e-14, what="linear_distill grad_weight")


# ------------------------------------------------------------------------------------------- dtypes, layouts


def test_dtypes_and_promotion():
    s, t = logits(4, 5), logits(4, 5)
    y = np.array([0, 1, 2, 3])
    for dt, rtol in ((np.float16, 2e-3), (np.float32, 1e-6), (np.float64, 0)):
        loss, g = infoloss.distill_with_grad(s.astype(dt), t.astype(dt), reduction="none")
        ref, gref = infoloss.distill_with_grad(s.astype(dt).astype(np.float64), t.astype(dt).astype(np.float64),
                                               reduction="none")
        assert loss.dtype == dt and g.dtype == dt
        assert_close(loss, ref, rtol=rtol, atol=rtol * 1e-2, what=f"{dt} loss")
        assert_close(g, gref, rtol=rtol, atol=rtol * 1e-2, what=f"{dt} grad")
        r = infoloss.uda_consistency(s.astype(dt), t.astype(dt))
        assert r.grad_aug.dtype == dt and r.mask.dtype == dt and r.row_kl.dtype == dt
        e = infoloss.cross_entropy_extras_with_grad(s.astype(dt), y, reduction="none", return_lse=True)
        assert e.loss.dtype == e.lse.dtype == e.grad_input.dtype == dt
    # a float32 student with a float64 teacher computes in float64; the gradient keeps the student's dtype
    loss, g = infoloss.distill_with_grad(s.astype(np.float32), t, reduction="none")
    assert loss.dtype == np.float64 and g.dtype == np.float32
    ref = infoloss.distill(s.astype(np.float32).astype(np.float64), t, reduction="none")
    same(loss, ref)
    # the fused linear losses compute float16 in float32 and round once
    h, w = logits(6, 3, dt=np.float16), logits(5, 3, dt=np.float16)
    yy = np.array([0, 4, 1, 2, 3, 0])
    r16 = infoloss.linear_cross_entropy_with_grad(h, w, yy, reduction="none", linear_bias=np.ones(5, np.float16))
    r32 = infoloss.linear_cross_entropy_with_grad(h.astype(np.float32), w.astype(np.float32), yy, reduction="none",
                                                  linear_bias=np.ones(5, np.float32))
    for a, b in zip(r16[:4], r32[:4]):
        assert a.dtype == np.float16
        same(a, b.astype(np.float16))
    b16 = logits(5, dt=np.float16)
    loss16, gx16, gw16, gb16 = infoloss.linear_distill_with_grad(h, w, h, w[:, ::-1], reduction="none",
                                                                 student_bias=b16, teacher_topk=3)
    loss32, gx32, gw32, gb32 = infoloss.linear_distill_with_grad(h.astype(np.float32), w.astype(np.float32),
                                                                 h.astype(np.float32), w[:, ::-1].astype(np.float32),
                                                                 reduction="none", student_bias=b16.astype(np.float32),
                                                                 teacher_topk=3)
    same(loss16, loss32.astype(np.float16))
    same(gx16, gx32.astype(np.float16))
    same(gw16, gw32.astype(np.float16))
    same(gb16, gb32.astype(np.float16))
    # UDA's backward keeps the augmented logits' dtype
    g = infoloss.uda_consistency_backward(s.astype(np.float16), t.astype(np.float16), 0.5)
    assert g.dtype == np.float16


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_any_memory_layout_gives_identical_results(dt):
    a, b = logits(6, 5, dt=dt), logits(6, 5, dt=dt)
    h, w = logits(6, 4, dt=dt), logits(5, 4, dt=dt)
    y = np.array([0, 4, 2, -100, 3, 1])
    idx = np.argsort(-b, axis=1)[:, :3].copy()
    lq = np.take_along_axis(log_softmax(b.astype(np.float64)), idx, 1).astype(dt)
    calls = {
        "distill": lambda a, b, h, w: infoloss.distill_with_grad(a, b, y, divergence="jsd", alpha=0.5,
                                                                  reduction="none"),
        "distill_topk": lambda a, b, h, w: infoloss.distill_topk_with_grad(a, idx, lq, y, add_tail=True, alpha=0.5),
        "uda": lambda a, b, h, w: tuple(infoloss.uda_consistency(a, b, temperature=0.5, confidence_threshold=0.3)),
        "ce_extras": lambda a, b, h, w: infoloss.cross_entropy_extras_with_grad(
            a, y, b[0], softcap=2.0, lse_square_scale=0.1, return_lse=True, return_token_accuracy=True,
            reduction="none"),
        "linear_ce": lambda a, b, h, w: infoloss.linear_cross_entropy_with_grad(
            h, w, y, linear_bias=a[0], weight=np.abs(b[0]), chunk_size=4, return_lse=True),
        "linear_distill": lambda a, b, h, w: infoloss.linear_distill_with_grad(h, w, h[:, ::-1], w, y, alpha=0.5,
                                                                              chunk_size=4),
    }
    for name, call in calls.items():
        ref = call(a, b, h, w)
        lay = [layouts(x) for x in (a, b, h, w)]
        for kind in lay[0]:
            got = call(*(lx[kind] for lx in lay))
            for r, g in zip(ref, got):
                if r is None or isinstance(r, (int, float)):
                    assert g == r or (np.isnan(g) and np.isnan(r)), (name, kind)
                    continue
                g = np.asarray(g)
                assert g.dtype.isnative, (name, kind)
                same(g.astype(np.asarray(r).dtype), r)


def test_broadcast_student_and_teacher_rows():
    row_s, row_t = logits(1, 7), logits(1, 7)
    s, t = np.broadcast_to(row_s, (500, 7)), np.broadcast_to(row_t, (500, 7))
    loss, g = infoloss.distill_with_grad(s, t, reduction="none", divergence="reverse_kl")
    assert np.all(loss == loss[0]) and np.all(g == g[0])
    same(loss[:1], infoloss.distill(row_s, row_t, reduction="none", divergence="reverse_kl"))


# -------------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
def test_grad_output_scales_linearly(reduction):
    s, t, y = logits(5, 4), logits(5, 4), np.array([0, -100, 3, 1, 2])
    kw = dict(divergence="jsd", beta=0.2, alpha=0.4, temperature=1.7, reduction=reduction)
    base = infoloss.distill_with_grad(s, t, y, **kw)
    idx = np.array([[0, 1], [2, 3], [1, 0], [3, 2], [0, 2]])
    lq = np.log(np.full((5, 2), 0.3))
    tbase = infoloss.distill_topk_with_grad(s, idx, lq, y, add_tail=True, **kw)
    e_red = "mean" if reduction == "batchmean" else reduction
    ebase = infoloss.cross_entropy_extras_with_grad(s, np.array([0, 1, 3, 1, 2]), reduction=e_red, softcap=2.0,
                                                    lse_square_scale=0.1)
    lbase = infoloss.linear_cross_entropy_with_grad(s, t[:4], np.array([0, 1, 3, 1, 2]), reduction=e_red)
    g = RNG.normal(size=5) if reduction == "none" else -2.5
    scale = g[:, None] if reduction == "none" else g
    got = infoloss.distill_with_grad(s, t, y, grad_output=g, **kw)
    assert_close(got[1], base[1] * scale, rtol=1e-13, atol=1e-16)
    same(got[0], base[0])
    got = infoloss.distill_topk_with_grad(s, idx, lq, y, add_tail=True, grad_output=g, **kw)
    assert_close(got[1], tbase[1] * scale, rtol=1e-13, atol=1e-16)
    got = infoloss.cross_entropy_extras_with_grad(s, np.array([0, 1, 3, 1, 2]), reduction=e_red, softcap=2.0,
                                                  lse_square_scale=0.1, grad_output=g)
    assert_close(got.grad_input, ebase.grad_input * scale, rtol=1e-13, atol=1e-16)
    same(got.loss, ebase.loss)
    got = infoloss.linear_cross_entropy_with_grad(s, t[:4], np.array([0, 1, 3, 1, 2]), reduction=e_red,
                                                  grad_output=g)
    assert_close(got.grad_input, lbase.grad_input * scale, rtol=1e-12, atol=1e-15)
    b = logits(4)
    for topk in (None, 2):
        kwl = dict(alpha=0.5, reduction=reduction, student_bias=b, teacher_bias=b[::-1], teacher_topk=topk,
                   add_tail=True)
        base_l = infoloss.linear_distill_with_grad(s, t[:4], t, s[:4], y, **kwl)
        got = infoloss.linear_distill_with_grad(s, t[:4], t, s[:4], y, grad_output=g, **kwl)
        same(got.loss, base_l.loss)
        assert_close(got.grad_student_hidden, base_l.grad_student_hidden * scale, rtol=1e-13, atol=1e-16)
        # the logits' gradient for upstream g, through the unfused function on the materialized logits
        sl, tl = s @ t[:4].T + b, t @ s[:4].T + b[::-1]
        dopts = {k: v for k, v in kw.items() if k not in ("divergence", "beta", "temperature")}
        dopts.update(alpha=0.5)
        if topk is None:
            _, gl = infoloss.distill_with_grad(sl, tl, y, grad_output=g, **dopts)
        else:
            tidx = np.argsort(-tl, axis=1, kind="stable")[:, :topk]
            tlq = np.take_along_axis(log_softmax(tl), tidx, 1)
            _, gl = infoloss.distill_topk_with_grad(sl, tidx, tlq, y, add_tail=True, grad_output=g, **dopts)
        assert_close(got.grad_student_weight, gl.T @ s, rtol=1e-12, atol=1e-15)
        assert_close(got.grad_student_bias, gl.sum(0), rtol=1e-12, atol=1e-15)


def test_gradients_match_finite_differences():
    s, t = logits(3, 5), logits(3, 5)
    y = np.array([4, -100, 0])
    idx = np.array([[0, 3], [1, 2], [4, 0]])
    lq = np.log(np.array([[0.5, 0.2], [0.3, 0.3], [0.6, 0.1]]))
    h, w, b = logits(3, 4), logits(5, 4, scale=0.5), logits(5)
    wt = logits(5, 5, scale=0.5)
    u = RNG.normal(size=3)
    checks = [
        (lambda a: infoloss.distill(a, t, y, divergence="jsd", beta=0.3, alpha=0.6, temperature=1.5),
         lambda a: infoloss.distill_with_grad(a, t, y, divergence="jsd", beta=0.3, alpha=0.6, temperature=1.5)[1], s),
        (lambda a: float(infoloss.distill(a, t, divergence="tvd", reduction="none") @ u),
         lambda a: infoloss.distill_with_grad(a, t, divergence="tvd", reduction="none", grad_output=u)[1], s),
        (lambda a: infoloss.distill_topk(a, idx, lq, y, add_tail=True, divergence="reverse_kl", alpha=0.5),
         lambda a: infoloss.distill_topk_with_grad(a, idx, lq, y, add_tail=True, divergence="reverse_kl",
                                                   alpha=0.5)[1], s),
        (lambda a: infoloss.uda_consistency(t, a, temperature=0.7, sharpen="augmented").loss,
         lambda a: infoloss.uda_consistency(t, a, temperature=0.7, sharpen="augmented").grad_aug, s),
        (lambda a: infoloss.cross_entropy_extras(a, np.array([4, 1, 0]), softcap=1.5, lse_square_scale=0.2,
                                                 label_smoothing=0.1).loss,
         lambda a: infoloss.cross_entropy_extras_with_grad(a, np.array([4, 1, 0]), softcap=1.5,
                                                           lse_square_scale=0.2, label_smoothing=0.1).grad_input, s),
        (lambda a: infoloss.linear_cross_entropy(a, w, y, linear_bias=b, softcap=2.0),
         lambda a: infoloss.linear_cross_entropy_with_grad(a, w, y, linear_bias=b, softcap=2.0).grad_input, h),
        (lambda a: infoloss.linear_cross_entropy(h, a, y, linear_bias=b, label_smoothing=0.2),
         lambda a: infoloss.linear_cross_entropy_with_grad(h, a, y, linear_bias=b,
                                                           label_smoothing=0.2).grad_linear_weight, w),
        (lambda a: float(infoloss.linear_cross_entropy(h, w, y, linear_bias=a, reduction="none") @ u),
         lambda a: infoloss.linear_cross_entropy_with_grad(h, w, y, linear_bias=a, reduction="none",
                                                           grad_output=u).grad_linear_bias, b),
        (lambda a: infoloss.linear_distill(a, w, s, wt, y, alpha=0.5, temperature=2.0),
         lambda a: infoloss.linear_distill_with_grad(a, w, s, wt, y, alpha=0.5, temperature=2.0)[1], h),
        (lambda a: infoloss.linear_distill(h, a, s, wt, divergence="reverse_kl"),
         lambda a: infoloss.linear_distill_with_grad(h, a, s, wt, divergence="reverse_kl")[2], w),
        (lambda a: float(infoloss.linear_distill(h, w, s, wt, student_bias=a, teacher_bias=b, teacher_topk=2,
                                                 add_tail=True, reduction="none") @ u),
         lambda a: infoloss.linear_distill_with_grad(h, w, s, wt, student_bias=a, teacher_bias=b, teacher_topk=2,
                                                     add_tail=True, reduction="none",
                                                     grad_output=u).grad_student_bias, b),
        (lambda a: -1.5 * infoloss.uda_consistency(t, a, temperature=0.6, confidence_threshold=0.3).loss,
         lambda a: infoloss.uda_consistency_backward(t, a, -1.5, temperature=0.6, confidence_threshold=0.3), s),
    ]
    for i, (f, grad, at) in enumerate(checks):
        assert_close(grad(at), finite_difference(f, at), rtol=1e-6, atol=1e-8, what=f"finite differences {i}")


def test_the_teacher_and_the_original_logits_get_no_gradient():
    # the teacher is a constant: only the student's gradient is returned
    assert len(infoloss.distill_with_grad(logits(2, 3), logits(2, 3))) == 2
    r = infoloss.linear_distill_with_grad(logits(2, 3), logits(4, 3), logits(2, 2), logits(4, 2),
                                          teacher_bias=np.ones(4))
    assert len(r) == 4 and r.grad_student_bias is None  # no student bias: no bias gradient; none for the teacher


# ------------------------------------------------------------------------------------------------- edge cases


def test_empty_batches_and_ignored_rows():
    e = np.zeros((0, 4))
    loss, g = infoloss.distill_with_grad(e, e)
    assert np.isnan(loss) and g.shape == (0, 4)
    assert infoloss.distill(e, e, reduction="sum") == 0.0
    assert infoloss.distill(e, e, reduction="none").shape == (0,)
    s, t = logits(3, 4), logits(3, 4)
    loss, g = infoloss.distill_with_grad(s, t, np.full(3, -100), alpha=0.5)
    assert np.isnan(loss) and np.all(g == 0)
    r = infoloss.uda_consistency(e, e)
    assert r.loss == 0.0 and r.kept == 0 and r.grad_aug.shape == (0, 4)
    assert np.isnan(infoloss.uda_consistency(e, e, normalize="all_rows").loss)
    r = infoloss.uda_consistency(s, t, confidence_threshold=1.0)  # nothing is more confident than 1
    assert r.kept == 0 and r.loss == 0.0 and np.all(r.grad_aug == 0) and np.all(r.row_kl > 0)
    r = infoloss.linear_cross_entropy_with_grad(np.zeros((0, 3)), logits(4, 3), np.zeros(0, np.int64))
    assert np.isnan(r.loss) and r.grad_input.shape == (0, 3) and np.all(r.grad_linear_weight == 0)
    assert infoloss.linear_cross_entropy(np.zeros((0, 3)), logits(4, 3), np.zeros(0, np.int64),
                                         reduction="sum") == 0.0


def test_nan_in_a_masked_uda_row_still_poisons_the_loss():
    ori, aug = logits(3, 4), logits(3, 4)
    aug[1, 2] = np.nan
    r = infoloss.uda_consistency(ori, aug)
    assert np.isnan(r.loss) and np.all(np.isnan(r.grad_aug[1])) and np.all(np.isfinite(r.grad_aug[[0, 2]]))


# ------------------------------------------------------------------------------------------------------ errors

S, T = np.zeros((2, 3)), np.zeros((2, 3))


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: infoloss.distill(S, T, np.array([0, 5]), alpha=0.5), IndexError,
         r"^distill: target 5 at \[1\] is out of range for 3 classes$"),
        (lambda: infoloss.distill(S, T, alpha=0.5), ValueError, r"invalid alpha = 0\.5: .*needs labels"),
        (lambda: infoloss.distill(S, T, alpha=1.5), ValueError, r"invalid alpha = 1\.5"),
        (lambda: infoloss.distill(S, np.zeros((2, 4))), ValueError, r"shape \[2, 3\] and teacher shape \[2, 4\]"),
        (lambda: infoloss.distill(S, T, divergence="kl"), ValueError, r"invalid divergence = 'kl'"),
        (lambda: infoloss.distill(S, T, divergence=3), TypeError, r"divergence must be a string"),
        (lambda: infoloss.distill(S, T, divergence="jsd", beta=1.5), ValueError, r"invalid beta = 1\.5"),
        (lambda: infoloss.distill(S, T, temperature=0.0), ValueError, r"invalid temperature = 0"),
        (lambda: infoloss.distill(S, T, temperature="hot"), TypeError, r"temperature must be a real number"),
        (lambda: infoloss.distill(S, T, normalizer=-1.0), ValueError, r"invalid normalizer = -1"),
        (lambda: infoloss.distill(S, T, reduction="sum", normalizer=2.0), ValueError, r"normalizer"),
        (lambda: infoloss.distill(S, T, reduction="avg"), ValueError, r"invalid reduction = 'avg'"),
        (lambda: infoloss.distill(np.zeros(3), np.zeros(3)), ValueError, r"shape \[3\] \(1 dimensions\)"),
        (lambda: infoloss.distill(S, T, np.zeros((2, 1), np.int64)), ValueError, r"labels has shape \[2, 1\]"),
        (lambda: infoloss.distill(S, T, np.zeros(3, np.int64)), ValueError, r"labels shape \[3\]"),
        (lambda: infoloss.distill(S, T, np.zeros(2)), TypeError, r"labels must hold integer class indices"),
        (lambda: infoloss.distill(S.astype(int), T), TypeError, r"student_logits must be a floating-point array"),
        (lambda: infoloss.distill(S, T, ignore_index=2**70), ValueError, r"does not fit in int64"),
        (lambda: infoloss.distill_with_grad(S, T, reduction="none", grad_output=np.ones(3)), ValueError,
         r"grad_output shape \[3\]"),
        (lambda: infoloss.distill_with_grad(S, T, grad_output=np.ones(2)), ValueError, r"grad_output"),
        (lambda: infoloss.distill_topk(S, np.array([[0, 0], [1, 2]]), np.zeros((2, 2))), ValueError,
         r"repeats an index"),
        (lambda: infoloss.distill_topk(S, np.array([[0, 3], [1, 2]]), np.zeros((2, 2))), ValueError,
         r"value 3 at \[0, 1\] is out of range for 3 classes"),
        (lambda: infoloss.distill_topk(S, np.array([[0, 1], [1, 2]]), np.zeros((2, 3))), ValueError,
         r"shape \[2, 2\] and teacher logprobs shape \[2, 3\]"),
        (lambda: infoloss.distill_topk(S, np.array([0, 1]), np.zeros((2, 2))), ValueError,
         r"topk_indices has shape \[2\]"),
        (lambda: infoloss.distill_topk(S, np.zeros((2, 2)), np.zeros((2, 2))), TypeError, r"topk_indices"),
        (lambda: infoloss.uda_consistency(S, T, sharpen="both"), ValueError, r"invalid sharpen = 'both'"),
        (lambda: infoloss.uda_consistency(S, T, normalize=None), TypeError, r"normalize must be a string"),
        (lambda: infoloss.uda_consistency(S, T, confidence_threshold=np.nan), ValueError,
         r"invalid confidence_threshold = NaN"),
        (lambda: infoloss.uda_consistency(S, np.zeros((3, 3))), ValueError, r"\[2, 3\] and aug_logits shape \[3, 3\]"),
        (lambda: infoloss.uda_consistency(S, T, temperature=-1), ValueError, r"invalid temperature = -1"),
        (lambda: infoloss.cross_entropy_extras(S, np.array([0, 1]), softcap=0.0), ValueError,
         r"invalid softcap = 0"),
        (lambda: infoloss.cross_entropy_extras(S, np.array([0, 1]), lse_square_scale=np.inf), ValueError,
         r"lse_square_scale"),
        (lambda: infoloss.cross_entropy_extras(S, np.array([0, 3])), IndexError, r"target 3 at \[1\]"),
        (lambda: infoloss.cross_entropy_extras(S, np.array([0, 1]), reduction="batchmean"), ValueError,
         r"not a valid value for reduction"),
        (lambda: infoloss.cross_entropy_extras(np.zeros((2, 3, 1)), np.array([0, 1])), ValueError,
         r"expected 2 dimensions"),
        (lambda: infoloss.cross_entropy_extras(S, np.array([0, 1]), np.ones(4)), ValueError, r"weight"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 9])), IndexError,
         r"target 9 at \[1\] is out of range for 4 classes"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 2)), np.array([0, 1])), ValueError,
         r"\[2, 3\] and weight shape \[4, 2\]"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1]), chunk_size=0), ValueError,
         r"invalid chunk_size = 0"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1]), chunk_size=-2), ValueError,
         r"invalid chunk_size = -2"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0.0, 1.0])), TypeError,
         r"no class-probability targets"),
        (lambda: infoloss.linear_cross_entropy(np.zeros((2, 2, 3)), np.zeros((4, 3)), np.zeros((2, 2), np.int64)),
         ValueError, r"dimensionality 1 or 2, got 3"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1, 2])), ValueError,
         r"input shape \[2, 3\] and target shape \[3\]"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1]), linear_bias=np.zeros(3)),
         ValueError, r"bias shape \[3\]"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1]), linear_bias=np.zeros((1, 4))),
         ValueError, r"linear_bias must be 1-D"),
        (lambda: infoloss.linear_cross_entropy(S, np.zeros((4, 3)), np.array([0, 1]), softcap=-1.0), ValueError,
         r"softcap"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((5, 3))), ValueError,
         r"student_weight shape \[4, 3\] and teacher_weight shape \[5, 3\]"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), np.zeros((3, 3)), np.zeros((4, 3))), ValueError,
         r"same number of rows"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), np.array([0, 4]), alpha=0.5),
         IndexError, r"target 4 at \[1\]"),
        (lambda: infoloss.linear_distill_with_grad(S, np.zeros((4, 3)), S, np.zeros((4, 3)), reduction="none",
                                                   grad_output=np.ones(3)), ValueError,
         r"grad_output shape \[3\] and output shape \[2\] must be equal"),
        (lambda: infoloss.linear_distill_with_grad(S, np.zeros((4, 3)), S, np.zeros((4, 3)), grad_output=np.ones(2)),
         ValueError, r"grad_output shape \[2\] and output shape \[\] must be equal"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), student_bias=np.zeros(3)),
         ValueError, r"student_bias shape \[3\] and student_weight shape \[4, 3\] are not compatible"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), teacher_bias=np.zeros((1, 4))),
         ValueError, r"teacher_bias must be 1-D"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), teacher_topk=5), ValueError,
         r"invalid teacher_topk.k = 5: must be at most the number of classes \(4\)"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), teacher_topk=-1), ValueError,
         r"invalid teacher_topk = -1"),
        (lambda: infoloss.linear_distill(S, np.zeros((4, 3)), S, np.zeros((4, 3)), teacher_topk=1.5), TypeError,
         r"teacher_topk must be an integer"),
        (lambda: infoloss.uda_consistency_backward(S, T, np.ones(2)), ValueError,
         r"grad_output shape \[2\] and output shape \[\] must be equal"),
        (lambda: infoloss.uda_consistency_backward(S, T, 1.0, sharpen="x"), ValueError, r"invalid sharpen"),
        (lambda: infoloss.uda_consistency_backward(S, T, None), TypeError, r"grad_output must be a scalar"),
    ],
)
def test_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_the_private_module_checks_dtypes_and_ranks():
    _C = infoloss._infoloss
    with pytest.raises(TypeError, match="no float16 kernels"):
        _C.linear_cross_entropy(np.zeros((2, 3), np.float16), np.zeros((4, 3), np.float16), np.array([0, 1]), None,
                                None, (-100, "mean", 0.0, 0.0, None, False, False, None), None)
    with pytest.raises(TypeError, match="must be a float64 array"):
        _C.distill(np.zeros((2, 3)), np.zeros((2, 3), np.float32), None,
                   (1.0, True, "forward_kl", 0.5, 1.0, -100, "batchmean", None, 1.0, None), None, True, False)
    with pytest.raises(ValueError, match="invalid divergence"):
        _C.distill(S, T, None, (1.0, True, "kl", 0.5, 1.0, -100, "batchmean", None, 1.0, None), None, True, False)
    with pytest.raises(ValueError, match="invalid sharpen"):
        _C.uda_consistency(S, T, (1.0, "x", None, "kept_rows"))
    with pytest.raises(ValueError, match="invalid normalize"):
        _C.uda_consistency(S, T, (1.0, "target", None, "x"))
    with pytest.raises(TypeError, match="int64 array of class indices"):
        _C.distill(S, T, np.zeros(2, np.int32), (1.0, True, "forward_kl", 0.5, 0.5, -100, "batchmean", None, 1.0,
                                                     None), None, True, False)


def test_huge_broadcast_shapes_raise_memory_error_instead_of_aborting():
    r = run_isolated(
        """
        import numpy as np, infoloss
        z = np.float32(0)
        big = np.broadcast_to(z, (2**38, 4))
        ybig = np.broadcast_to(np.int64(0), (2**38,))
        calls = [
            lambda: infoloss.distill_with_grad(big, big),
            lambda: infoloss.distill(big, big, reduction="none"),
            lambda: infoloss.distill_topk(big, np.broadcast_to(np.int64(0), (2**38, 1)),
                                          np.broadcast_to(z, (2**38, 1))),
            lambda: infoloss.uda_consistency(big, big),
            lambda: infoloss.cross_entropy_extras(big, ybig),
            lambda: infoloss.linear_cross_entropy(np.broadcast_to(z, (2**36, 4)), np.zeros((8, 4), np.float32),
                                                  np.broadcast_to(np.int64(0), (2**36,))),
            lambda: infoloss.linear_cross_entropy(np.zeros((2, 4), np.float32), np.broadcast_to(z, (2**40, 4)),
                                                  np.zeros(2, np.int64)),
            lambda: infoloss.linear_distill(np.broadcast_to(z, (2**36, 4)), np.zeros((8, 4), np.float32),
                                            np.broadcast_to(z, (2**36, 4)), np.zeros((8, 4), np.float32)),
        ]
        for i, call in enumerate(calls):
            try:
                call()
            except (MemoryError, ValueError):
                continue
            raise SystemExit(f"call {i} did not raise")
        print("OK")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "OK", (r.returncode, r.stdout, r.stderr[-2000:])


def test_thread_count_does_not_change_the_results():
    before = infoloss.get_num_threads()
    s, t = logits(300, 40), logits(300, 40)
    h, w = logits(300, 16), logits(40, 16)
    y = RNG.integers(0, 40, size=300)
    calls = [
        lambda: infoloss.distill_with_grad(s, t, y, alpha=0.5, divergence="jsd"),
        lambda: tuple(infoloss.uda_consistency(s, t, confidence_threshold=0.2)),
        lambda: infoloss.linear_cross_entropy_with_grad(h, w, y, chunk_size=64)[:3],
        lambda: infoloss.linear_distill_with_grad(h, w, h, w[::-1], chunk_size=64)[:3],
        lambda: infoloss.linear_distill_with_grad(h, w, h, w[::-1], chunk_size=64, student_bias=w[:, 0],
                                                  teacher_topk=5, add_tail=True, reduction="none",
                                                  grad_output=y.astype(np.float64)),
        lambda: (infoloss.uda_consistency_backward(s, t, 0.3, confidence_threshold=0.2),),
    ]
    try:
        infoloss.set_num_threads(1)
        ref = [call() for call in calls]
        infoloss.set_num_threads(3)
        for call, r in zip(calls, ref):
            for a, b in zip(call(), r):
                same(a, b)
    finally:
        infoloss.set_num_threads(before)
