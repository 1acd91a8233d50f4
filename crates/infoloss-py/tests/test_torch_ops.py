"""``infoloss.torch`` as real torch operators (skipped without torch): the custom ops pass ``torch.library.opcheck``
(schema, fake shapes, autograd registration, AOT dispatch), ``torch.compile(fullgraph=True)`` traces every drop-in
without graph breaks and gives the eager numbers, double backward raises instead of being silently wrong, autocast
follows torch's CPU policy, torch's thread count reaches infoloss, and ``cross_entropy_extras`` matches its torch
composition."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import infoloss  # noqa: E402
import infoloss.torch as itorch  # noqa: E402
from conftest import mismatches  # noqa: E402

TOL = {torch.float32: (1e-6, 1e-7), torch.float64: (1e-12, 1e-12)}
# torch composes some references from several float32 ops that each round; infoloss rounds once
COMPOSED_TOL = {torch.float32: (2e-5, 2e-6), torch.float64: (1e-11, 1e-12)}


def check(got, want, what, tol):
    rtol, atol = tol
    got = np.asarray(got.detach().double().numpy() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    want = np.asarray(want.detach().double().numpy() if isinstance(want, torch.Tensor) else want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    bad = mismatches(got, want, rtol, atol)
    assert not bad, f"{what}: {len(bad)} elements differ, e.g. {got.reshape(-1)[bad[0]]!r} vs {want.reshape(-1)[bad[0]]!r}"


def rand(*shape, dtype=torch.float64, grad=False, scale=1.0, seed=None):
    g = torch.Generator().manual_seed(seed if seed is not None else sum(shape) * 7 + len(shape))
    t = torch.randn(*shape, generator=g, dtype=torch.float64).mul(scale).to(dtype)
    return t.requires_grad_(grad)


# ------------------------------------------------------------------------------------------------ opcheck


def op_cases():
    """(op name, args) for torch.library.opcheck: every operator, reduced and unreduced, with gradients wanted.
    An operator's options are the catalog's of its loss, in the catalog's order, then the front end's own."""
    x, p = rand(4, 5, grad=True), torch.softmax(rand(4, 5, seed=3), 1).requires_grad_(True)
    y = torch.tensor([0, 4, -100, 2])
    w = rand(5, seed=4).abs()
    s, t = rand(4, 5, grad=True, seed=5), rand(4, 5, seed=6)
    lq, idx = torch.topk(torch.log_softmax(t, 1), 3, 1)
    h, lw, lb = rand(4, 3, grad=True, seed=7), rand(5, 3, grad=True, seed=8), rand(5, grad=True, seed=9)
    ht, wt = rand(4, 2, seed=10), rand(5, 2, seed=11)
    dopts = (2.0, True, "forward_kl", 0.5, 0.5, -100)
    cases = []
    for red in ("mean", "none"):
        cases += [
            ("cross_entropy", (x, y, w, -100, red, 0.1, [True, False])),
            ("cross_entropy", (x, p, None, -100, red, 0.0, [True, True])),
            ("nll_loss", (torch.log_softmax(x.detach(), 1).requires_grad_(True), y, w, -100, red, [True])),
            ("kl_div", (torch.log_softmax(x.detach(), 1).requires_grad_(True), p, red, False, False, [True, True])),
            ("binary_cross_entropy", (torch.sigmoid(x.detach()).requires_grad_(True), p, None, red, [True, True])),
            ("binary_cross_entropy_with_logits", (x, p, w, w, red, [True, True])),
            ("distill", (s, t, y, *dopts, "batchmean" if red == "mean" else "none", None, 1.0, None, [True])),
            ("distill_topk", (s, idx, lq, y, *dopts, "batchmean" if red == "mean" else "none", None, 1.0, None, True,
                              [True])),
            ("cross_entropy_extras", (x, y, w, -100, red, 0.1, 0.01, 3.0, True, True, [True])),
            ("linear_cross_entropy", (h, lw, y, lb, None, -100, red, 0.1, 0.0, None, False, False, 2,
                                      [True, True, True])),
            ("linear_distill", (h, lw, ht, wt, y, lb, None, *dopts, "batchmean" if red == "mean" else "none", None,
                                1.0, None, 2, None, False, [True, True, True])),
        ]
    cases += [
        ("uda_consistency", (t, s, 0.5, "target", 0.3, "kept_rows", [True])),
        ("log_softmax", (x, 1, [True])),
        ("softmax", (x, 0, [True])),
        ("logsumexp", (x, [0, 1], False, [True])),
        ("logsumexp", (x, [-1], True, [True])),
        ("cross_entropy", (x, y, None, -100, "sum", 0.0, [False, False])),  # no gradient wanted
    ]
    return cases


@pytest.mark.parametrize("name, args", op_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_operator_passes_opcheck(name, args):
    op = getattr(torch.ops.infoloss, name).default
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


def test_operators_are_registered_in_the_infoloss_namespace():
    for name in itorch.__all__:
        assert hasattr(torch.ops.infoloss, name), name
        assert hasattr(torch.ops.infoloss, name + "_backward"), name


# ------------------------------------------------------------------------------------------- torch.compile


class Model(torch.nn.Module):
    """A small classifier whose loss uses every drop-in (each term scaled so that none dominates)."""

    def __init__(self, H=6, C=5):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(4, H)
        self.head = torch.nn.Linear(H, C)

    def forward(self, x, y, probs, teacher, ot):
        h = torch.tanh(self.body(x))
        z = self.head(h)
        lsm = itorch.log_softmax(z, 1)
        lq, idx = torch.topk(itorch.log_softmax(teacher, 1), 3, 1)
        extras = itorch.cross_entropy_extras(z, y, self.head.bias.detach().abs() + 0.5, label_smoothing=0.1,
                                             lse_square_scale=0.01, softcap=4.0, return_lse=True,
                                             return_token_accuracy=True)
        terms = [
            itorch.cross_entropy(z, y, weight=torch.linspace(0.5, 1.5, z.shape[1]), ignore_index=-100,
                                 label_smoothing=0.1),
            itorch.cross_entropy(z, probs),
            itorch.nll_loss(lsm, y),
            itorch.kl_div(lsm, itorch.softmax(teacher, 1), reduction="batchmean"),
            itorch.binary_cross_entropy(torch.sigmoid(z), probs),
            itorch.binary_cross_entropy_with_logits(z, probs, pos_weight=torch.full((z.shape[1],), 2.0)),
            itorch.logsumexp(z, 1).mean() * 0.1,
            itorch.distill(z, teacher, y, temperature=2.0, alpha=0.5),
            itorch.distill_topk(z, idx, lq, add_tail=True),
            itorch.uda_consistency(ot, z, temperature=0.5),
            itorch.linear_cross_entropy(h, self.head.weight, y, linear_bias=self.head.bias, label_smoothing=0.1),
            itorch.linear_distill(h, self.head.weight, ot[:, :3], teacher.new_ones(z.shape[1], 3), y,
                                  student_bias=self.head.bias, temperature=2.0),
            itorch.linear_distill_topk(h, self.head.weight, idx, lq, y, student_bias=self.head.bias, add_tail=True),
            extras.loss,
        ]
        return sum(terms), extras.lse, extras.token_accuracy


def model_inputs(seed=1, N=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 4, generator=g)
    y = torch.randint(0, 5, (N,), generator=g)
    y[1] = -100
    probs = torch.softmax(torch.randn(N, 5, generator=g), 1)
    return x, y, probs, torch.randn(N, 5, generator=g), torch.randn(N, 5, generator=g)


def run(model, fn, inputs):
    model.zero_grad()
    loss, lse, acc = fn(*inputs)
    loss.backward()
    return loss.detach(), lse.detach(), acc, [p.grad.clone() for p in model.parameters()]


def test_compile_fullgraph_has_no_graph_breaks_and_the_eager_numbers():
    torch._dynamo.reset()
    model = Model()
    inputs = model_inputs()
    explain = torch._dynamo.explain(model)(*inputs)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1
    eager = run(model, model, inputs)
    compiled_model = torch.compile(model, fullgraph=True)
    for seed in (1, 2):  # a second batch reuses the compiled graph
        inputs = model_inputs(seed)
        eager = run(model, model, inputs)
        comp = run(model, compiled_model, inputs)
        check(comp[0], eager[0], "loss", (1e-6, 1e-6))
        check(comp[1], eager[1], "lse", TOL[torch.float32])
        assert isinstance(eager[2], float) and isinstance(comp[2], torch.Tensor)  # documented: a tensor in graphs
        assert comp[2].dtype == torch.float64 and comp[2].item() == eager[2]
        for i, (a, b) in enumerate(zip(comp[3], eager[3])):
            check(a, b, f"grad of parameter {i}", (1e-5, 1e-6))


def test_every_custom_op_is_in_the_compiled_graph():
    torch._dynamo.reset()
    model = Model()
    seen = set()

    def backend(gm, example_inputs):
        for node in gm.graph.nodes:
            if node.op == "call_function" and "infoloss" in str(node.target):
                seen.add(str(node.target).split(".")[-2])
        return gm.forward

    torch.compile(model, backend=backend, fullgraph=True)(*model_inputs())
    assert set(itorch.__all__) <= seen, set(itorch.__all__) - seen


def test_compiled_unreduced_losses_use_the_backward_operator():
    torch._dynamo.reset()
    x = rand(6, 5, grad=True, seed=21)
    y = torch.tensor([0, 1, 2, 3, 4, -100])
    g = rand(6, seed=22)

    def f(a):
        return (itorch.cross_entropy(a, y, reduction="none", label_smoothing=0.2) * g).sum() + \
            (itorch.log_softmax(a, 1) * a.detach()).sum()

    x.grad = None
    f(x).backward()
    want = x.grad.clone()
    x.grad = None
    torch.compile(f, fullgraph=True)(x).backward()
    check(x.grad, want, "grad", TOL[torch.float64])
    xr = x.detach().clone().requires_grad_(True)
    ((F.cross_entropy(xr, y, reduction="none", label_smoothing=0.2) * g).sum() +
     (F.log_softmax(xr, 1) * xr.detach()).sum()).backward()
    check(want, xr.grad, "grad vs torch", TOL[torch.float64])


# ------------------------------------------------------------------------------------------ double backward


DOUBLE_BACKWARD = {
    "cross_entropy": lambda a: itorch.cross_entropy(a, torch.tensor([0, 2, 1]), label_smoothing=0.1),
    "cross_entropy_none": lambda a: itorch.cross_entropy(a, torch.tensor([0, 2, 1]), reduction="none").sum(),
    "kl_div": lambda a: itorch.kl_div(itorch.log_softmax(a, 1), torch.full((3, 4), 0.25), reduction="batchmean"),
    "log_softmax": lambda a: itorch.log_softmax(a, 1)[:, 0].sum(),
    "distill": lambda a: itorch.distill(a, torch.ones(3, 4), temperature=2.0),
    "uda_consistency": lambda a: itorch.uda_consistency(torch.ones(3, 4), a),
    "linear_cross_entropy": lambda a: itorch.linear_cross_entropy(a, torch.eye(4, dtype=a.dtype),
                                                                  torch.tensor([0, 2, 1])),
    "cross_entropy_extras": lambda a: itorch.cross_entropy_extras(a, torch.tensor([0, 2, 1]),
                                                                  lse_square_scale=0.1).loss,
}


@pytest.mark.parametrize("name", list(DOUBLE_BACKWARD))
def test_double_backward_raises_and_first_order_is_unchanged(name):
    f = DOUBLE_BACKWARD[name]
    op = name.replace("_none", "")
    if name == "kl_div":
        op = "(kl_div|log_softmax)"
    x = rand(3, 4, grad=True, seed=30)
    (plain,) = torch.autograd.grad(f(x), x)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    # the first-order gradient of a create_graph pass is the plain one, and the pass itself works
    torch.testing.assert_close(g.detach(), plain, rtol=0, atol=0)
    assert g.requires_grad
    # a gradient penalty differentiates it again: an error naming the op, never a silently wrong gradient
    penalty = f(x) + 0.1 * g.pow(2).sum()
    with pytest.raises(RuntimeError, match=rf"infoloss\.{op}: double backward is not supported"):
        penalty.backward()
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(g.sum(), x)


def test_create_graph_backward_of_a_model_works_to_first_order():
    model = Model()
    inputs = model_inputs(3)
    loss = model(*inputs)[0]
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    model.zero_grad()
    model(*inputs)[0].backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g.detach(), p.grad, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------- autocast


def torch_policy_cases():
    """(name, our call, torch's call, input, target) for the losses torch autocasts (and the row functions)."""
    y = torch.tensor([0, 4, -100, 2, 1, 3])
    return [
        ("cross_entropy", lambda f, a, t: f.cross_entropy(a, y, label_smoothing=0.1), None),
        ("cross_entropy_probs", lambda f, a, t: f.cross_entropy(a, t), "probs"),
        ("nll_loss", lambda f, a, t: f.nll_loss(a, y), None),
        ("kl_div", lambda f, a, t: f.kl_div(a, t, reduction="batchmean"), "probs"),
        ("binary_cross_entropy", lambda f, a, t: f.binary_cross_entropy(torch.sigmoid(a), t), "probs"),
        ("binary_cross_entropy_with_logits", lambda f, a, t: f.binary_cross_entropy_with_logits(a, t), "probs"),
        ("log_softmax", lambda f, a, t: f.log_softmax(a, 1), None),
        ("softmax", lambda f, a, t: f.softmax(a, 1), None),
        ("logsumexp", lambda f, a, t: (torch if f is F else itorch).logsumexp(a, 1), None),
    ]


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("in_dtype", [torch.float32, "amp"], ids=["f32_input", "amp_input"])
@pytest.mark.parametrize("case", torch_policy_cases(), ids=lambda c: c[0])
def test_autocast_follows_torchs_cpu_policy(case, in_dtype, amp):
    name, call, target = case
    dt = amp if in_dtype == "amp" else torch.float32
    base = rand(6, 5, seed=40, scale=2.0).to(dt)
    t = torch.softmax(rand(6, 5, seed=41), 1).to(dt) if target else None
    results = []
    for f in (F, itorch):
        a = base.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=amp):
            out = call(f, a, t)
        out.float().sum().backward()
        results.append((out, a.grad))
    (want, want_g), (got, got_g) = results
    assert got.dtype == want.dtype, f"{name}: loss dtype {got.dtype}, torch's {want.dtype}"
    assert got_g.dtype == want_g.dtype, f"{name}: grad dtype {got_g.dtype}, torch's {want_g.dtype}"
    if got.dtype == torch.float32:
        # both computed in float32 from the same (exactly widened) inputs
        check(got, want, f"{name} loss", COMPOSED_TOL[torch.float32])
    else:
        check(got, want, f"{name} loss", (1e-2, 1e-2) if amp == torch.bfloat16 else (2e-3, 2e-3))
    # gradients in the input's dtype: the float32 ones rounded, or (row functions, not autocast) computed from
    # the rounded output with cancellation (1 - C·softmax), so within a few ulps of the O(1) terms
    gtol = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2e-2, 2e-2), torch.float16: (4e-3, 4e-3)}[got_g.dtype]
    check(got_g, want_g, f"{name} grad", gtol)


