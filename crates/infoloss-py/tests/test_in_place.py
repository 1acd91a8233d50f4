"""The in-place training-path calls: the gradient written over the logits equals the allocating call's gradient
bit for bit, the loss too; every rejected input leaves the logits untouched and raises a clear error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import infoloss

DTYPES = (np.float16, np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")


def same(a, b):
    """Bitwise-equal values (NaN where NaN), same dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert np.array_equal(a, b, equal_nan=True), (a, b)


def same_loss(got, expected):
    if isinstance(expected, float):
        assert isinstance(got, float)
        assert got == expected or (np.isnan(got) and np.isnan(expected)), (got, expected)
    else:
        same(got, expected)


def equals_allocating(name, x, *args, allocating=None, **kw):
    """``name``'s in-place call on ``x`` returns the loss of its ``_with_grad`` twin and writes the twin's gradient
    over ``x``, bit for bit (the in-place loss is returned). The twin gets the same arguments, or the positional
    ``allocating`` ones when given."""
    loss, grad = getattr(infoloss, f"{name}_with_grad")(*(allocating or (x, *args)), **kw)
    got = getattr(infoloss, f"{name}_with_grad_in_place")(x, *args, **kw)
    same_loss(got, loss)
    same(x, grad)
    return got


def logits(rng, shape, dtype, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------------------------------------- cross_entropy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (5, 33), (3, 17, 4), (64, 1025)])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"weight": True, "ignore_index": 2}])
def test_ce_index_equals_allocating(dtype, reduction, shape, opts):
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1])
    x = logits(rng, shape, dtype)
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, c, size=tshape)
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(c).astype(dtype) + 0.5
    equals_allocating("cross_entropy", x, t, reduction=reduction, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_probs_equals_allocating(dtype, reduction):
    rng = np.random.default_rng(7)
    x = logits(rng, (9, 130), dtype)
    t = rng.random((9, 130))
    t = (t / t.sum(1, keepdims=True)).astype(dtype)
    w = (rng.random(130) + 0.5).astype(dtype)
    equals_allocating("cross_entropy", x, t, weight=w, reduction=reduction, label_smoothing=0.05)


def test_ce_probs_target_cast_to_input_dtype():
    """No promotion in place: a float64 target with float32 logits is computed as the float32 call."""
    rng = np.random.default_rng(8)
    x = logits(rng, (4, 10), np.float32)
    t = rng.random((4, 10))
    t /= t.sum(1, keepdims=True)
    equals_allocating("cross_entropy", x, t, allocating=(x, t.astype(np.float32)))
    assert x.dtype == np.float32


def test_ce_known_value():
    """log 2 and (softmax − onehot)/N for zero logits, written over the input."""
    x = np.zeros((2, 2), dtype=np.float64)
    loss = infoloss.cross_entropy_with_grad_in_place(x, np.array([0, 1]))
    assert loss == pytest.approx(np.log(2.0), rel=1e-15)
    assert x.tolist() == [[-0.25, 0.25], [0.25, -0.25]]


def test_ce_non_finite_rows():
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    t = np.array([1, 0, 2])
    got = equals_allocating("cross_entropy", x, t, reduction="none")
    assert np.isnan(got[0]) and np.isfinite(got[2])


@pytest.mark.parametrize("layout", ["transposed", "strided", "reversed"])
def test_ce_views_write_through_and_nothing_else(layout):
    rng = np.random.default_rng(11)
    base = logits(rng, (40, 60), np.float32)
    if layout == "transposed":
        view = base.T  # (60, 40): column-major rows
    elif layout == "strided":
        view = base[::2, ::3]
    else:
        view = base[::-1]
    before = base.copy()
    t = rng.integers(0, view.shape[1], size=view.shape[0])
    equals_allocating("cross_entropy", view, t, allocating=(view.copy(), t))
    mask = np.ones(base.shape, dtype=bool)
    if layout == "strided":
        mask[::2, ::3] = False
        same(base[mask], before[mask])


# ----------------------------------------------------------------------------------------------------- distill


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd", "tvd"])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_distill_equals_allocating(dtype, divergence, reduction, alpha):
    rng = np.random.default_rng(3)
    s = logits(rng, (12, 257), dtype)
    t = logits(rng, (12, 257), dtype)
    y = rng.integers(0, 257, size=12)
    y[4] = -100
    kw = dict(temperature=2.0, divergence=divergence, beta=0.3, alpha=alpha, reduction=reduction)
    labels = y if alpha < 1 else None
    equals_allocating("distill", s, t, labels, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("add_tail", [False, True])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_distill_topk_equals_allocating(dtype, add_tail, k):
    rng = np.random.default_rng(k)
    s = logits(rng, (6, 40), dtype)
    idx = np.stack([rng.permutation(40)[:k] for _ in range(6)])
    lq = np.log(rng.dirichlet(np.ones(k + 1), size=6)[:, :k]).astype(dtype)
    kw = dict(add_tail=add_tail, temperature=1.5, reduction="batchmean")
    equals_allocating("distill_topk", s, idx, lq, **kw)


def test_distill_teacher_cast_to_student_dtype():
    rng = np.random.default_rng(5)
    s = logits(rng, (3, 20), np.float32)
    t = rng.standard_normal((3, 20))
    equals_allocating("distill", s, t, allocating=(s, t.astype(np.float32)))


# ------------------------------------------------------------------------------------------------------ errors

CALLS = {
    "ce": lambda x, **kw: infoloss.cross_entropy_with_grad_in_place(x, kw.get("t", np.array([0, 1])), **kw.get("o", {})),
    "distill": lambda x, **kw: infoloss.distill_with_grad_in_place(x, kw.get("t", np.zeros((2, 3))), **kw.get("o", {})),
    "topk": lambda x, **kw: infoloss.distill_topk_with_grad_in_place(
        x, kw.get("t", np.array([[0], [1]])), np.array([[-0.5], [-0.7]]), **kw.get("o", {})
    ),
}


@pytest.mark.parametrize("call", CALLS)
def test_rejects_what_cannot_be_written(call):
    f = CALLS[call]
    with pytest.raises(TypeError, match="must be a NumPy array"):
        f([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    with pytest.raises(TypeError, match="floating-point"):
        f(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="floating-point"):
        f(np.zeros((2, 3), dtype=">f4"))
    ro = np.ones((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(ro)
    assert (ro == 1).all()


@pytest.mark.parametrize("call", CALLS)
def test_errors_leave_logits_unchanged(call):
    f = CALLS[call]
    cases = [
        (IndexError if call != "distill" else ValueError, {"t": np.array([0, 9]) if call == "ce" else None}),
        (ValueError, {"o": {"reduction": "avg"}}),
    ]
    if call == "ce":
        cases.append((ValueError, {"t": np.array([0, 1, 2])}))
        cases.append((ValueError, {"o": {"label_smoothing": 1.5}}))
    elif call == "distill":
        cases = [
            (ValueError, {"t": np.zeros((2, 4))}),
            (ValueError, {"o": {"temperature": 0.0}}),
            (ValueError, {"o": {"divergence": "kl"}}),
            (ValueError, {"o": {"alpha": 0.5}}),  # labels needed
        ]
    else:
        cases = [
            (ValueError, {"t": np.array([[0], [3]])}),  # as distill_topk: out-of-range teacher index
            (ValueError, {"t": np.array([[0, 1], [1, 2]])}),
            (ValueError, {"o": {"reduction": "avg"}}),
        ]
    for exc, kw in cases:
        kw = {k: v for k, v in kw.items() if v is not None}
        x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype=np.float32)
        before = x.copy()
        with pytest.raises(exc):
            f(x, **kw)
        same(x, before)


def test_shared_memory_refused():
    x = np.zeros((3, 3), dtype=np.float64)
    with pytest.raises(ValueError, match="target shares memory with input"):
        infoloss.cross_entropy_with_grad_in_place(x, x)
    with pytest.raises(ValueError, match="target shares memory with input"):
        infoloss.cross_entropy_with_grad_in_place(x[:, :2], x[:, 1:])
    s = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="teacher_logits shares memory with student_logits"):
        infoloss.distill_with_grad_in_place(s, s)
    w = np.ones(6, dtype=np.float32)
    xw = w[:4].reshape(2, 2)
    with pytest.raises(ValueError, match="weight shares memory with input"):
        infoloss.cross_entropy_with_grad_in_place(xw, np.array([0, 1]), weight=w[2:4])
    assert (x == 0).all() and (s == 0).all() and (w == 1).all()


def test_all_dtypes_and_reductions_cover_the_paths():
    """Every (dtype, reduction) pair writes a gradient that differs from the logits (the call did something)."""
    rng = np.random.default_rng(0)
    for dtype, reduction in itertools.product(DTYPES, REDUCTIONS):
        x = logits(rng, (4, 8), dtype)
        before = x.copy()
        infoloss.cross_entropy_with_grad_in_place(x, np.array([1, 2, 3, 4]), reduction=reduction)
        assert not np.array_equal(x, before)
        # Each row of the gradient sums to 0 (softmax − onehot), up to rounding.
        assert np.abs(x.astype(np.float64).sum(1)).max() < (1e-2 if dtype == np.float16 else 1e-5)


# ------------------------------------------------------------------------------------------ elementwise losses


def _elementwise_cases(rng, shape, dtype):
    """(name, in-place call, allocating call, input) for kl_div, binary_cross_entropy and BCE with logits."""
    logp = np.log(rng.uniform(0.01, 1.0, shape)).astype(dtype)
    p = rng.uniform(0.0, 1.0, shape).astype(dtype)
    p[rng.uniform(size=shape) < 0.2] = 0
    probs = rng.uniform(0.0, 1.0, shape).astype(dtype)
    hard = (rng.uniform(size=shape) < 0.3).astype(dtype)
    z = logits(rng, shape, dtype, scale=6.0)
    w = rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype)
    return [
        ("kl", logp, p, {}),
        ("kl-log", logp, (logp * dtype(0.5)).astype(dtype), {"log_target": True}),
        ("bce", probs, hard, {}),
        ("bce-w", probs, p, {"weight": w}),
        ("bcel", z, hard, {}),
        ("bcel-pw", z, p, {"weight": w, "pos_weight": w}),
    ]


def _pair(name):
    if name.startswith("kl"):
        return infoloss.kl_div_with_grad_in_place, infoloss.kl_div_with_grad
    if name.startswith("bcel"):
        return infoloss.binary_cross_entropy_with_logits_with_grad_in_place, infoloss.binary_cross_entropy_with_logits_with_grad
    return infoloss.binary_cross_entropy_with_grad_in_place, infoloss.binary_cross_entropy_with_grad


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
@pytest.mark.parametrize("shape", [(7,), (5, 33), (3, 17, 4), (70, 1100)])
def test_elementwise_equals_allocating(dtype, reduction, shape):
    rng = np.random.default_rng(shape[-1] * 7 + len(shape))
    for name, x, t, kw in _elementwise_cases(rng, shape, dtype):
        if reduction == "batchmean" and not name.startswith("kl"):
            continue
        in_place, alloc = _pair(name)
        expected_loss, expected_grad = alloc(x, t, reduction=reduction, **kw)
        buf = x.copy()
        got = in_place(buf, t, reduction=reduction, **kw)
        same_loss(got, expected_loss)
        same(buf, expected_grad)


def test_elementwise_known_values():
    x = np.log(np.array([0.5, 0.5], dtype=np.float32))
    assert round(infoloss.kl_div_with_grad_in_place(x, np.array([0.25, 0.75]), reduction="sum"), 6) == 0.130812
    assert x.tolist() == [-0.25, -0.75]
    z = np.zeros(2, dtype=np.float32)
    loss = infoloss.binary_cross_entropy_with_logits_with_grad_in_place(z, np.array([1.0, 0.0]))
    assert abs(loss - np.log(2)) < 1e-7 and z.tolist() == [-0.25, 0.25]


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_elementwise_errors_leave_input_untouched():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (4, 300)).astype(np.float32)
    x[3, 250] = 1.5
    before = x.copy()
    with pytest.raises(ValueError, match="between 0 and 1|\\[0, 1\\]|1.5"):
        infoloss.binary_cross_entropy_with_grad_in_place(x, np.full((4, 300), 0.5))
    same(x, before)
    # a target broadcasting the input to a larger shape
    y = np.full((1, 4), -1.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"\[1, 4\].*\[3, 4\]|\[3, 4\].*\[1, 4\]"):
        infoloss.kl_div_with_grad_in_place(y, np.full((3, 4), 0.25))
    assert y.tolist() == [[-1.0] * 4]
    # operands sharing the input's memory, read-only and converted inputs
    z = np.zeros(8, dtype=np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        infoloss.binary_cross_entropy_with_logits_with_grad_in_place(z, z[::-1])
    ro = np.zeros(8, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        infoloss.binary_cross_entropy_with_logits_with_grad_in_place(ro, np.ones(8))
    with pytest.raises(TypeError, match="NumPy array"):
        infoloss.kl_div_with_grad_in_place([0.0, 0.0], np.ones(2))
    with pytest.raises(ValueError, match="reduction"):
        infoloss.binary_cross_entropy_with_logits_with_grad_in_place(z, np.ones(8), reduction="batchmean")
    assert not z.any()
