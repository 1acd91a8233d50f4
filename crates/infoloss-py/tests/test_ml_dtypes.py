"""``ml_dtypes.bfloat16`` arrays in the NumPy API (issue 24, item 5).

NumPy has no bfloat16; JAX and many NumPy users hold ``ml_dtypes.bfloat16`` arrays. infoloss computes them as
``infoloss.torch`` computes bfloat16 tensors: widened exactly to float32, computed, each result (loss, gradients)
rounded once to bfloat16. Reduced losses are Python floats (as for float16), everything else bfloat16 arrays or
scalars. The expected values come from torch: bit for bit from the ``infoloss.torch`` bfloat16 path and from
torch's own float32 losses rounded to bfloat16 (up to rare float32 last-bit differences at a rounding boundary),
and within bfloat16's precision from torch's native bfloat16 kernels (which round intermediate results).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
torch = pytest.importorskip("torch")
F = torch.nn.functional

import infoloss  # noqa: E402
import infoloss.torch as itorch  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(16)


def bf(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(BF16)


def t_bf(a: np.ndarray) -> torch.Tensor:
    """The same bfloat16 values as a torch tensor (bits copied, not converted)."""
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int16).copy()).view(torch.bfloat16)


def np_of(t: torch.Tensor) -> np.ndarray:
    """A bfloat16 tensor's values as an ml_dtypes array (bits copied)."""
    return t.detach().contiguous().view(torch.int16).numpy().view(BF16)


def bits(a) -> bytes:
    a = np.asarray(a)
    assert a.dtype == BF16, a.dtype
    return a.tobytes()


def same_loss(got, want_tensor: torch.Tensor):
    """A reduced loss is a Python float holding the bfloat16 value; an unreduced one a bfloat16 array."""
    want = np_of(want_tensor)
    if want.ndim == 0:
        assert type(got) is float, type(got)
        assert np.asarray(got, dtype=np.float32).astype(BF16).tobytes() == want.tobytes(), (got, want)
        assert float(want) == got or (np.isnan(got) and np.isnan(float(want)))
    else:
        assert bits(got) == want.tobytes()


def close_to_native(got, want_tensor: torch.Tensor, ulps: int = 2, of_max: bool = False):
    """Within ``ulps`` bfloat16 units (2⁻⁸ relative) of torch's native bfloat16 result, which rounds intermediate
    results; ``of_max``: units of the largest magnitude (gradients: torch's native backward takes the softmax from
    the rounded log-softmax, so its small probabilities carry a relative error of |log p|·2⁻⁹)."""
    g = np.asarray(got, dtype=np.float64)
    w = want_tensor.detach().double().numpy()
    scale = np.max(np.abs(w)) if of_max else np.abs(w)
    tol = ulps * 2.0**-8 * scale + 1e-30
    assert np.all(np.abs(g - w) <= tol), np.max(np.abs(g - w) / tol)


# --------------------------------------------------------------------------------------------- the losses

