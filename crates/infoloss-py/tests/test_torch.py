"""Against torch itself (skipped when torch is not installed): signatures, randomized comparisons of the NumPy API
with ``torch.nn.functional`` (forward and autograd gradients), and the ``infoloss.torch`` drop-ins
(``loss.backward()``, ``gradcheck``, a training step, dtypes, warnings, errors)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import infoloss  # noqa: E402
import infoloss.torch as itorch  # noqa: E402
from conftest import check_against_torch  # noqa: E402

TOL = {torch.float32: (2e-5, 2e-6), torch.float64: (1e-11, 1e-13)}


def check(got, want, dtype, what):
    check_against_torch(got, want, TOL[dtype], what)


# ---------------------------------------------------------------------------------------------- signatures

NAMES = ["cross_entropy", "nll_loss", "kl_div", "binary_cross_entropy", "binary_cross_entropy_with_logits",
         "log_softmax", "softmax"]


@pytest.mark.parametrize("name", NAMES)
def test_signatures_equal_torch_nn_functional(name):
    def sig(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    want = sig(getattr(F, name))
    assert sig(getattr(itorch, name)) == want
    assert sig(getattr(infoloss, name)) == want


# ------------------------------------------------------------------------------------- random configurations


class Case:
    """One random call: the function, tensors and keyword arguments, and which arguments are differentiable."""

    def __init__(self, fn, x, t, kwargs, target_grad):
        self.fn, self.x, self.t, self.kwargs, self.target_grad = fn, x, t, kwargs, target_grad

    def __repr__(self):
        return f"{self.fn}{tuple(self.x.shape)} {self.x.dtype} {self.kwargs.get('reduction')}"


def random_case(rng: np.random.Generator, fn: str, dtype) -> Case:
    ndim = int(rng.integers(1, 5))
    n = int(rng.integers(1, 7))
    c = int(rng.integers(1, 9))
    extra = [int(rng.integers(1, 4)) for _ in range(max(0, ndim - 2))]
    shape = [c] if ndim == 1 else [n, c] + extra
    row_shape = [] if ndim == 1 else [n] + extra
    red = str(rng.choice(["none", "mean", "sum"]))
    x = torch.tensor(rng.normal(size=shape) * 2, dtype=dtype)
    kw = {"reduction": red}
    if fn in ("cross_entropy", "nll_loss", "cross_entropy_probs"):
        if rng.random() < 0.5:
            kw["weight"] = torch.tensor(rng.uniform(0.1, 2.0, size=c), dtype=dtype)
        if fn == "cross_entropy_probs":
            t = torch.softmax(torch.tensor(rng.normal(size=shape), dtype=dtype), dim=1 if ndim > 1 else 0)
            if rng.random() < 0.5:
                kw["label_smoothing"] = float(rng.uniform(0, 1))
            return Case("cross_entropy", x, t, kw, True)
        t = torch.tensor(rng.integers(0, c, size=row_shape), dtype=torch.int64)
        if rng.random() < 0.4:
            kw["ignore_index"] = int(rng.integers(0, c))
        if fn == "cross_entropy" and rng.random() < 0.5:
            kw["label_smoothing"] = float(rng.uniform(0, 1))
        if fn == "nll_loss":
            x = torch.log_softmax(x, dim=1 if ndim > 1 else 0)
        return Case(fn, x, t, kw, False)
    if fn == "kl_div":
        kw["reduction"] = str(rng.choice(["none", "sum", "batchmean"]))
        kw["log_target"] = bool(rng.random() < 0.5)
        x = torch.log_softmax(x, dim=-1)
        t = torch.softmax(torch.tensor(rng.normal(size=shape), dtype=dtype), dim=-1)
        if kw["log_target"]:
            t = torch.log(t)
        return Case(fn, x, t, kw, True)
    if fn == "binary_cross_entropy":
        x = torch.tensor(rng.uniform(0.02, 0.98, size=shape), dtype=dtype)
        t = torch.tensor(rng.uniform(0, 1, size=shape), dtype=dtype)
        if rng.random() < 0.5:
            kw["weight"] = torch.tensor(rng.uniform(0, 2, size=shape[-1:]), dtype=dtype)
        return Case(fn, x, t, kw, True)
    if fn == "binary_cross_entropy_with_logits":
        t = torch.tensor(rng.uniform(0, 1, size=shape), dtype=dtype)
        if rng.random() < 0.5:
            kw["weight"] = torch.tensor(rng.uniform(0, 2, size=shape[-1:]), dtype=dtype)
        if rng.random() < 0.5:
            kw["pos_weight"] = torch.tensor(rng.uniform(0.5, 3, size=shape[-1:]), dtype=dtype)
        return Case(fn, x, t, kw, True)
    raise AssertionError(fn)


FNS = ["cross_entropy", "cross_entropy_probs", "nll_loss", "kl_div", "binary_cross_entropy",
       "binary_cross_entropy_with_logits"]
SEEDS = range(12)


def torch_reference(case: Case, go):
    x = case.x.clone().requires_grad_(True)
    t = case.t.clone().requires_grad_(True) if case.target_grad else case.t
    out = getattr(F, case.fn)(x, t, **case.kwargs)
    wrt = [x] + ([t] if case.target_grad else [])
    grads = torch.autograd.grad(out, wrt, go(out), allow_unused=True)
    return out.detach(), [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]


def upstream(rng, dtype):
    def go(out):
        return torch.tensor(rng.normal(size=tuple(out.shape)), dtype=dtype)

    return go


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_numpy_api_matches_torch(fn, dtype, seed):
    rng = np.random.default_rng([seed, FNS.index(fn), 1 if dtype == torch.float64 else 0])
    case = random_case(rng, fn, dtype)
    want, grads = torch_reference(case, upstream(rng, dtype))
    # replay the random stream to get the same upstream gradient
    rng2 = np.random.default_rng([seed, FNS.index(fn), 1 if dtype == torch.float64 else 0])
    random_case(rng2, fn, dtype)
    g = rng2.normal(size=tuple(want.shape))
    kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in case.kwargs.items()}
    f = getattr(infoloss, case.fn + "_with_grad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = {"return_target_grad": True} if case.fn != "nll_loss" else {}
        res = f(case.x.numpy(), case.t.numpy(), grad_output=g.astype(case.x.numpy().dtype), **kw, **extra)
        plain = getattr(infoloss, case.fn)(case.x.numpy(), case.t.numpy(), **kw)
    check(res[0], want, dtype, f"{case} loss")
    check(plain, want, dtype, f"{case} forward-only loss")
    check(res[1], grads[0], dtype, f"{case} grad_input")
    if case.target_grad:
        check(res[2], grads[1], dtype, f"{case} grad_target")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_row_functions_match_torch(seed, dtype):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 6, size=int(rng.integers(1, 5))))
    x = torch.tensor(rng.normal(size=shape) * 3, dtype=dtype)
    dim = int(rng.integers(-len(shape), len(shape)))
    for name, tf in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        xr = x.clone().requires_grad_(True)
        out = tf(xr, dim)
        g = torch.tensor(rng.normal(size=shape), dtype=dtype)
        (gx,) = torch.autograd.grad(out, xr, g)
        y, gi = getattr(infoloss, name + "_with_grad")(x.numpy(), dim, grad_output=g.numpy())
        check(y, out.detach(), dtype, f"{name} {shape} dim {dim}")
        check(gi, gx, dtype, f"{name} grad")
    dims = sorted(set(int(d) for d in rng.integers(0, len(shape), size=2)))
    for d in (dim, tuple(dims)):
        for keepdim in (False, True):
            xr = x.clone().requires_grad_(True)
            out = torch.logsumexp(xr, d, keepdim=keepdim)
            g = torch.tensor(rng.normal(size=tuple(out.shape)), dtype=dtype)
            (gx,) = torch.autograd.grad(out, xr, g)
            y, gi = infoloss.logsumexp_with_grad(x.numpy(), d, keepdim, grad_output=g.numpy())
            check(y, out.detach(), dtype, f"logsumexp {shape} dim {d} keepdim {keepdim}")
            check(gi, gx, dtype, "logsumexp grad")


def test_float16_matches_torch_within_half_precision():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(64, 10)), dtype=torch.float16)
    y = torch.tensor(rng.integers(0, 10, size=64))
    want = F.cross_entropy(x.float(), y, reduction="none").half()
    got = infoloss.cross_entropy(x.numpy(), y.numpy(), reduction="none")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want.numpy())  # computed in float32, rounded once
    assert infoloss.cross_entropy(x.numpy(), y.numpy()) == pytest.approx(F.cross_entropy(x, y).item(), rel=2e-3)


# ------------------------------------------------------------------------------------- infoloss.torch


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_autograd_functions_match_torch(fn, dtype, seed):
    rng = np.random.default_rng([seed, FNS.index(fn), 7])
    case = random_case(rng, fn, dtype)
    g_np = None

    def go(out):
        nonlocal g_np
        g = torch.tensor(rng.normal(size=tuple(out.shape)), dtype=dtype)
        g_np = g
        return g

    want, grads = torch_reference(case, go)
    x = case.x.clone().requires_grad_(True)
    t = case.t.clone().requires_grad_(True) if case.target_grad else case.t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = getattr(itorch, case.fn)(x, t, **case.kwargs)
    assert isinstance(out, torch.Tensor) and out.dtype == want.dtype and out.shape == want.shape
    assert out.requires_grad and out.grad_fn is not None
    out.backward(g_np)
    check(out, want, dtype, f"{case} loss")
    check(x.grad, grads[0], dtype, f"{case} input.grad")
    if case.target_grad:
        check(t.grad, grads[1], dtype, f"{case} target.grad")


@pytest.mark.parametrize(
    "name, make",
    [
        ("cross_entropy", lambda r: (r.normal(size=(3, 4)), torch.tensor([0, 3, 1]), {"label_smoothing": 0.2,
                                                                                    "weight": None})),
        ("cross_entropy_probs", lambda r: (r.normal(size=(3, 4)), "softmax", {"reduction": "sum"})),
        ("nll_loss", lambda r: (r.normal(size=(2, 3, 2)), torch.tensor([[0, 2], [1, 1]]), {})),
        ("kl_div", lambda r: (r.normal(size=(3, 4)), "softmax", {"reduction": "batchmean"})),
        ("kl_div_log_target", lambda r: (r.normal(size=(3, 4)), "log_softmax",
                                         {"reduction": "none", "log_target": True})),
        ("binary_cross_entropy", lambda r: (r.uniform(0.1, 0.9, size=(3, 4)), "uniform", {})),
        ("binary_cross_entropy_with_logits", lambda r: (r.normal(size=(3, 4)), "uniform",
                                                        {"pos_weight": torch.tensor([1.0, 2.0, 0.5, 3.0],
                                                                                    dtype=torch.float64)})),
    ],
)
def test_gradcheck(name, make):
    rng = np.random.default_rng(11)
    x_np, t_spec, kw = make(rng)
    x = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    if isinstance(t_spec, torch.Tensor):
        t = t_spec
        inputs = (x,)
    else:
        base = torch.tensor(rng.normal(size=x_np.shape), dtype=torch.float64)
        t = {"softmax": torch.softmax(base, -1), "log_softmax": torch.log_softmax(base, -1),
             "uniform": torch.tensor(rng.uniform(0.1, 0.9, size=x_np.shape), dtype=torch.float64)}[t_spec]
        t.requires_grad_(True)
        inputs = (x, t)
    fn = getattr(itorch, name.replace("_probs", "").replace("_log_target", ""))
    kw = {k: v for k, v in kw.items() if v is not None}

    def f(*args):
        return fn(args[0], args[1] if len(args) > 1 else t, **kw)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_softmax_family_gradcheck_and_values():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(3, 4, 2)), dtype=torch.float64, requires_grad=True)
    for name in ("softmax", "log_softmax"):
        assert torch.autograd.gradcheck(lambda a: getattr(itorch, name)(a, 1), (x,))
        torch.testing.assert_close(getattr(itorch, name)(x, -1), getattr(F, name)(x, -1), rtol=1e-14, atol=1e-15)
    assert torch.autograd.gradcheck(lambda a: itorch.logsumexp(a, (0, 2)), (x,))
    torch.testing.assert_close(itorch.logsumexp(x, 1, keepdim=True), torch.logsumexp(x, 1, keepdim=True))
    y = itorch.softmax(x.float(), 1, dtype=torch.float64)
    assert y.dtype == torch.float64


def test_a_training_step_matches_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    xb = torch.randn(32, 6)
    yb = torch.randint(0, 5, (32,))
    grads = {}
    for name, loss_fn in (("torch", F.cross_entropy), ("infoloss", itorch.cross_entropy)):
        model.zero_grad()
        loss = loss_fn(model(xb), yb, label_smoothing=0.1)
        (2.0 * loss).backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads["torch"], grads["infoloss"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_distillation_step_with_both_gradients():
    torch.manual_seed(1)
    student = torch.randn(8, 10, requires_grad=True)
    teacher = torch.randn(8, 10, requires_grad=True)
    T = 2.0
    results = []
    for kl, lsm, sm in ((F.kl_div, F.log_softmax, F.softmax), (itorch.kl_div, itorch.log_softmax, itorch.softmax)):
        student.grad = teacher.grad = None
        loss = kl(lsm(student / T, 1), sm(teacher / T, 1), reduction="batchmean") * T * T
        loss.backward()
        results.append((loss.detach(), student.grad.clone(), teacher.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_dtypes_devices_and_argument_errors():
    x16 = torch.randn(4, 3).half()
    out = itorch.cross_entropy(x16, torch.tensor([0, 1, 2, 0]))
    assert out.dtype == torch.float16
    with pytest.raises(TypeError, match="float16, bfloat16, float32 and float64"):
        itorch.cross_entropy(torch.randn(4, 3).to(torch.float8_e4m3fn), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        itorch.cross_entropy(np.zeros((4, 3)), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        itorch.softmax([1.0, 2.0], 0)
    with pytest.raises(IndexError, match="out of range"):
        itorch.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 3, 0]))
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(NotImplementedError, match="weight"):
        itorch.cross_entropy(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0]), weight=w)
    # int32 class indices are accepted (torch itself requires int64)
    a = itorch.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0], dtype=torch.int32))
    assert torch.isfinite(a)


def test_bfloat16_is_computed_in_float32_and_rounded_once():
    torch.manual_seed(3)
    x = torch.randn(16, 7).bfloat16().requires_grad_(True)
    y = torch.randint(0, 7, (16,))
    t = torch.softmax(torch.randn(16, 7), 1).bfloat16().requires_grad_(True)
    for fn, target in ((itorch.cross_entropy, y), (itorch.cross_entropy, t), (itorch.kl_div, t),
                       (itorch.binary_cross_entropy_with_logits, t)):
        x.grad = None
        if target.requires_grad:
            target.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(x, target, reduction="none")
            wide = target.detach().float() if target.is_floating_point() else target
            ref = fn(x.detach().float(), wide, reduction="none")
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out, ref.bfloat16(), rtol=0, atol=0)
        out.sum().backward()
        assert x.grad.dtype == torch.bfloat16
        if target.requires_grad:
            assert target.grad.dtype == torch.bfloat16
    s = itorch.log_softmax(x, 1)
    assert s.dtype == torch.bfloat16
    torch.testing.assert_close(s, itorch.log_softmax(x.detach().float(), 1).bfloat16(), rtol=0, atol=0)
    s.sum().backward()
    assert itorch.logsumexp(x, 1).dtype == torch.bfloat16
    # torch's own bfloat16 results are within a bfloat16 rounding or two
    torch.testing.assert_close(itorch.cross_entropy(x, y), F.cross_entropy(x, y), rtol=2e-2, atol=1e-2)


def test_non_contiguous_tensors_and_no_grad():
    base = torch.randn(6, 8, dtype=torch.float64)
    x = base.t()[:, ::2].clone().requires_grad_(True)  # (8, 3)
    xs = base.t()[:, ::2]  # a strided view
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    torch.testing.assert_close(itorch.cross_entropy(xs, y), F.cross_entropy(xs, y), rtol=1e-14, atol=1e-15)
    itorch.cross_entropy(x, y).backward()
    g = x.grad.clone()
    x.grad = None
    F.cross_entropy(x, y).backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-13, atol=1e-15)
    with torch.no_grad():
        out = itorch.cross_entropy(x, y)
    assert out.grad_fn is None and not out.requires_grad
    # the same call records a graph again once grad mode is back on
    assert itorch.cross_entropy(x, y).requires_grad
    # expanded (stride-0) tensors
    row = torch.randn(1, 5, dtype=torch.float64)
    xe = row.expand(4, 5)
    torch.testing.assert_close(itorch.log_softmax(xe, 1), F.log_softmax(xe, 1))


def test_double_backward_is_refused():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = itorch.cross_entropy(x, torch.tensor([0, 1, 2]))
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="infoloss.cross_entropy: double backward is not supported"):
        g.sum().backward()


def test_torch_wrappers_warn_like_torch():
    x, t = torch.log_softmax(torch.randn(2, 3), 1), torch.softmax(torch.randn(2, 3), 1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        itorch.kl_div(x, t)
        itorch.cross_entropy(x, t, size_average=False)
        itorch.softmax(x)
    msgs = [str(m.message) for m in w]
    assert msgs[0].startswith("reduction: 'mean' divides the total loss")
    assert msgs[1] == "size_average and reduce args will be deprecated, please use reduction='sum' instead."
    assert msgs[2].startswith("Implicit dimension choice for softmax")
    assert all(m.filename == __file__ for m in w), [m.filename for m in w]


def test_reduced_losses_scale_by_the_upstream_gradient():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1).requires_grad_(True)
    out = itorch.binary_cross_entropy_with_logits(x, t)
    (out * -3.5).backward()
    gx, gt = x.grad.clone(), t.grad.clone()
    x.grad = t.grad = None
    (F.binary_cross_entropy_with_logits(x, t) * -3.5).backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(gt, t.grad, rtol=1e-13, atol=1e-15)