INFOLOSS_ONLY = {  # k(t): a constant operand, in the autocast dtype (the float32 reference gets it widened)
    "distill": lambda a, k: itorch.distill(a, k(rand(6, 5, seed=50)), temperature=2.0),
    "distill_topk": lambda a, k: itorch.distill_topk(a, torch.tensor([[0, 1]] * 6), k(torch.full((6, 2), -1.0))),
    "uda_consistency": lambda a, k: itorch.uda_consistency(k(rand(6, 5, seed=51)), a),
    "cross_entropy_extras": lambda a, k: itorch.cross_entropy_extras(a, torch.arange(6) % 5, lse_square_scale=0.1,
                                                                     softcap=3.0).loss,
    "linear_cross_entropy": lambda a, k: itorch.linear_cross_entropy(a, k(rand(7, 5, seed=52)), torch.arange(6)),
    "linear_distill": lambda a, k: itorch.linear_distill(a, k(rand(7, 5, seed=53)), k(rand(6, 5, seed=56)),
                                                         k(rand(7, 5, seed=54))),
}


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", list(INFOLOSS_ONLY))
def test_autocast_runs_infoloss_only_losses_in_float32(name, amp):
    f = INFOLOSS_ONLY[name]
    a = rand(6, 5, seed=55).to(amp).requires_grad_(True)
    with torch.autocast("cpu", dtype=amp):
        out = f(a, lambda t: t.to(amp))
    out.backward()
    assert out.dtype == torch.float32 and a.grad.dtype == amp
    # the same as the float32 computation on the exactly widened inputs
    a32 = a.detach().float().requires_grad_(True)
    want = f(a32, lambda t: t.to(amp).float())
    want.backward()
    check(out, want, f"{name} loss", TOL[torch.float32])
    torch.testing.assert_close(a.grad, a32.grad.to(amp), rtol=0, atol=0)