X = bf(rng.standard_normal((64, 37)) * 3)
Y = rng.integers(0, 37, 64)
Y_IGN = np.where(rng.random(64) < 0.25, -100, Y)
P = bf(rng.dirichlet(np.ones(37), 64))
LOGP = bf(np.log(rng.dirichlet(np.ones(37), 64)))
PROB = bf(1 / (1 + np.exp(-rng.standard_normal((32, 9)))))
LOGIT = bf(rng.standard_normal((32, 9)) * 2)
T01 = bf(rng.random((32, 9)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(reduction, smoothing):
    loss, grad = infoloss.cross_entropy_with_grad(X, Y_IGN, reduction=reduction, label_smoothing=smoothing)
    assert grad.dtype == BF16 and grad.shape == X.shape
    x = t_bf(X).requires_grad_(True)
    ref = itorch.cross_entropy(x, torch.from_numpy(Y_IGN), reduction=reduction, label_smoothing=smoothing)
    ref.sum().backward()
    same_loss(loss, ref)
    assert bits(grad) == np_of(x.grad).tobytes()
    assert type(infoloss.cross_entropy(X, Y_IGN, reduction=reduction, label_smoothing=smoothing)) is type(loss)

    # torch's own float32 computation rounded once to bfloat16
    x32 = t_bf(X).float().requires_grad_(True)
    ref32 = F.cross_entropy(x32, torch.from_numpy(Y_IGN), reduction=reduction, label_smoothing=smoothing)
    ref32.sum().backward()
    assert np.mean(np.asarray(grad, np.float32) == x32.grad.bfloat16().float().numpy()) > 0.99
    # torch's native bfloat16 kernels
    xn = t_bf(X).requires_grad_(True)
    native = F.cross_entropy(xn, torch.from_numpy(Y_IGN), reduction=reduction, label_smoothing=smoothing)
    native.sum().backward()
    close_to_native(loss, native)
    close_to_native(grad, xn.grad, ulps=4, of_max=True)


def test_cross_entropy_probability_targets_and_mixed_dtypes():
    loss, gi, gt = infoloss.cross_entropy_with_grad(X, P, return_target_grad=True)
    x, p = t_bf(X).requires_grad_(True), t_bf(P).requires_grad_(True)
    ref = itorch.cross_entropy(x, p)
    ref.backward()
    same_loss(loss, ref)
    assert bits(gi) == np_of(x.grad).tobytes() and bits(gt) == np_of(p.grad).tobytes()

    # bfloat16 logits with float32 probabilities: promoted to float32 as torch does; each gradient has its
    # argument's dtype
    p32 = np.asarray(P, np.float32)
    loss, gi, gt = infoloss.cross_entropy_with_grad(X, p32, return_target_grad=True)
    x = t_bf(X).requires_grad_(True)
    t32 = torch.from_numpy(p32.copy()).requires_grad_(True)
    ref = F.cross_entropy(x.float(), t32)
    ref.backward()
    assert gi.dtype == BF16 and gt.dtype == np.float32
    assert abs(loss - ref.item()) <= 1e-6 * abs(ref.item())
    np.testing.assert_allclose(np.asarray(gi, np.float32), x.grad.float().numpy(), rtol=2**-8, atol=1e-6)

    # float32 log-probabilities with a bfloat16 target: the other way round
    lp32 = np.asarray(LOGP, np.float32)
    loss, gi, gt = infoloss.kl_div_with_grad(lp32, P, reduction="batchmean", return_target_grad=True)
    assert type(loss) is float and gi.dtype == np.float32 and gt.dtype == BF16
    want = infoloss.kl_div_with_grad(lp32, np.asarray(P, np.float32), reduction="batchmean", return_target_grad=True)
    assert loss == want[0] and gi.tobytes() == want[1].tobytes() and gt.tobytes() == bits(bf(want[2]))


def test_nll_kl_bce():
    lsm = bf(np.asarray(infoloss.log_softmax(np.asarray(X, np.float32), 1)))
    cases = [
        (infoloss.nll_loss_with_grad, itorch.nll_loss, F.nll_loss, (lsm, Y_IGN), {}, False),
        (infoloss.kl_div_with_grad, itorch.kl_div, F.kl_div, (LOGP, P), {"reduction": "batchmean"}, True),
        (infoloss.kl_div_with_grad, itorch.kl_div, F.kl_div, (LOGP, LOGP[::-1].copy()),
         {"reduction": "none", "log_target": True}, True),
        (infoloss.binary_cross_entropy_with_grad, itorch.binary_cross_entropy, F.binary_cross_entropy,
         (PROB, T01), {}, True),
        (infoloss.binary_cross_entropy_with_logits_with_grad, itorch.binary_cross_entropy_with_logits,
         F.binary_cross_entropy_with_logits, (LOGIT, T01), {"pos_weight": bf(np.linspace(0.5, 2, 9))}, True),
    ]
    for ours, drop_in, native_fn, (a, b), kw, target_grad in cases:
        extra = {"return_target_grad": True} if target_grad else {}
        got = ours(a, b, **kw, **extra)
        loss, gi = got[0], got[1]
        ta = t_bf(a).requires_grad_(True)
        tb = t_bf(b).requires_grad_(target_grad) if b.dtype == BF16 else torch.from_numpy(b)
        tkw = {k: (t_bf(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        ref = drop_in(ta, tb, **tkw)
        ref.sum().backward()
        same_loss(loss, ref)
        assert bits(gi) == np_of(ta.grad).tobytes(), ours.__name__
        if target_grad:
            assert bits(got[2]) == np_of(tb.grad).tobytes(), ours.__name__
        native = native_fn(t_bf(a), t_bf(b) if b.dtype == BF16 else torch.from_numpy(b), **tkw)
        close_to_native(loss, native, ulps=4)


def test_distill_and_in_place():
    teacher = bf(rng.standard_normal((64, 37)))
    loss, grad = infoloss.distill_with_grad(X, teacher, Y, temperature=2.0, alpha=0.7)
    s32 = torch.from_numpy(np.asarray(X, np.float32)).requires_grad_(True)
    ref = itorch.distill(s32, torch.from_numpy(np.asarray(teacher, np.float32)), torch.from_numpy(Y),
                         temperature=2.0, alpha=0.7)
    ref.backward()
    same_loss(loss, ref.bfloat16())
    assert bits(grad) == np_of(s32.grad.bfloat16()).tobytes()

    # In place: the bfloat16 gradient is written over the caller's array, the same bits as the allocating call.
    for fn, alloc, args, kw in [
        (infoloss.cross_entropy_with_grad_in_place, infoloss.cross_entropy_with_grad, (Y_IGN,),
         {"label_smoothing": 0.1}),
        (infoloss.kl_div_with_grad_in_place, infoloss.kl_div_with_grad, (P,), {"reduction": "batchmean"}),
        (infoloss.distill_with_grad_in_place, infoloss.distill_with_grad, (teacher, Y), {"temperature": 2.0}),
    ]:
        base = LOGP if fn is infoloss.kl_div_with_grad_in_place else X
        x = base.copy()
        view = x[:, ::1]  # a view: the gradient must reach the caller's memory
        loss_ip = fn(view, *args, **kw)
        loss_ref, grad_ref = alloc(base, *args, **kw)
        assert type(loss_ip) is float and loss_ip == loss_ref, fn.__name__
        assert x.dtype == BF16 and x.tobytes() == bits(grad_ref), fn.__name__

    # strided: every other column of a larger array, the rest untouched
    big = bf(rng.standard_normal((64, 74)))
    cols = big[:, ::2]
    before_other = big[:, 1::2].tobytes()
    loss_ref, grad_ref = infoloss.cross_entropy_with_grad(cols.copy(), Y)
    loss_ip = infoloss.cross_entropy_with_grad_in_place(cols, Y)
    assert loss_ip == loss_ref and big[:, ::2].tobytes() == bits(grad_ref)
    assert big[:, 1::2].tobytes() == before_other

    # an error leaves the array unchanged
    x = X.copy()
    with pytest.raises(IndexError):
        infoloss.cross_entropy_with_grad_in_place(x, np.full(64, 99))
    assert x.tobytes() == X.tobytes()


def test_information_measures_and_rows():
    q = P[::-1].copy()
    h, gp = infoloss.entropy_with_grad(P, axis=1)
    assert h.dtype == BF16 and gp.dtype == BF16
    want = np.asarray(infoloss.entropy(np.asarray(P, np.float32), axis=1))
    assert h.tobytes() == bits(bf(want))
    js = infoloss.jensenshannon(P[0], q[0])
    assert isinstance(js, ml_dtypes.bfloat16)  # a 0-d result is a scalar, as SciPy returns for float16
    assert np.asarray(js).tobytes() == bits(bf(infoloss.jensenshannon(np.asarray(P[0], np.float32),
                                                                      np.asarray(q[0], np.float32))))
    for name in ("log_softmax", "softmax"):
        out = getattr(infoloss, name)(X, 1)
        ref = getattr(itorch, name)(t_bf(X), 1)
        assert bits(out) == np_of(ref).tobytes(), name
        close_to_native(out, getattr(F, name)(t_bf(X), 1), ulps=2, of_max=True)
    lse = infoloss.logsumexp(X, 1)
    assert bits(lse) == np_of(torch.logsumexp(t_bf(X).float(), 1).bfloat16()).tobytes()
    # dtype= casts to bfloat16 first
    out = infoloss.log_softmax(np.asarray(X, np.float32), 1, dtype=ml_dtypes.bfloat16)
    assert out.dtype == BF16


def test_cross_entropy_extras_token_accuracy_is_not_rounded():
    # Token accuracy is a fraction of counts, not a value in the compute dtype: never rounded to bfloat16.
    x = X[:60]
    y = np.argmax(np.asarray(x, np.float32), 1)
    y[:19] = (y[:19] + 1) % 37  # 41 of 60 right
    res = infoloss.cross_entropy_extras_with_grad(x, y, return_lse=True, return_token_accuracy=True)
    assert res.token_accuracy == 41 / 60 and float(bf(41 / 60)) != 41 / 60
    assert res.grad_input.dtype == BF16 and res.lse.dtype == BF16
    ref = infoloss.cross_entropy_extras_with_grad(np.asarray(x, np.float32), y, return_lse=True)
    assert res.loss == float(bf(ref.loss)) and bits(res.grad_input) == bits(bf(ref.grad_input))


def test_linear_cross_entropy():
    h = bf(rng.standard_normal((16, 8)))
    w = bf(rng.standard_normal((37, 8)))
    y = rng.integers(0, 37, 16)
    res = infoloss.linear_cross_entropy_with_grad(h, w, y)
    assert res.grad_input.dtype == BF16 and res.grad_linear_weight.dtype == BF16
    logits = np.asarray(h, np.float32) @ np.asarray(w, np.float32).T
    loss32 = infoloss.cross_entropy(logits, y)
    assert abs(res.loss - float(bf(loss32))) <= abs(loss32) * 2**-7


def test_import_does_not_need_ml_dtypes():
    # ml_dtypes is optional: importing infoloss must not import it, and without it every dtype computes as with it
    # (this process has imported ml_dtypes, so the comparison covers the code path without it).
    code = (
        "import sys, warnings, numpy as np, infoloss\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "warnings.simplefilter('ignore')\n"
        "x = np.log(np.linspace(0.1, 0.9, 12).reshape(3, 4))\n"
        "out = [infoloss.kl_div(x, np.exp(x[::-1]), reduce=True, reduction='batchmean'),\n"
        "       infoloss.cross_entropy(x, np.array([0, 1, 3])),\n"
        "       infoloss.cross_entropy(x.astype(np.float32), np.array([0, 1, 3])),\n"
        "       float(infoloss.entropy(np.exp(x[0])))]\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "print(repr(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    x = np.log(np.linspace(0.1, 0.9, 12).reshape(3, 4))
    with pytest.warns(UserWarning):
        legacy = infoloss.kl_div(x, np.exp(x[::-1]), reduce=True, reduction="batchmean")
    here = [legacy, infoloss.cross_entropy(x, np.array([0, 1, 3])),
            infoloss.cross_entropy(x.astype(np.float32), np.array([0, 1, 3])), float(infoloss.entropy(np.exp(x[0])))]
    assert proc.stdout.strip() == repr(here)


def test_errors():
    with pytest.raises(TypeError, match="integer class indices"):
        infoloss.cross_entropy(X, bf(Y))
    with pytest.raises(ValueError, match="read-only"):
        x = X.copy()
        x.flags.writeable = False
        infoloss.cross_entropy_with_grad_in_place(x, Y)
