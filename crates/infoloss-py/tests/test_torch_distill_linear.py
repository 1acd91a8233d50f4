"""The later losses against torch itself (skipped without torch): randomized comparisons of distill, distill_topk,
uda_consistency, cross_entropy_extras, linear_cross_entropy and linear_distill with the PyTorch expressions their
docs name (forward and autograd gradients, float32 and float64), and the ``infoloss.torch`` autograd drop-ins
(``backward``, ``gradcheck``, upstream gradients, dtypes, no-grad mode, errors)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import infoloss  # noqa: E402
import infoloss.torch as itorch  # noqa: E402
from conftest import check_against_torch  # noqa: E402

# torch composes these losses from float32 ops that each round; infoloss computes in float64 and rounds once
TOL = {torch.float32: (2e-5, 2e-6), torch.float64: (1e-10, 1e-12)}


def check(got, want, dtype, what):
    check_against_torch(got, want, TOL[dtype], what)


# ------------------------------------------------------------------------------------- torch references


def divergence_rows(s, t, T, div, beta):
    """The per-row soft loss D(q, p) in torch (TRL's generalized JSD for 'jsd')."""
    lp, lq = F.log_softmax(s / T, 1), F.log_softmax(t / T, 1)
    if div == "forward_kl" or (div == "jsd" and beta == 0.0):
        return F.kl_div(lp, lq, reduction="none", log_target=True).sum(1)
    if div == "reverse_kl" or (div == "jsd" and beta == 1.0):
        return F.kl_div(lq, lp, reduction="none", log_target=True).sum(1)
    if div == "jsd":
        b = torch.tensor(beta, dtype=s.dtype)
        m = torch.logsumexp(torch.stack([lp + torch.log(1 - b), lq + torch.log(b)]), dim=0)
        kl_t = F.kl_div(m, lq, reduction="none", log_target=True).sum(1)
        kl_s = F.kl_div(m, lp, reduction="none", log_target=True).sum(1)
        return beta * kl_t + (1 - beta) * kl_s
    return 0.5 * (lp.exp() - lq.exp()).abs().sum(1)


def distill_ref(s, t, y, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction, normalizer):
    rows, V = s.shape
    keep = torch.ones(rows, dtype=torch.bool) if y is None else (y != ignore_index)
    c = temperature**2 if t2_scaling else 1.0
    soft = alpha * c * divergence_rows(s, t, temperature, divergence, beta)
    soft = torch.where(keep, soft, torch.zeros_like(soft))
    hard = (F.cross_entropy(s, y, ignore_index=ignore_index, reduction="none") if alpha < 1
            else torch.zeros_like(soft))
    n = normalizer if normalizer is not None else keep.sum().to(s.dtype)
    if reduction == "none":
        return soft + (1 - alpha) * hard
    if reduction == "sum":
        return (soft + (1 - alpha) * hard).sum()
    if reduction == "batchmean":
        return (soft.sum() + (1 - alpha) * hard.sum()) / n
    return soft.sum() / (n * V) + (1 - alpha) * hard.sum() / n


def random_distill(rng, dtype):
    rows, V = int(rng.integers(1, 7)), int(rng.integers(2, 9))
    s = torch.tensor(rng.normal(size=(rows, V)) * 2, dtype=dtype)
    t = torch.tensor(rng.normal(size=(rows, V)) * 2, dtype=dtype)
    opts = dict(temperature=float(rng.choice([0.5, 1.0, 2.0, 3.5])), t2_scaling=bool(rng.random() < 0.5),
                divergence=str(rng.choice(["forward_kl", "reverse_kl", "jsd", "tvd"])),
                beta=float(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])), alpha=1.0, ignore_index=-100,
                reduction=str(rng.choice(["batchmean", "mean", "sum", "none"])), normalizer=None)
    y = None
    if rng.random() < 0.6:
        y = torch.tensor(rng.integers(0, V, size=rows))
        y[torch.tensor(rng.random(size=rows) < 0.3)] = -100
        if (y != -100).sum() == 0:
            y[0] = 0
        opts["alpha"] = float(rng.choice([0.0, 0.3, 1.0]))
    if opts["reduction"] in ("batchmean", "mean") and rng.random() < 0.3:
        opts["normalizer"] = float(rng.integers(1, 20))
    return s, t, y, opts


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_distill_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 41])
    s, t, y, opts = random_distill(rng, dtype)
    sr = s.clone().requires_grad_(True)
    want = distill_ref(sr, t, y, **opts)
    g = torch.tensor(rng.normal(size=tuple(want.shape)), dtype=dtype)
    (gs,) = torch.autograd.grad(want, sr, g)
    yn = None if y is None else y.numpy()
    loss, grad = infoloss.distill_with_grad(s.numpy(), t.numpy(), yn, grad_output=g.numpy(), **opts)
    check(loss, want, dtype, f"loss {opts}")
    check(infoloss.distill(s.numpy(), t.numpy(), yn, **opts), want, dtype, "forward-only loss")
    check(grad, gs, dtype, f"grad {opts}")
    # the autograd drop-in
    sr = s.clone().requires_grad_(True)
    out = itorch.distill(sr, t, y, **opts)
    assert out.dtype == dtype and out.shape == want.shape
    out.backward(g)
    check(out, want, dtype, "itorch loss")
    check(sr.grad, gs, dtype, "itorch grad")