def test_autocast_linear_cross_entropy_is_torchs_within_bfloat16_rounding():
    x, w = rand(16, 8, seed=60, grad=True), rand(11, 8, seed=61)
    x, w = x.detach().float().requires_grad_(True), w.float().requires_grad_(True)
    y = torch.arange(16) % 11
    outs = []
    for f in (F.linear_cross_entropy, itorch.linear_cross_entropy):
        x.grad = w.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = f(x, w, y)
        out.backward()
        outs.append((out, x.grad.clone(), w.grad.clone()))
    (a, ax, aw), (b, bx, bw) = outs
    assert a.dtype == b.dtype == torch.float32 and ax.dtype == bx.dtype == torch.float32
    # torch rounds its logits to bfloat16 first; infoloss computes them in float32
    torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(bx, ax, rtol=5e-2, atol=2e-2)
    torch.testing.assert_close(bw, aw, rtol=5e-2, atol=2e-2)
    torch.testing.assert_close(b, F.linear_cross_entropy(x.detach(), w.detach(), y), rtol=1e-6, atol=1e-7)


# -------------------------------------------------------------------------------------------------- threads


def run_python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_torch_set_num_threads_reaches_infoloss_unless_set_explicitly():
    out = run_python("""
        import torch, infoloss, infoloss.torch as itorch
        x, y = torch.randn(64, 10), torch.randint(0, 10, (64,))
        seen = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            itorch.cross_entropy(x, y)
            seen.append(infoloss.get_num_threads())
        f = torch.compile(lambda a: itorch.cross_entropy(a, y), fullgraph=True, backend="aot_eager")
        f(x)
        torch.set_num_threads(2)
        f(x)  # inside a compiled graph too
        seen.append(infoloss.get_num_threads())
        infoloss.set_num_threads(1)
        torch.set_num_threads(2)
        itorch.cross_entropy(x, y)
        seen.append(infoloss.get_num_threads())   # the explicit count wins
        print(seen)
    """)
    assert out.strip() == "[1, 2, 1, 2, 1]", out


