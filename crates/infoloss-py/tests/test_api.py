"""The NumPy API: torch-compatible signatures and reductions, warnings, dtypes, strides, gradients, threads, GIL."""

from __future__ import annotations

import inspect
import threading
import time
import warnings

import numpy as np
import pytest

import infoloss
from conftest import assert_close

RNG = np.random.default_rng(20261122)


def logits(*shape, dt=np.float64):
    return RNG.normal(size=shape).astype(dt)


def probs(*shape, axis=1, dt=np.float64):
    e = np.exp(RNG.normal(size=shape))
    return (e / e.sum(axis=axis, keepdims=True)).astype(dt)


def same(a, b):
    """Bit-for-bit equal (NaN equal to NaN), shape and dtype included."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    assert np.array_equal(a, b, equal_nan=True), (a, b)


# ----------------------------------------------------------------------------------------------- signatures

TORCH_SIGNATURES = {
    # names, positional order and defaults of torch.nn.functional (torch 2.15); test_torch.py checks these
    # against torch itself when it is installed
    "cross_entropy": [("input", None), ("target", None), ("weight", None), ("size_average", None),
                      ("ignore_index", -100), ("reduce", None), ("reduction", "mean"), ("label_smoothing", 0.0)],
    "nll_loss": [("input", None), ("target", None), ("weight", None), ("size_average", None),
                 ("ignore_index", -100), ("reduce", None), ("reduction", "mean")],
    "kl_div": [("input", None), ("target", None), ("size_average", None), ("reduce", None),
               ("reduction", "mean"), ("log_target", False)],
    "binary_cross_entropy": [("input", None), ("target", None), ("weight", None), ("size_average", None),
                             ("reduce", None), ("reduction", "mean")],
    "binary_cross_entropy_with_logits": [("input", None), ("target", None), ("weight", None),
                                         ("size_average", None), ("reduce", None), ("reduction", "mean"),
                                         ("pos_weight", None)],
    "log_softmax": [("input", None), ("dim", None), ("_stacklevel", 3), ("dtype", None)],
    "softmax": [("input", None), ("dim", None), ("_stacklevel", 3), ("dtype", None)],
}


@pytest.mark.parametrize("name", sorted(TORCH_SIGNATURES))
def test_torch_names_order_and_defaults(name):
    params = list(inspect.signature(getattr(infoloss, name)).parameters.values())
    want = TORCH_SIGNATURES[name]
    assert [p.name for p in params] == [n for n, _ in want]
    for p, (_, default) in zip(params, want):
        assert p.kind == p.POSITIONAL_OR_KEYWORD
        if p.default is not p.empty:
            assert p.default == default and type(p.default) is type(default), (p.name, p.default)
    # the _with_grad twin: the same parameters, then keyword-only extras
    twin = list(inspect.signature(getattr(infoloss, name + "_with_grad")).parameters.values())
    assert [p.name for p in twin[: len(params)]] == [p.name for p in params]
    assert all(p.kind == p.KEYWORD_ONLY for p in twin[len(params):])
    assert "grad_output" in [p.name for p in twin[len(params):]]


def test_scipy_signatures():
    def names(f):
        return list(inspect.signature(f).parameters)

    assert names(infoloss.entropy) == ["pk", "qk", "base", "axis", "nan_policy", "keepdims"]
    assert names(infoloss.jensenshannon) == ["p", "q", "base", "axis", "keepdims"]
    assert names(infoloss.rel_entr) == ["x", "y"]
    assert names(infoloss.entr) == ["x"]
    assert names(infoloss.logsumexp) == ["input", "dim", "keepdim"]


def test_every_public_function_is_documented_with_an_example():
    for name in infoloss.__all__:
        doc = inspect.getdoc(getattr(infoloss, name))
        assert doc and len(doc) > 40, name
        assert "Example" in doc or name.endswith("num_threads"), name


# ---------------------------------------------------------------------------------------------- reductions


def test_reduced_losses_are_python_floats_and_none_gives_arrays():
    x, t = logits(4, 3, dt=np.float32), np.array([0, 2, 1, 1])
    for red in ("mean", "sum"):
        v = infoloss.cross_entropy(x, t, reduction=red)
        assert type(v) is float
    v = infoloss.cross_entropy(x, t, reduction="none")
    assert isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (4,)
    assert infoloss.cross_entropy(x, t, reduction="sum") == pytest.approx(float(v.astype(np.float64).sum()), rel=1e-6)


LEGACY = [
    # (size_average, reduce) -> reduction, as torch.nn._reduction.legacy_get_string
    ((None, None), None),
    ((True, None), "mean"),
    ((None, True), "mean"),
    ((True, True), "mean"),
    ((False, None), "sum"),
    ((False, True), "sum"),
    ((None, False), "none"),
    ((True, False), "none"),
    ((False, False), "none"),
]


@pytest.mark.parametrize("legacy, expected", LEGACY)
def test_legacy_size_average_and_reduce(legacy, expected):
    x, t = logits(5, 4), np.array([0, 3, 1, 2, 2])
    size_average, reduce = legacy
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = infoloss.cross_entropy(x, t, size_average=size_average, reduce=reduce, reduction="sum")
    if expected is None:
        assert not w
        same(got, infoloss.cross_entropy(x, t, reduction="sum"))
        return
    same(got, infoloss.cross_entropy(x, t, reduction=expected))
    assert [str(m.message) for m in w] == [
        f"size_average and reduce args will be deprecated, please use reduction='{expected}' instead."
    ]
    assert w[0].category is UserWarning and w[0].filename == __file__


@pytest.mark.parametrize(
    "fn, args",
    [
        ("nll_loss", lambda: (np.log(probs(3, 4)), np.array([0, 1, 3]))),
        ("binary_cross_entropy", lambda: (probs(3, 4), probs(3, 4))),
        ("binary_cross_entropy_with_logits", lambda: (logits(3, 4), probs(3, 4))),
        ("kl_div", lambda: (np.log(probs(3, 4)), probs(3, 4))),
    ],
)
def test_legacy_arguments_of_every_loss(fn, args):
    a = args()
    f = getattr(infoloss, fn)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated, please use reduction='sum'"):
        got = f(*a, size_average=False)
    same(got, f(*a, reduction="sum"))
    with pytest.warns(UserWarning, match="reduction='none'"):
        got = f(*a, reduce=False)
    same(got, f(*a, reduction="none"))


def test_invalid_reductions():
    x, t = logits(2, 3), np.array([0, 1])
    with pytest.raises(ValueError, match="^batchmean is not a valid value for reduction$"):
        infoloss.cross_entropy(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="^foo is not a valid value for reduction$"):
        infoloss.nll_loss(x, t, reduction="foo")
    with pytest.raises(ValueError, match="^None is not a valid value for reduction$"):
        infoloss.binary_cross_entropy(probs(2, 3), probs(2, 3), reduction=None)
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        infoloss.kl_div(x, probs(2, 3), reduction="batch_mean")
    with pytest.warns(UserWarning, match="elementwise_mean' is deprecated"):
        got = infoloss.cross_entropy(x, t, reduction="elementwise_mean")
    same(got, infoloss.cross_entropy(x, t))


KL_MEAN = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def test_kl_div_mean_warning_exactly_as_torch():
    x, t = np.log(probs(4, 5)), probs(4, 5)
    for f in (infoloss.kl_div, infoloss.kl_div_with_grad):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            f(x, t)
        assert [str(m.message) for m in w] == [KL_MEAN]
        assert w[0].category is UserWarning and w[0].filename == __file__
    for red in ("batchmean", "sum", "none"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            infoloss.kl_div(x, t, reduction=red)
    # the legacy arguments suppress it (and warn about themselves instead)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        infoloss.kl_div(x, t, size_average=True)
    assert [str(m.message) for m in w] == [
        "size_average and reduce args will be deprecated, please use reduction='mean' instead."
    ]


def test_kl_div_reductions():
    x, t = np.log(probs(4, 5)), probs(4, 5)
    none = infoloss.kl_div(x, t, reduction="none")
    assert none.shape == (4, 5)
    total = float(np.sum(none))
    assert infoloss.kl_div(x, t, reduction="sum") == pytest.approx(total, rel=1e-14)
    assert infoloss.kl_div(x, t, reduction="batchmean") == pytest.approx(total / 4, rel=1e-14)
    with pytest.warns(UserWarning):
        assert infoloss.kl_div(x, t) == pytest.approx(total / 20, rel=1e-14)
    # the KL divergence of the distributions, row by row
    kl_rows = np.sum(t * (np.log(t) - x), axis=1)
    assert infoloss.kl_div(x, t, reduction="batchmean") == pytest.approx(kl_rows.mean(), rel=1e-13)


def test_kl_div_legacy_with_batchmean_divides_like_torch():
    # F.kl_div(..., reduce=True, reduction='batchmean') computes the legacy 'mean' and then divides by
    # input.size(0) — torch's corner, reproduced with its gradient
    x, t = np.log(probs(4, 5)), probs(4, 5)
    with pytest.warns(UserWarning):
        got = infoloss.kl_div(x, t, reduce=True, reduction="batchmean")
    with pytest.warns(UserWarning):
        mean = infoloss.kl_div(x, t, reduction="mean")
    assert got == pytest.approx(mean / 4, rel=1e-15)
    with pytest.warns(UserWarning):
        _, g = infoloss.kl_div_with_grad(x, t, reduce=True, reduction="batchmean")
    assert_close(g, -t / 20 / 4, rtol=1e-14, what="grad")


# -------------------------------------------------------------------------------------------- dispatching


def test_cross_entropy_dispatches_on_the_target_shape_as_torch():
    x = logits(3, 4)
    p = probs(3, 4)
    lsm = infoloss.log_softmax(x, 1)
    assert infoloss.cross_entropy(x, p) == pytest.approx(float(-(p * lsm).sum(1).mean()), rel=1e-14)
    # an integer target with the input's shape is read as probabilities, and rejected (torch does the same)
    with pytest.raises(TypeError, match="class probabilities"):
        infoloss.cross_entropy(x, np.zeros((3, 4), dtype=np.int64))
    # a float target of another shape is not a probability target
    with pytest.raises(TypeError, match="integer class indices"):
        infoloss.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        infoloss.cross_entropy(x, p, ignore_index=1)
    # class indices and the equivalent one-hot probabilities agree
    y = np.array([3, 0, 2])
    assert infoloss.cross_entropy(x, y) == pytest.approx(infoloss.cross_entropy(x, np.eye(4)[y]), rel=1e-14)


def test_nd_inputs_match_the_flattened_rows():
    x = logits(2, 5, 3, 4)
    y = RNG.integers(0, 5, size=(2, 3, 4))
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 5)
    assert infoloss.cross_entropy(x, y) == pytest.approx(infoloss.cross_entropy(flat_x, y.reshape(-1)), rel=1e-14)
    none = infoloss.cross_entropy(x, y, reduction="none")
    assert none.shape == (2, 3, 4)


def test_1d_input_with_0d_target():
    x = logits(5)
    for t in (np.array(3), 3, np.int32(3)):
        v = infoloss.cross_entropy(x, t, reduction="none")
        assert isinstance(v, np.ndarray) and v.shape == ()
        assert float(v) == pytest.approx(float(-infoloss.log_softmax(x, 0)[3]), rel=1e-14)


# --------------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("int_dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64])
def test_integer_targets_of_every_width(int_dtype):
    x = logits(6, 5)
    y = np.array([0, 4, 2, 1, 3, 0])
    ref = infoloss.cross_entropy_with_grad(x, y, reduction="sum")
    got = infoloss.cross_entropy_with_grad(x, y.astype(int_dtype), reduction="sum")
    same(got[0], ref[0])
    same(got[1], ref[1])
    same(infoloss.nll_loss(x, y.astype(int_dtype)), infoloss.nll_loss(x, y))


def test_python_lists_and_scalars():
    assert infoloss.cross_entropy([[0.0, 0.0]], [1]) == pytest.approx(np.log(2), rel=1e-15)
    assert infoloss.binary_cross_entropy([0.5], [1]) == pytest.approx(np.log(2), rel=1e-15)
    assert infoloss.kl_div([0.0], [1.0], reduction="sum") == 0.0
    # a list target adopts the input's dtype instead of promoting it
    x32 = np.log(probs(2, 3, dt=np.float32))
    out = infoloss.kl_div(x32, [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], reduction="none")
    assert out.dtype == np.float32


def test_dtype_promotion_of_float_targets():
    x32 = np.log(probs(2, 3, dt=np.float32))
    t64 = probs(2, 3)
    out = infoloss.kl_div(x32, t64, reduction="none")
    assert out.dtype == np.float64  # as torch promotes float32 with float64
    _, gi, gt = infoloss.kl_div_with_grad(x32, t64, reduction="none", return_target_grad=True)
    assert gi.dtype == np.float32 and gt.dtype == np.float64  # each gradient in its argument's dtype
    # weights follow the input (torch casts them)
    v = infoloss.binary_cross_entropy(probs(2, 3, dt=np.float32), probs(2, 3, dt=np.float32),
                                      weight=np.ones((2, 3)), reduction="none")
    assert v.dtype == np.float32


def test_integer_and_bool_labels_for_the_binary_losses():
    x = probs(4, 3)
    t = RNG.integers(0, 2, size=(4, 3))
    ref = infoloss.binary_cross_entropy(x, t.astype(np.float64))
    assert infoloss.binary_cross_entropy(x, t) == ref
    assert infoloss.binary_cross_entropy(x, t.astype(bool)) == ref
    z = logits(4, 3)
    assert infoloss.binary_cross_entropy_with_logits(z, t) == infoloss.binary_cross_entropy_with_logits(z, t * 1.0)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[1, 2, 3]]),
        np.array([[True, False, True]]),
        np.array([[1 + 2j, 0, 1]]),
        np.array([[1.0, 2.0, 3.0]], dtype=object),
        np.array([["a", "b", "c"]]),
        np.array([[1.0, 2.0, 3.0]], dtype=np.longdouble) if np.dtype(np.longdouble) != np.float64 else np.array([[1, 2, 3]]),
    ],
    ids=["int", "bool", "complex", "object", "str", "longdouble"],
)
def test_wrong_input_dtypes_raise_type_error(bad):
    for call in (
        lambda: infoloss.cross_entropy(bad, np.array([0])),
        lambda: infoloss.nll_loss(bad, np.array([0])),
        lambda: infoloss.kl_div(bad, np.ones((1, 3)), reduction="sum"),
        lambda: infoloss.binary_cross_entropy(bad, np.ones((1, 3))),
        lambda: infoloss.binary_cross_entropy_with_logits(bad, np.ones((1, 3))),
        lambda: infoloss.softmax(bad, 1),
        lambda: infoloss.log_softmax(bad, 1),
        lambda: infoloss.logsumexp(bad, 1),
    ):
        with pytest.raises(TypeError, match="must be a floating-point array"):
            call()


def test_wrong_target_dtypes_raise_type_error():
    x = logits(2, 3)
    with pytest.raises(TypeError, match="integer class indices"):
        infoloss.nll_loss(x, np.array([True, False]))
    with pytest.raises(TypeError, match="integer class indices"):
        infoloss.nll_loss(x, np.array([0.0, 1.0]))
    with pytest.raises(TypeError):
        infoloss.kl_div(x, np.array([[1j, 0, 0], [0, 0, 0]]), reduction="sum")
    with pytest.raises(TypeError):
        infoloss.cross_entropy(x, np.array([0, 1]), weight=np.array(["a", "b", "c"]))


def test_softmax_dtype_argument():
    x = logits(3, 4, dt=np.float32)
    out = infoloss.softmax(x, 1, dtype=np.float64)
    assert out.dtype == np.float64
    same(out, infoloss.softmax(x.astype(np.float64), 1))
    assert infoloss.log_softmax(np.arange(4).reshape(2, 2), 1, dtype="float32").dtype == np.float32
    with pytest.raises(TypeError):
        infoloss.softmax(x, 1, dtype=np.int32)


def test_implicit_softmax_dim_warns_and_picks_torchs_dimension():
    for shape, dim in (((5,), 0), ((2, 5), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 1)):
        x = logits(*shape)
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax has been deprecated") as w:
            got = infoloss.softmax(x)
        assert w[0].filename == __file__
        same(got, infoloss.softmax(x, dim))


# ---------------------------------------------------------------------------------------------- float16


def test_float16_computes_in_float32_and_rounds_once():
    x = logits(8, 6, dt=np.float16)
    y = RNG.integers(0, 6, size=8)
    x32 = x.astype(np.float32)
    loss, g = infoloss.cross_entropy_with_grad(x, y, reduction="none")
    loss32, g32 = infoloss.cross_entropy_with_grad(x32, y, reduction="none")
    assert loss.dtype == np.float16 and g.dtype == np.float16
    same(loss, loss32.astype(np.float16))
    assert_close(g, g32.astype(np.float16), rtol=1e-3, atol=1e-4, what="float16 grad")
    s = infoloss.softmax(x, 1)
    assert s.dtype == np.float16
    same(s, infoloss.softmax(x32, 1).astype(np.float16))
    red = infoloss.cross_entropy(x, y)
    assert type(red) is float and red == pytest.approx(infoloss.cross_entropy(x32, y), rel=1e-3)


def test_float16_everywhere():
    p = probs(4, 5, dt=np.float16)
    lp = np.log(p.astype(np.float32)).astype(np.float16)
    for v in (
        infoloss.kl_div(lp, p, reduction="none"),
        infoloss.binary_cross_entropy(p, p, reduction="none"),
        infoloss.binary_cross_entropy_with_logits(lp, p, reduction="none"),
        infoloss.nll_loss(lp, np.array([0, 1, 2, 3]), reduction="none"),
        infoloss.entr(p),
        infoloss.rel_entr(p, p),
        infoloss.entropy(p, axis=1),
        infoloss.jensenshannon(p, p[::-1], axis=1),
        infoloss.logsumexp(lp, 1),
    ):
        assert np.asarray(v).dtype == np.float16


# --------------------------------------------------------------------------------------------- strides


def layouts(a):
    """The same values in other memory layouts: Fortran order, a strided slice, reversed strides, byte-swapped,
    misaligned, read-only."""
    out = {"fortran": np.asfortranarray(a)}
    big = np.zeros((a.shape[0] * 2,) + a.shape[1:] + (3,), dtype=a.dtype)
    big[::2, ..., 1] = a
    out["strided"] = big[::2, ..., 1]
    rev = np.ascontiguousarray(a[::-1, ::-1])
    out["negative"] = rev[::-1, ::-1]
    out["byteswapped"] = a.astype(a.dtype.newbyteorder("S"))
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    mis = raw[1:].view(a.dtype).reshape(a.shape)
    mis[...] = a
    out["misaligned"] = mis
    ro = a.copy()
    ro.flags.writeable = False
    out["readonly"] = ro
    for k, v in out.items():
        assert np.array_equal(v, a), k
    return out


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_any_memory_layout_gives_identical_results(dt):
    x = logits(6, 5, dt=dt)
    p = probs(6, 5, dt=dt)
    y = np.array([0, 4, 2, 1, 3, 0])
    z = probs(6, 5, dt=dt)
    calls = {
        "cross_entropy": lambda x, p: infoloss.cross_entropy_with_grad(x, y, reduction="none"),
        "cross_entropy_probs": lambda x, p: infoloss.cross_entropy_with_grad(x, p, return_target_grad=True),
        "kl_div": lambda x, p: infoloss.kl_div_with_grad(x, p, reduction="batchmean", return_target_grad=True),
        "bce": lambda x, p: infoloss.binary_cross_entropy_with_grad(p, z, weight=p, return_target_grad=True),
        "bce_logits": lambda x, p: infoloss.binary_cross_entropy_with_logits_with_grad(
            x, p, pos_weight=p[0], return_target_grad=True),
        "log_softmax": lambda x, p: infoloss.log_softmax_with_grad(x, 1, grad_output=p),
        "softmax": lambda x, p: infoloss.softmax_with_grad(x, 0, grad_output=p),
        "logsumexp": lambda x, p: infoloss.logsumexp_with_grad(x, 1),
        "entropy": lambda x, p: infoloss.entropy_with_grad(p, p[::-1], axis=1, return_target_grad=True),
        "jensenshannon": lambda x, p: infoloss.jensenshannon_with_grad(p, z, axis=0, return_target_grad=True),
    }
    for name, call in calls.items():
        ref = call(x, p)
        for kind, (xl, pl) in {k: (a, b) for (k, a), b in zip(layouts(x).items(), layouts(p).values())}.items():
            got = call(xl, pl)
            for r, g in zip(ref, got):
                if r is None:
                    assert g is None
                    continue
                if kind == "byteswapped":
                    # converted to native order first: same values, native dtype
                    g = np.asarray(g)
                    assert g.dtype.isnative
                same(np.asarray(g).astype(np.asarray(r).dtype), r) if kind == "byteswapped" else same(g, r)


def test_broadcast_views_with_zero_strides():
    row = logits(1, 7)
    x = np.broadcast_to(row, (1000, 7))
    y = np.full(1000, 3)
    loss, g = infoloss.cross_entropy_with_grad(x, y, reduction="none")
    assert np.all(loss == loss[0])
    assert np.all(g == g[0])
    same(loss[:1], infoloss.cross_entropy(np.ascontiguousarray(row), y[:1], reduction="none"))


def test_non_contiguous_class_indices():
    x = logits(4, 3)
    y = np.array([[0, 9], [2, 9], [1, 9], [2, 9]])[:, 0]
    assert not y.flags.c_contiguous
    same(infoloss.cross_entropy(x, y), infoloss.cross_entropy(x, np.ascontiguousarray(y)))


# -------------------------------------------------------------------------------------------- gradients


def test_with_grad_shapes_and_return_target_grad():
    x, p = logits(3, 4), probs(3, 4)
    r = infoloss.cross_entropy_with_grad(x, p)
    assert len(r) == 2 and r[1].shape == (3, 4)
    loss, gi, gt = infoloss.cross_entropy_with_grad(x, p, return_target_grad=True)
    assert gt.shape == (3, 4)
    # −log_softmax / N: the gradient of the probability-target loss wrt the target
    assert_close(gt, -infoloss.log_softmax(x, 1) / 3, rtol=1e-14, atol=1e-15, what="grad_target")
    # class indices are not differentiable
    loss, gi, gt = infoloss.cross_entropy_with_grad(x, np.array([0, 1, 2]), return_target_grad=True)
    assert gt is None
    # unweighted class-index gradient: (softmax − onehot)/N
    assert_close(gi, (infoloss.softmax(x, 1) - np.eye(4)[[0, 1, 2]]) / 3, rtol=1e-14, atol=1e-16, what="grad")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_grad_output_scales_linearly(reduction):
    x, y = logits(5, 4), np.array([0, 1, 2, 3, 0])
    w = np.array([0.5, 1.0, 2.0, 0.1])
    base = infoloss.cross_entropy_with_grad(x, y, weight=w, reduction=reduction, label_smoothing=0.2)
    if reduction == "none":
        g = RNG.normal(size=5)
        got = infoloss.cross_entropy_with_grad(x, y, weight=w, reduction=reduction, label_smoothing=0.2,
                                               grad_output=g)
        # per-row upstream gradients: each row of the gradient scales by its own g
        assert_close(got[1], base[1] * g[:, None], rtol=1e-13, atol=1e-15)
        # a scalar is broadcast to every element
        got = infoloss.cross_entropy_with_grad(x, y, weight=w, reduction=reduction, label_smoothing=0.2,
                                               grad_output=2.5)
        assert_close(got[1], base[1] * 2.5, rtol=1e-13, atol=1e-15)
    else:
        got = infoloss.cross_entropy_with_grad(x, y, weight=w, reduction=reduction, label_smoothing=0.2,
                                               grad_output=-3.0)
        assert_close(got[1], base[1] * -3.0, rtol=1e-13, atol=1e-15)
        got = infoloss.cross_entropy_with_grad(x, y, weight=w, reduction=reduction, label_smoothing=0.2,
                                               grad_output=np.array(-3.0))
        assert_close(got[1], base[1] * -3.0, rtol=1e-13, atol=1e-15)
    same(got[0], base[0])


def test_grad_output_of_the_wrong_shape_is_a_value_error():
    x, y = logits(5, 4), np.array([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="grad_output"):
        infoloss.cross_entropy_with_grad(x, y, reduction="none", grad_output=np.ones(4))
    with pytest.raises(ValueError, match="grad_output"):
        infoloss.cross_entropy_with_grad(x, y, grad_output=np.ones(5))
    with pytest.raises(ValueError, match="grad_output"):
        infoloss.softmax_with_grad(x, 1, grad_output=np.ones((4, 5)))


def finite_difference(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_gradients_match_finite_differences():
    x, p, y = logits(3, 4), probs(3, 4), np.array([2, 0, 3])
    w = np.array([0.3, 1.0, 2.0, 0.7])
    checks = [
        (lambda a: infoloss.cross_entropy(a, y, weight=w, label_smoothing=0.1),
         lambda a: infoloss.cross_entropy_with_grad(a, y, weight=w, label_smoothing=0.1)[1], x),
        (lambda a: infoloss.kl_div(a, p, reduction="batchmean"),
         lambda a: infoloss.kl_div_with_grad(a, p, reduction="batchmean")[1], np.log(p)),
        (lambda a: infoloss.kl_div(np.log(p), a, reduction="sum"),
         lambda a: infoloss.kl_div_with_grad(np.log(p), a, reduction="sum", return_target_grad=True)[2], probs(3, 4)),
        (lambda a: infoloss.binary_cross_entropy(a, p), lambda a: infoloss.binary_cross_entropy_with_grad(a, p)[1],
         probs(3, 4)),
        (lambda a: infoloss.binary_cross_entropy_with_logits(a, p, pos_weight=w),
         lambda a: infoloss.binary_cross_entropy_with_logits_with_grad(a, p, pos_weight=w)[1], x),
        (lambda a: float(infoloss.logsumexp(a, (0, 1))), lambda a: infoloss.logsumexp_with_grad(a, (0, 1))[1], x),
        (lambda a: float(infoloss.entropy(a, axis=1).sum()), lambda a: infoloss.entropy_with_grad(a, axis=1)[1], p),
        (lambda a: float(infoloss.jensenshannon(a, p, axis=1).sum()),
         lambda a: infoloss.jensenshannon_with_grad(a, p, axis=1)[1], probs(3, 4)),
    ]
    for f, grad, at in checks:
        assert_close(grad(at), finite_difference(f, at), rtol=1e-6, atol=1e-8, what="finite differences")


def test_logsumexp_dims_and_keepdim():
    x = logits(2, 3, 4)
    ref = np.log(np.exp(x).sum(axis=(0, 2)))
    assert_close(infoloss.logsumexp(x, (0, 2)), ref, rtol=1e-14)
    assert_close(infoloss.logsumexp(x, [2, -3], keepdim=True), ref.reshape(1, 3, 1), rtol=1e-14)
    assert_close(infoloss.logsumexp(x, -1, keepdim=True), np.log(np.exp(x).sum(-1, keepdims=True)), rtol=1e-14)
    v = infoloss.logsumexp(x[0, 0], 0)
    assert isinstance(v, np.float64)
    _, g = infoloss.logsumexp_with_grad(x, (0, 2), keepdim=True, grad_output=np.ones((1, 3, 1)))
    assert_close(g, np.exp(x - ref[None, :, None]), rtol=1e-13)
    with pytest.raises(ValueError, match="appears multiple times"):
        infoloss.logsumexp(x, (1, -2))
    with pytest.raises(IndexError):
        infoloss.logsumexp(x, 3)
    with pytest.raises(ValueError):
        infoloss.logsumexp(x, (0, 5))


# ---------------------------------------------------------------------------------------------- threads


def test_num_threads():
    before = infoloss.get_num_threads()
    assert before >= 1
    x, y = logits(512, 33), RNG.integers(0, 33, size=512)
    ref = infoloss.cross_entropy_with_grad(x, y)
    try:
        for n in (1, 3):
            infoloss.set_num_threads(n)
            assert infoloss.get_num_threads() == n
            got = infoloss.cross_entropy_with_grad(x, y)
            same(got[0], ref[0])
            same(got[1], ref[1])
        with pytest.raises(ValueError, match="at least 1"):
            infoloss.set_num_threads(0)
        with pytest.raises(TypeError):
            infoloss.set_num_threads(2.5)
        with pytest.raises(TypeError):
            infoloss.set_num_threads("2")
    finally:
        infoloss.set_num_threads(before)


def test_the_gil_is_released_while_computing():
    # large enough that one call of the SIMD log_softmax takes well over 4 ms
    x = logits(4000, 4000, dt=np.float32)
    window = {}

    def work():
        window["start"] = start = time.perf_counter()
        calls = 0
        while time.perf_counter() - start < 0.6:
            infoloss.log_softmax(x, 1)
            calls += 1
        window["end"] = time.perf_counter()
        window["calls"] = calls

    ticks = []
    th = threading.Thread(target=work)
    th.start()
    while th.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    th.join()
    start, end = window["start"], window["end"]
    busy = end - start
    per_call = busy / window["calls"]
    inside = [t for t in ticks if start + 0.05 < t < end - 0.05]
    # The main thread wakes every ~1 ms. If each call held the GIL, it could only run between calls (about once
    # per call); released, it keeps ticking during the calls (~per_call / 1 ms times per call).
    assert per_call > 0.004, "calls too short to tell"
    assert len(inside) > 2 * window["calls"] + 10, (len(inside), busy, window["calls"])


# ------------------------------------------------------------------------------------------ miscellaneous


def test_version_and_lazy_torch_submodule():
    assert isinstance(infoloss.__version__, str) and infoloss.__version__
    with pytest.raises(AttributeError):
        infoloss.no_such_function  # noqa: B018


def test_the_torch_submodule_explains_a_missing_torch():
    # In a fresh interpreter where `import torch` fails (sys.modules["torch"] = None), whether or not torch is
    # installed here.
    import subprocess
    import sys

    code = """
import sys
sys.modules["torch"] = None
import importlib, infoloss
try:
    importlib.import_module("infoloss.torch")
except ImportError as e:
    assert "infoloss.torch needs PyTorch" in str(e), e
else:
    raise SystemExit("no ImportError")
try:
    infoloss.torch
except ImportError as e:
    assert "needs PyTorch" in str(e), e
else:
    raise SystemExit("no ImportError from the attribute")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