def topk_ref(s, idx, lq, T, add_tail):
    """Forward KL over the top-k buckets (plus the tail bucket), batchmean."""
    lp = F.log_softmax(s / T, 1)
    lp_sel = lp.gather(1, idx)
    if add_tail:
        outside = torch.ones_like(lp, dtype=torch.bool).scatter(1, idx, False)
        lp_tail = torch.logsumexp(lp.masked_fill(~outside, float("-inf")), 1, keepdim=True)
        lq_tail = torch.log1p(-torch.exp(torch.logsumexp(lq, 1, keepdim=True)))
        lp_sel, lq = torch.cat([lp_sel, lp_tail], 1), torch.cat([lq, lq_tail], 1)
    return F.kl_div(lp_sel, lq, reduction="batchmean", log_target=True) * T**2


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_distill_topk_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 42])
    rows, V, k = 4, 9, int(rng.integers(1, 6))
    s = torch.tensor(rng.normal(size=(rows, V)) * 2, dtype=dtype)
    t = torch.tensor(rng.normal(size=(rows, V)) * 2, dtype=dtype)
    T = float(rng.choice([1.0, 2.0]))
    lq_full = F.log_softmax(t / T, 1)
    lq, idx = torch.topk(lq_full, k, 1)
    add_tail = bool(seed % 2)
    sr = s.clone().requires_grad_(True)
    want = topk_ref(sr, idx, lq, T, add_tail)
    (gs,) = torch.autograd.grad(want, sr)
    loss, grad = infoloss.distill_topk_with_grad(s.numpy(), idx.numpy(), lq.numpy(), add_tail=add_tail,
                                                 temperature=T)
    check(loss, want, dtype, "topk loss")
    check(grad, gs, dtype, "topk grad")
    sr = s.clone().requires_grad_(True)
    out = itorch.distill_topk(sr, idx, lq, add_tail=add_tail, temperature=T)
    out.backward()
    check(out, want, dtype, "itorch topk loss")
    check(sr.grad, gs, dtype, "itorch topk grad")


def uda_ref(ori, aug, T, sharpen, thresh, normalize):
    to, ta = (T, 1.0) if sharpen == "target" else (1.0, T)
    with torch.no_grad():
        ori_prob = F.softmax(ori / to, dim=-1)
        conf = F.softmax(ori, dim=-1).max(dim=-1)[0]
        mask = (conf > thresh).to(ori.dtype) if thresh is not None else torch.ones(ori.shape[0], dtype=ori.dtype)
    row_kl = torch.sum(torch.nn.KLDivLoss(reduction="none")(F.log_softmax(aug / ta, dim=-1), ori_prob), dim=-1)
    if normalize == "kept_rows":
        return torch.sum(row_kl * mask, dim=-1) / torch.max(torch.sum(mask, dim=-1), torch.tensor(1.0, dtype=ori.dtype))
    return torch.mean(row_kl * mask)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_uda_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 43])
    ori = torch.tensor(rng.normal(size=(6, 5)) * 2, dtype=dtype)
    aug = torch.tensor(rng.normal(size=(6, 5)) * 2, dtype=dtype)
    opts = dict(temperature=float(rng.choice([0.4, 1.0, 2.0])), sharpen=str(rng.choice(["target", "augmented"])),
                confidence_threshold=[None, 0.5, 0.8][seed % 3], normalize=str(rng.choice(["kept_rows", "all_rows"])))
    ar = aug.clone().requires_grad_(True)
    want = uda_ref(ori, ar, opts["temperature"], opts["sharpen"], opts["confidence_threshold"], opts["normalize"])
    (ga,) = torch.autograd.grad(want, ar)
    r = infoloss.uda_consistency(ori.numpy(), aug.numpy(), **opts)
    check(r.loss, want, dtype, f"uda loss {opts}")
    check(r.grad_aug, ga, dtype, f"uda grad {opts}")
    ar = aug.clone().requires_grad_(True)
    orr = ori.clone().requires_grad_(True)
    out = itorch.uda_consistency(orr, ar, **opts)
    assert out.shape == () and out.dtype == dtype
    (out * 3.0).backward()
    check(out, want, dtype, "itorch uda loss")
    check(ar.grad, 3 * ga, dtype, "itorch uda grad")
    assert orr.grad is None  # the original logits are a constant