# ------------------------------------------------------------------------------------- cross_entropy_extras


def ce_extras_ref(x, y, w, ii, red, eps, s, cap):
    xc = cap * torch.tanh(x / cap) if cap is not None else x
    lse = torch.logsumexp(xc, 1)
    keep = y != ii
    loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, reduction=red, label_smoothing=eps)
    z = torch.where(keep, s * lse.pow(2), torch.zeros_like(lse))
    z = {"mean": z.sum() / keep.sum(), "sum": z.sum(), "none": z}[red]
    hit = (xc.argmax(1) == y).double()
    acc = hit[keep].mean().item() if red != "none" else torch.where(keep, hit, torch.zeros_like(hit))
    return loss + z, z, lse, acc


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cross_entropy_extras_matches_torch(seed, dtype):
    rng = np.random.default_rng([seed, 70])
    N, C = 9, 7
    x = torch.tensor(rng.normal(size=(N, C)) * 3, dtype=dtype)
    y = torch.tensor(rng.integers(0, C, size=N))
    ii = [-100, 3][seed % 2]
    y[2] = ii
    w = torch.tensor(rng.uniform(0.5, 2, size=C), dtype=dtype) if seed % 4 in (1, 2) else None
    red = ["mean", "sum", "none"][seed % 3]
    eps = [0.0, 0.1][(seed // 2) % 2]
    s = [0.0, 1e-2, 0.5][(seed // 3) % 3]
    cap = [None, 2.0, 30.0][seed % 3 if seed < 6 else (seed + 1) % 3]
    xr = x.clone().requires_grad_(True)
    want, wz, wlse, wacc = ce_extras_ref(xr, y, w, ii, red, eps, s, cap)
    g = torch.tensor(rng.normal(size=tuple(want.shape)), dtype=dtype)
    (gx,) = torch.autograd.grad(want, xr, g)
    xi = x.clone().requires_grad_(True)
    r = itorch.cross_entropy_extras(xi, y, w, ii, red, eps, lse_square_scale=s, softcap=cap, return_lse=True,
                                    return_token_accuracy=True)
    assert r.loss.dtype == dtype and r.loss.shape == want.shape and r.lse.dtype == dtype
    assert not r.z_loss.requires_grad and not r.lse.requires_grad
    r.loss.backward(g)
    what = f"ce_extras {red} eps={eps} s={s} cap={cap} w={w is not None} ii={ii}"
    check(r.loss, want, f"{what}: loss", COMPOSED_TOL[dtype])
    check(r.z_loss, wz, f"{what}: z_loss", COMPOSED_TOL[dtype])
    check(r.lse, wlse, f"{what}: lse", COMPOSED_TOL[dtype])
    check(xi.grad, gx, f"{what}: grad", COMPOSED_TOL[dtype])
    if red == "none":
        assert r.token_accuracy.dtype == torch.float64
        check(r.token_accuracy, wacc, f"{what}: token accuracy rows", (0, 0))
    else:
        assert isinstance(r.token_accuracy, float) and r.token_accuracy == wacc
    plain = itorch.cross_entropy_extras(x, y, w, ii, red, eps, lse_square_scale=s, softcap=cap)
    assert plain.lse is None and plain.token_accuracy is None
    check(plain.loss, want, f"{what}: loss without grad", COMPOSED_TOL[dtype])


def test_cross_entropy_extras_token_accuracy_is_not_rounded_and_bfloat16_works():
    x = torch.zeros(6, 3).bfloat16()
    x[0, 1] = 1.0
    y = torch.tensor([1, 0, 0, 2, 2, 2])  # only row 0 is a hit (ties go to the first index: class 0 for the rest)
    y[1:3] = 1
    r = itorch.cross_entropy_extras(x, y, return_token_accuracy=True)
    assert r.token_accuracy == 1 / 6 and r.loss.dtype == torch.bfloat16
    xr = x.clone().requires_grad_(True)
    itorch.cross_entropy_extras(xr, y, lse_square_scale=0.1).loss.backward()
    assert xr.grad.dtype == torch.bfloat16
    want = itorch.cross_entropy_extras(x.float(), y, lse_square_scale=0.1)
    assert itorch.cross_entropy_extras(x, y, lse_square_scale=0.1).loss == want.loss.bfloat16()


def test_cross_entropy_extras_gradcheck_and_errors():
    x = rand(5, 4, grad=True, seed=80)
    y = torch.tensor([0, 3, -100, 1, 2])
    for red in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda a: itorch.cross_entropy_extras(a, y, reduction=red, label_smoothing=0.1, lse_square_scale=0.2,
                                                  softcap=2.5).loss, (x,))
    with pytest.raises(TypeError, match="cross_entropy_extras: input must be a torch.Tensor"):
        itorch.cross_entropy_extras(x.detach().numpy(), y)
    with pytest.raises(IndexError, match="out of range"):
        itorch.cross_entropy_extras(x, torch.tensor([0, 4, 1, 1, 1]))
    with pytest.raises(NotImplementedError, match="cross_entropy_extras: .*weight"):
        itorch.cross_entropy_extras(x, y, torch.ones(4, dtype=torch.float64, requires_grad=True))
    with pytest.raises(ValueError, match="reduction"):
        itorch.cross_entropy_extras(x, y, reduction="batchmean")


def test_errors_name_the_op_and_argument_inside_the_operator():
    with pytest.raises(TypeError, match="kl_div: target has dtype torch.float8_e4m3fn"):
        itorch.kl_div(torch.randn(2, 3), torch.rand(2, 3).to(torch.float8_e4m3fn), reduction="sum")
    with pytest.raises(TypeError, match="logsumexp: input must be a torch.Tensor"):
        itorch.logsumexp([1.0], 0)
    with pytest.raises(IndexError, match="logsumexp: invalid dim = 2"):
        itorch.logsumexp(torch.randn(2, 3), 2)


def test_reduced_losses_hand_the_forwards_gradient_to_autograd_without_a_copy():
    # the speed design: the gradient is computed with the loss and becomes input.grad itself (no zero-filled
    # upstream gradients for the operator's gradient outputs, no scaling pass for a unit upstream gradient)
    for f in (lambda a: itorch.cross_entropy(a, torch.tensor([0, 3, 1]), label_smoothing=0.1),
              lambda a: itorch.distill(a, torch.zeros(3, 4), temperature=2.0),
              lambda a: itorch.linear_cross_entropy(a, torch.eye(4), torch.tensor([0, 3, 1]))):
        x = torch.randn(3, 4, requires_grad=True)
        loss = f(x)
        ptr = loss.grad_fn.grads[0].data_ptr()
        loss.backward(retain_graph=True)
        assert x.grad.data_ptr() == ptr
        first = x.grad.clone()
        loss.backward()  # a second pass recomputes (the first one's buffer is now x.grad)
        torch.testing.assert_close(x.grad, 2 * first, rtol=1e-6, atol=0)