def ce_extras_ref(x, y, w, ii, red, eps, s, cap):
    xc = cap * torch.tanh(x / cap) if cap is not None else x
    lse = torch.logsumexp(xc, 1)
    keep = y != ii
    loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, reduction=red, label_smoothing=eps)
    if s:
        z = torch.where(keep, s * lse.pow(2), torch.zeros_like(lse))
        loss = loss + {"mean": z.sum() / keep.sum(), "sum": z.sum(), "none": z}[red]
    return loss, lse


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cross_entropy_extras_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 44])
    N, C = 7, 6
    x = torch.tensor(rng.normal(size=(N, C)) * 3, dtype=dtype)
    y = torch.tensor(rng.integers(0, C, size=N))
    y[2] = -100
    w = torch.tensor(rng.uniform(0.5, 2, size=C), dtype=dtype) if seed % 2 else None
    red = ["mean", "sum", "none"][seed % 3]
    eps = [0.0, 0.1][seed % 2]
    s = [0.0, 1e-2, 0.5][seed % 3]
    cap = [None, 2.0, 30.0][(seed // 3) % 3]
    xr = x.clone().requires_grad_(True)
    want, lse = ce_extras_ref(xr, y, w, -100, red, eps, s, cap)
    g = torch.tensor(rng.normal(size=tuple(want.shape)), dtype=dtype)
    (gx,) = torch.autograd.grad(want, xr, g)
    r = infoloss.cross_entropy_extras_with_grad(x.numpy(), y.numpy(), None if w is None else w.numpy(),
                                                reduction=red, label_smoothing=eps, lse_square_scale=s, softcap=cap,
                                                return_lse=True, grad_output=g.numpy())
    check(r.loss, want, dtype, "ce_extras loss")
    check(r.lse, lse, dtype, "ce_extras lse")
    check(r.grad_input, gx, dtype, "ce_extras grad")


# ------------------------------------------------------------------------------------- fused linear losses


def test_linear_cross_entropy_signature_extends_torchs():
    def sig(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    want = sig(F.linear_cross_entropy)
    # the drop-in has torch's spelling exactly: ignore_index: Optional[int] = None, meaning -100
    assert sig(itorch.linear_cross_entropy)[: len(want)] == want
    assert ("ignore_index", inspect.Parameter.KEYWORD_ONLY, None) in want
    # the NumPy API spells the same default -100, as its other functions do
    numpy_want = [(n, k, -100 if n == "ignore_index" else d) for n, k, d in want if n != "options"]
    assert sig(infoloss.linear_cross_entropy)[: len(numpy_want)] == numpy_want


def test_linear_ignore_index_defaults_mean_minus_100():
    x, w = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, -100, 3, 1, -100])
    want = F.linear_cross_entropy(x, w, y)
    torch.testing.assert_close(itorch.linear_cross_entropy(x, w, y), want, rtol=1e-13, atol=0)
    torch.testing.assert_close(itorch.linear_cross_entropy(x, w, y, ignore_index=-100), want, rtol=1e-13, atol=0)
    assert inspect.signature(itorch.linear_distill).parameters["ignore_index"].default == -100
    ld = itorch.linear_distill(x, w, x, w, y, alpha=0.5)
    ld_explicit = itorch.linear_distill(x, w, x, w, y, alpha=0.5, ignore_index=-100)
    torch.testing.assert_close(ld, ld_explicit, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_linear_cross_entropy_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 45])
    N, H, C = int(rng.integers(1, 9)), int(rng.integers(1, 6)), int(rng.integers(2, 8))
    x = torch.tensor(rng.normal(size=(N, H)), dtype=dtype)
    w = torch.tensor(rng.normal(size=(C, H)), dtype=dtype)
    b = torch.tensor(rng.normal(size=C), dtype=dtype) if seed % 2 else None
    y = torch.tensor(rng.integers(0, C, size=N))
    kw = dict(reduction=["mean", "sum", "none"][seed % 3], label_smoothing=[0.0, 0.2][(seed // 2) % 2])
    if seed % 4 == 1:
        kw["weight"] = torch.tensor(rng.uniform(0.5, 2, size=C), dtype=dtype)
    if seed % 5 == 2:
        kw["ignore_index"] = int(y[0])
    if seed == 3:
        x, y = x[0], y[0]  # a single row without batch dimension
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    br = None if b is None else b.clone().requires_grad_(True)
    want = F.linear_cross_entropy(xr, wr, y, linear_bias=br, **kw)
    unfused = F.cross_entropy(F.linear(x, w, b), y, **{k: v for k, v in kw.items() if k != "ignore_index"},
                              ignore_index=kw.get("ignore_index", -100))
    torch.testing.assert_close(want.detach(), unfused, rtol=1e-5, atol=1e-6)
    g = torch.tensor(rng.normal(size=tuple(want.shape)), dtype=dtype)
    grads = torch.autograd.grad(want, [xr, wr] + ([br] if b is not None else []), g)
    npkw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    r = infoloss.linear_cross_entropy_with_grad(x.numpy(), w.numpy(), y.numpy(),
                                                linear_bias=None if b is None else b.numpy(), grad_output=g.numpy(),
                                                chunk_size=int(rng.integers(1, 4)), **npkw)
    check(r.loss, want, dtype, f"linear ce loss {kw}")
    check(r.grad_input, grads[0], dtype, "grad_input")
    check(r.grad_linear_weight, grads[1], dtype, "grad_linear_weight")
    if b is not None:
        check(r.grad_linear_bias, grads[2], dtype, "grad_linear_bias")
    # the drop-in, with the same upstream gradient
    xr2, wr2 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    br2 = None if b is None else b.clone().requires_grad_(True)
    out = itorch.linear_cross_entropy(xr2, wr2, y, linear_bias=br2, **kw)
    assert out.dtype == dtype and out.shape == want.shape
    out.backward(g)
    check(out, want, dtype, "itorch linear ce loss")
    check(xr2.grad, grads[0], dtype, "itorch input.grad")
    check(wr2.grad, grads[1], dtype, "itorch linear_weight.grad")
    if b is not None:
        check(br2.grad, grads[2], dtype, "itorch linear_bias.grad")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_linear_distill_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 46])
    N, Hs, Ht, V = 6, 4, 3, 7
    xs = torch.tensor(rng.normal(size=(N, Hs)), dtype=dtype)
    ws = torch.tensor(rng.normal(size=(V, Hs)), dtype=dtype)
    xt = torch.tensor(rng.normal(size=(N, Ht)), dtype=dtype)
    wt = torch.tensor(rng.normal(size=(V, Ht)), dtype=dtype)
    _, _, y, opts = random_distill(rng, dtype)
    if y is not None:
        y = torch.tensor(rng.integers(0, V, size=N))
        y[1] = -100
    xr, wr = xs.clone().requires_grad_(True), ws.clone().requires_grad_(True)
    want = distill_ref(F.linear(xr, wr), F.linear(xt, wt), y, **opts)
    gx, gw = torch.autograd.grad(want.sum(), [xr, wr])
    loss, ggx, ggw, _ = infoloss.linear_distill_with_grad(xs.numpy(), ws.numpy(), xt.numpy(), wt.numpy(),
                                                          None if y is None else y.numpy(), chunk_size=4, **opts)
    check(loss, want, dtype, f"linear distill loss {opts}")
    check(ggx, gx, dtype, "linear distill grad_hidden")
    check(ggw, gw, dtype, "linear distill grad_weight")
    xr2, wr2 = xs.clone().requires_grad_(True), ws.clone().requires_grad_(True)
    xt2 = xt.clone().requires_grad_(True)
    out = itorch.linear_distill(xr2, wr2, xt2, wt, y, chunk_size=4, **opts)
    out.sum().backward()
    check(out, want, dtype, "itorch linear distill loss")
    check(xr2.grad, gx, dtype, "itorch student_hidden.grad")
    check(wr2.grad, gw, dtype, "itorch student_weight.grad")
    assert xt2.grad is None


def topk_rows(s, t, T, k, add_tail, div, beta):
    """The per-row soft loss against the teacher's top-k buckets (+ the tail), as distill_topk defines it."""
    a = s / T
    lse = torch.logsumexp(a, 1)
    idx = t.topk(k, 1).indices
    lq = F.log_softmax(t / T, 1).gather(1, idx)
    lp = a.gather(1, idx) - lse[:, None]
    if add_tail:
        inside = torch.zeros(s.shape, dtype=torch.bool).scatter(1, idx, True)
        lp = torch.cat([lp, (torch.logsumexp(a.masked_fill(inside, -np.inf), 1) - lse)[:, None]], 1)
        x = torch.logsumexp(lq, 1)
        lq_tail = torch.where(x > -np.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
        lq = torch.cat([lq, lq_tail[:, None]], 1)
    if div == "forward_kl":
        return F.kl_div(lp, lq, reduction="none", log_target=True).sum(1)
    if div == "reverse_kl":
        return F.kl_div(lq, lp, reduction="none", log_target=True).sum(1)
    return 0.5 * (lp.exp() - lq.exp()).abs().sum(1)


def stored_topk(t_logits, T, k):
    """A teacher cache's row: the top-k classes of the teacher logits and their log-probabilities at T."""
    lq, idx = torch.topk(F.log_softmax(t_logits / T, 1), k, 1)
    return idx, lq


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("stored", [False, True], ids=["teacher_head", "stored_topk"])
def test_linear_distill_bias_topk_upstream_matches_torch(seed, dtype, stored):
    """``linear_distill`` (the teacher's head, optionally cut to its top-k) and ``linear_distill_topk`` (the
    teacher's top-k as a cache stores it; the dense teacher as k = V) against the same torch expression."""
    rng = np.random.default_rng([seed, 47])
    N, Hs, Ht, V = 6, 4, 3, 9

    def t(*shape):
        return torch.tensor(rng.normal(size=shape), dtype=dtype)

    xs, ws, bs, xt, wt, bt = t(N, Hs), t(V, Hs), t(V), t(N, Ht), t(V, Ht), t(V)
    T = float(rng.choice([0.7, 1.0, 2.0]))
    div = str(rng.choice(["forward_kl", "reverse_kl", "tvd"]))
    k = [None, 1, 3, V][seed % 4]
    if stored and k is None:
        k = V
    tail = bool(seed % 2) and k not in (None, V)
    red = ["batchmean", "none", "sum", "none"][seed % 4]
    g = t(N) if red == "none" else torch.tensor(float(rng.uniform(-2, 2)), dtype=dtype)
    xr, wr, br = (a.clone().requires_grad_(True) for a in (xs, ws, bs))
    s_l, t_l = F.linear(xr, wr, br), F.linear(xt, wt, bt)
    rows = (divergence_rows(s_l, t_l, T, div, 0.0) if k is None else topk_rows(s_l, t_l, T, k, tail, div, 0.0)) * T * T
    want = {"batchmean": rows.sum() / N, "sum": rows.sum(), "none": rows}[red]
    grads = torch.autograd.grad(want, [xr, wr, br], g)
    opts = dict(temperature=T, divergence=div, reduction=red, add_tail=tail)
    if stored:
        idx, lq = stored_topk(t_l.detach(), T, k)
        r = infoloss.linear_distill_topk_with_grad(xs.numpy(), ws.numpy(), idx.numpy(), lq.numpy(),
                                                   student_bias=bs.numpy(), chunk_size=4, grad_output=g.numpy(),
                                                   **opts)
    else:
        opts["teacher_topk"] = k
        r = infoloss.linear_distill_with_grad(xs.numpy(), ws.numpy(), xt.numpy(), wt.numpy(), student_bias=bs.numpy(),
                                              teacher_bias=bt.numpy(), chunk_size=4, grad_output=g.numpy(), **opts)
    what = f"linear distill {opts} stored={stored}"
    check(r.loss, want, dtype, f"{what}: loss")
    for got, want_g, name in zip(r[1:], grads, ("hidden", "weight", "bias")):
        check(got, want_g, dtype, f"{what}: grad_{name}")
    # the autograd drop-in, with the same per-row or scalar upstream gradient
    xr2, wr2, br2 = (a.clone().requires_grad_(True) for a in (xs, ws, bs))
    if stored:
        out = itorch.linear_distill_topk(xr2, wr2, idx, lq, student_bias=br2, chunk_size=4, **opts)
    else:
        out = itorch.linear_distill(xr2, wr2, xt, wt, student_bias=br2, teacher_bias=bt, chunk_size=4, **opts)
    out.backward(g)
    check(out, want, dtype, f"itorch {what}: loss")
    for got, want_g, name in zip((xr2.grad, wr2.grad, br2.grad), grads, ("hidden", "weight", "bias")):
        check(got, want_g, dtype, f"itorch {what}: grad_{name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_uda_backward_matches_torch_upstream(dtype):
    rng = np.random.default_rng(48)
    ori = torch.tensor(rng.normal(size=(7, 6)) * 2, dtype=dtype)
    aug = torch.tensor(rng.normal(size=(7, 6)) * 2, dtype=dtype)
    for opts in (dict(temperature=0.4, confidence_threshold=0.5), dict(temperature=1.5, sharpen="augmented",
                                                                        normalize="all_rows")):
        ar = aug.clone().requires_grad_(True)
        want = uda_ref(ori, ar, opts["temperature"], opts.get("sharpen", "target"), opts.get("confidence_threshold"),
                       opts.get("normalize", "kept_rows"))
        (ga,) = torch.autograd.grad(want, ar, torch.tensor(-0.35, dtype=dtype))
        check(infoloss.uda_consistency_backward(ori.numpy(), aug.numpy(), -0.35, **opts), ga, dtype,
              f"uda backward {opts}")
        ar2 = aug.clone().requires_grad_(True)
        (itorch.uda_consistency(ori, ar2, **opts) * -0.35).backward()
        check(ar2.grad, ga, dtype, f"itorch uda backward {opts}")


# ------------------------------------------------------------------------------------------ infoloss.torch


def test_gradcheck():
    rng = np.random.default_rng(12)

    def t(*shape):
        return torch.tensor(rng.normal(size=shape), dtype=torch.float64)

    s, te = t(4, 5).requires_grad_(True), t(4, 5)
    y = torch.tensor([0, -100, 4, 2])
    assert torch.autograd.gradcheck(
        lambda a: itorch.distill(a, te, y, divergence="jsd", beta=0.3, alpha=0.5, temperature=1.5,
                                 reduction="none"), (s,))
    lq, idx = torch.topk(F.log_softmax(te, 1), 2, 1)
    assert torch.autograd.gradcheck(lambda a: itorch.distill_topk(a, idx, lq, add_tail=True,
                                                                  divergence="reverse_kl"), (s,))
    assert torch.autograd.gradcheck(lambda a: itorch.uda_consistency(te, a, temperature=0.6,
                                                                     sharpen="augmented"), (s,))
    x, w, b = t(5, 3).requires_grad_(True), t(4, 3).requires_grad_(True), t(4).requires_grad_(True)
    yy = torch.tensor([0, 3, 1, -100, 2])
    for red in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda a, c, d: itorch.linear_cross_entropy(a, c, yy, linear_bias=d, reduction=red, softcap=2.0,
                                                        lse_square_scale=0.1, label_smoothing=0.1, chunk_size=2),
            (x, w, b))
    xt, wt = t(5, 2), t(4, 2)
    assert torch.autograd.gradcheck(lambda a, c: itorch.linear_distill(a, c, xt, wt, temperature=2.0), (x, w))
    bt = t(4)
    assert torch.autograd.gradcheck(
        lambda a, c, d: itorch.linear_distill(a, c, xt, wt, student_bias=d, teacher_bias=bt, teacher_topk=2,
                                              add_tail=True, divergence="reverse_kl", reduction="none",
                                              chunk_size=2), (x, w, b))
    idx, lq = stored_topk(F.linear(xt, wt, bt), 1.5, 2)
    yy[0] = -100
    for div in ("forward_kl", "jsd", "tvd"):
        assert torch.autograd.gradcheck(
            lambda a, c, d: itorch.linear_distill_topk(a, c, idx, lq, yy, student_bias=d, add_tail=True,
                                                       divergence=div, beta=0.3, alpha=0.6, temperature=1.5,
                                                       softcap=3.0, reduction="none", chunk_size=2), (x, w, b))


def test_dtypes_no_grad_options_and_errors():
    torch.manual_seed(0)
    s = torch.randn(4, 6).bfloat16().requires_grad_(True)
    te = torch.randn(4, 6).bfloat16()
    out = itorch.distill(s, te, reduction="none")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, itorch.distill(s.detach().float(), te.float(), reduction="none").bfloat16(),
                               rtol=0, atol=0)
    out.sum().backward()
    assert s.grad.dtype == torch.bfloat16
    h = torch.randn(4, 6).half().requires_grad_(True)
    w = torch.randn(5, 6).half().requires_grad_(True)
    loss = itorch.linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 3]))
    assert loss.dtype == torch.float16
    loss.backward()
    assert h.grad.dtype == torch.float16 and w.grad.dtype == torch.float16
    with torch.no_grad():
        out = itorch.distill(s, te)
    assert out.grad_fn is None and not out.requires_grad
    # nn.LinearCrossEntropyOptions' batch_chunk_size is used as the chunk size
    x, ww, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 5, (7,))
    a = itorch.linear_cross_entropy(x, ww, y, options=torch.nn.LinearCrossEntropyOptions(batch_chunk_size=2))
    torch.testing.assert_close(a, F.linear_cross_entropy(x, ww, y), rtol=1e-13, atol=1e-15)
    with pytest.raises(TypeError, match="student_logits must be a torch.Tensor"):
        itorch.distill(np.zeros((2, 3)), te)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        itorch.distill(s, te, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="invalid divergence"):
        itorch.distill(s, te, divergence="kl")
    with pytest.raises(IndexError, match="out of range"):
        itorch.linear_cross_entropy(x, ww, torch.full((7,), 5))
    with pytest.raises(NotImplementedError, match="class weight"):
        itorch.linear_cross_entropy(x, ww, y, weight=torch.ones(5, requires_grad=True, dtype=torch.float64))
    # linear_distill: a per-row upstream gradient of 'none' gives each row's gradient its own factor
    xs = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    ws, xt, wt = (torch.randn(*sh, dtype=torch.float64) for sh in ((4, 2), (3, 2), (4, 2)))
    out = itorch.linear_distill(xs, ws, xt, wt, reduction="none")
    out.backward(torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64), retain_graph=True)
    g1 = xs.grad.clone()
    assert torch.all(g1[1] == 0) and torch.all(g1[0] != 0)
    xs.grad = None
    out.backward(torch.full((3,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(xs.grad[2], g1[2] * 2 / 3, rtol=1e-13, atol=0)


def test_a_distillation_training_step_matches_torch():
    torch.manual_seed(2)
    student = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    teacher = torch.nn.Linear(6, 5)
    xb, yb = torch.randn(32, 6), torch.randint(0, 5, (32,))
    with torch.no_grad():
        t_logits = teacher(xb)
    grads = {}
    for name in ("torch", "infoloss"):
        student.zero_grad()
        s_logits = student(xb)
        if name == "torch":
            loss = distill_ref(s_logits, t_logits, yb, 2.0, True, "forward_kl", 0.5, 0.5, -100, "batchmean", None)
        else:
            loss = itorch.distill(s_logits, t_logits, yb, temperature=2.0, alpha=0.5)
        loss.backward()
        grads[name] = [p.grad.clone() for p in student.parameters()]
    for a, b in zip(grads["torch"], grads["infoloss"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_repeated_backward_passes_through_a_retained_graph():
    # the forward's gradients are handed to autograd without a copy; later passes must not see them mutated by
    # autograd's in-place accumulation into .grad
    torch.manual_seed(4)
    y = torch.tensor([0, 1, 2])
    x = torch.randn(3, 4, dtype=torch.float64)
    w = torch.randn(4, 4, dtype=torch.float64)
    te = torch.randn(3, 4, dtype=torch.float64)
    cases = [
        (lambda a: itorch.cross_entropy(a, y), lambda a: F.cross_entropy(a, y)),
        (lambda a: itorch.distill(a, te, temperature=2.0),
         lambda a: distill_ref(a, te, None, 2.0, True, "forward_kl", 0.5, 1.0, -100, "batchmean", None)),
        (lambda a: itorch.uda_consistency(te, a), lambda a: uda_ref(te, a, 1.0, "target", None, "kept_rows")),
        (lambda a: itorch.linear_cross_entropy(a, w, y), lambda a: F.linear_cross_entropy(a, w, y)),
        (lambda a: itorch.linear_distill(a, w, te, w).sum(),
         lambda a: distill_ref(F.linear(a, w), F.linear(te, w), None, 1.0, True, "forward_kl", 0.5, 1.0, -100,
                               "batchmean", None)),
    ]
    for ours, ref in cases:
        grads = []
        for f in (ours, ref):
            a = x.clone().requires_grad_(True)
            loss = f(a)
            for scale in (1.0, 2.0, 1.0):
                (loss * scale).backward(retain_graph=True)
            grads.append(a.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def test_linear_distill_topk_trains_with_accumulation_and_compiles():
    """A short distillation from a teacher's stored top-k: a student (body + head) trained with two micro-batches
    per step gets the gradients of the torch expression (logits materialized), eager and under
    ``torch.compile(fullgraph=True)``."""
    torch.manual_seed(3)
    V, k, T = 11, 3, 2.0
    teacher = torch.nn.Linear(6, V)
    xb, yb = torch.randn(24, 6), torch.randint(0, V, (24,))
    yb[::5] = -100
    with torch.no_grad():
        idx, lq = stored_topk(teacher(xb), T, k)  # the cache: written once, read every step

    def ours(h, head, sl):
        return itorch.linear_distill_topk(h, head.weight, idx[sl], lq[sl], yb[sl], student_bias=head.bias,
                                          add_tail=True, temperature=T, alpha=0.7, normalizer=24.0, chunk_size=5)

    def ref(h, head, sl):
        s = F.linear(h, head.weight, head.bias) / T
        lse = torch.logsumexp(s, 1)
        lp = s.gather(1, idx[sl]) - lse[:, None]
        inside = torch.zeros(s.shape, dtype=torch.bool).scatter(1, idx[sl], True)
        lp = torch.cat([lp, (torch.logsumexp(s.masked_fill(inside, -np.inf), 1) - lse)[:, None]], 1)
        lqs = lq[sl]
        lqt = torch.cat([lqs, torch.log1p(-torch.exp(torch.logsumexp(lqs, 1)))[:, None]], 1)
        keep = yb[sl] != -100
        soft = torch.where(keep, F.kl_div(lp, lqt, reduction="none", log_target=True).sum(1), 0.0) * T * T
        hard = F.cross_entropy(F.linear(h, head.weight, head.bias), yb[sl], reduction="sum")
        return (0.7 * soft.sum() + 0.3 * hard) / 24.0

    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    models = {}
    for name, loss_fn in (("torch", ref), ("eager", ours), ("compiled", compiled)):
        torch.manual_seed(5)
        body, head = torch.nn.Linear(6, 8), torch.nn.Linear(8, V)
        opt = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            for sl in (slice(0, 12), slice(12, 24)):  # gradient accumulation over two micro-batches
                loss_fn(torch.tanh(body(xb[sl])), head, sl).backward()
            opt.step()
        models[name] = [p.detach().clone() for p in (*body.parameters(), *head.parameters())]
    for name in ("eager", "compiled"):
        for got, want in zip(models[name], models["torch"]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("red", ["batchmean", "none"])
def test_linear_distill_topk_operator_passes_opcheck(red):
    """The operator's schema (the catalog's options, then ``add_tail``), fake implementation and autograd."""
    from infoloss import _common as c

    rng = np.random.default_rng(49)

    def t(*shape):
        return torch.tensor(rng.normal(size=shape), dtype=torch.float64)

    h, w, b = (a.requires_grad_(True) for a in (t(4, 3), t(5, 3), t(5)))
    idx, lq = stored_topk(t(4, 5), 2.0, 2)
    opts = c.option_tuple("linear_distill_topk", {"reduction": red, "temperature": 2.0, "chunk_size": 2})
    args = (h, w, idx, lq, torch.tensor([0, 4, -100, 2]), b, *opts, True, [True, True, True])
    result = torch.library.opcheck(torch.ops.infoloss.linear_distill_topk.default, args)
    assert all(v == "SUCCESS" for v in result.values()), result
