"""Semantics a new user tripped over (issue 24, items 4 and 5), through the NumPy API: an empty top-k tail, NaN
logits in ignored rows, TVD with a NaN teacher row, the token accuracy's type, the loss-only UDA call, one
``ignore_index`` default. Every expected value here is PyTorch 2.15's (the committed fixtures check the same rules
case by case in the Rust tests); the torch cross-checks run where torch is installed (it is in CI)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import infoloss
from conftest import assert_close
from test_distill_linear_api import RNG, log_softmax, logits


# ------------------------------------------------------------------------------------------- the empty tail


def test_issue_example_topk_with_every_class_and_the_tail_is_the_dense_loss():
    s = np.array([[0.5, -0.3, 1.2]])
    lq = np.log([[0.1, 0.2, 0.7]])
    i = np.array([[0, 1, 2]])
    with_tail = infoloss.distill_topk(s, i, lq, add_tail=True)
    assert np.isfinite(with_tail)
    assert_close(with_tail, 0.11034, rtol=0, atol=5e-6)
    assert with_tail == infoloss.distill_topk(s, i, lq, add_tail=False)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd", "tvd"])
def test_topk_with_every_class_and_the_tail_matches_dense_distill(dt, divergence):
    s, t = logits(5, 9, dt=dt), logits(5, 9, dt=dt)
    T = 2.0
    idx = np.stack([RNG.permutation(9) for _ in range(5)])
    lq = np.take_along_axis(log_softmax(t.astype(np.float64) / T), idx, 1).astype(dt)
    labels = RNG.integers(0, 9, 5)
    kw = dict(temperature=T, divergence=divergence, beta=0.3, alpha=0.6)
    loss, grad = infoloss.distill_topk_with_grad(s, idx, lq, labels, add_tail=True, **kw)
    dense, dgrad = infoloss.distill_with_grad(s, t, labels, **kw)
    rtol = 1e-5 if dt == np.float32 else 1e-12
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert_close(loss, dense, rtol=rtol, atol=rtol)
    assert_close(grad, dgrad, rtol=rtol, atol=rtol)
    # the in-place training path takes the same rows
    s2 = s.copy()
    assert infoloss.distill_topk_with_grad_in_place(s2, idx, lq, labels, add_tail=True, **kw) == loss
    assert np.array_equal(s2, grad)


def test_linear_distill_with_every_class_in_the_teacher_topk_and_the_tail():
    xs, ws = logits(6, 4, scale=1.0), logits(7, 4, scale=0.8)
    xt, wt = logits(6, 3, scale=1.0), logits(7, 3, scale=0.8)
    kw = dict(temperature=2.0, divergence="forward_kl")
    r = infoloss.linear_distill_with_grad(xs, ws, xt, wt, teacher_topk=7, add_tail=True, **kw)
    d = infoloss.linear_distill_with_grad(xs, ws, xt, wt, **kw)
    assert np.isfinite(r.loss)
    assert_close(r.loss, d.loss, rtol=1e-12, atol=1e-12)
    assert_close(r.grad_student_weight, d.grad_student_weight, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------- NaN in ignored rows


def _ignored_rows_input(dt):
    x = logits(5, 4, dt=dt)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    x[3, :] = -np.inf
    y = np.array([0, -100, -100, -100, -100])  # rows 1-3 hold the non-finite logits; row 4 is a plain ignored row
    return x, y


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_extras_ignored_nonfinite_rows_get_the_nan_gradient_of_cross_entropy(dt):
    x, y = _ignored_rows_input(dt)
    _, ce_grad = infoloss.cross_entropy_with_grad(x, y)
    for z, ret_lse in ((0.0, False), (0.01, True)):
        r = infoloss.cross_entropy_extras_with_grad(x, y, lse_square_scale=z, return_lse=ret_lse)
        assert np.isnan(r.grad_input[1:4]).all(), r.grad_input
        assert (r.grad_input[4] == 0).all()
        assert np.isfinite(r.grad_input[0]).all()
        assert np.array_equal(np.isnan(r.grad_input), np.isnan(ce_grad))
    # under a softcap ±inf become ±c: only the NaN row stays NaN (torch's tanh backward is 0 there)
    r = infoloss.cross_entropy_extras_with_grad(x, y, softcap=3.0)
    assert np.isnan(r.grad_input[1]).all()
    assert (r.grad_input[2:5] == 0).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_ignored_nan_row(dt, reduction):
    h, w, b = logits(6, 3, dt=dt), logits(5, 3, dt=dt), logits(5, dt=dt)
    h[2, 1] = np.nan
    y = np.array([0, 4, -100, 2, -100, 1])
    r = infoloss.linear_cross_entropy_with_grad(h, w, y, linear_bias=b, reduction=reduction)
    # the loss leaves the ignored row out, as F.cross_entropy(F.linear(...)) and F.linear_cross_entropy do
    assert np.isfinite(r.loss).all()
    assert np.isnan(r.grad_input[2]).all()
    assert np.isfinite(np.delete(r.grad_input, 2, axis=0)).all()
    assert np.isnan(r.grad_linear_weight).all()
    assert np.isnan(r.grad_linear_bias).all()


def test_linear_cross_entropy_ignored_nan_row_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h, w = logits(6, 3), logits(5, 3)
    h[2, 1] = np.nan
    y = np.array([0, 4, -100, 2, -100, 1])
    ht, wt = torch.tensor(h, requires_grad=True), torch.tensor(w, requires_grad=True)
    lt = F.linear_cross_entropy(ht, wt, torch.tensor(y))
    gh, gw = torch.autograd.grad(lt, [ht, wt])
    r = infoloss.linear_cross_entropy_with_grad(h, w, y)
    assert_close(r.loss, lt.item(), rtol=1e-12, atol=1e-12)
    assert_close(r.grad_input, gh.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(r.grad_linear_weight, gw.numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ TVD, NaN teacher


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_tvd_nan_teacher_row_zero_gradient(dt):
    s, t = logits(3, 5, dt=dt), logits(3, 5, dt=dt)
    t[1, 2] = np.nan
    loss, grad = infoloss.distill_with_grad(s, t, divergence="tvd", temperature=2.0, reduction="none")
    assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all()
    assert (grad[1] == 0).all()
    assert np.isfinite(grad).all()
    # a NaN student row still has a NaN gradient (through softmax(s))
    s[0, 0] = np.nan
    _, grad = infoloss.distill_with_grad(s, t, divergence="tvd", reduction="none")
    assert np.isnan(grad[0]).all()


def test_tvd_nan_teacher_row_against_torch():
    torch = pytest.importorskip("torch")
    s, t = logits(3, 5), logits(3, 5)
    t[1, 2] = np.nan
    st = torch.tensor(s, requires_grad=True)
    p, q = torch.softmax(st / 2.0, 1), torch.softmax(torch.tensor(t) / 2.0, 1)
    ((0.5 * (p - q).abs().sum(1)) * 4.0).sum().backward()
    _, grad = infoloss.distill_with_grad(s, t, divergence="tvd", temperature=2.0, reduction="sum")
    assert_close(grad, st.grad.numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------- smaller API matters


@pytest.mark.parametrize("dt", [np.float16, np.float32, np.float64])
def test_token_accuracy_is_a_python_float_not_rounded(dt):
    x = np.zeros((6, 3), dtype=dt)
    x[0, 1] = 1  # row 0 predicts class 1, the others class 0
    y = np.array([1, 2, 2, 2, 2, 2])  # 1 of 6 right
    r = infoloss.cross_entropy_extras(x, y, return_token_accuracy=True)
    assert type(r.token_accuracy) is float and r.token_accuracy == 1 / 6
    r = infoloss.linear_cross_entropy_with_grad(np.eye(3)[[1, 0, 0, 0, 0, 0]].astype(dt), np.eye(3, dtype=dt), y,
                                                return_token_accuracy=True)
    assert type(r.token_accuracy) is float and r.token_accuracy == 1 / 6


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("sharpen", ["target", "augmented"])
def test_uda_loss_only_call(dt, sharpen):
    ori, aug = logits(7, 5, dt=dt), logits(7, 5, dt=dt)
    kw = dict(temperature=0.6, sharpen=sharpen, confidence_threshold=0.4)
    full = infoloss.uda_consistency(ori, aug, **kw)
    only = infoloss.uda_consistency_loss(ori, aug, **kw)
    assert isinstance(only, infoloss.UdaLossResult) and not hasattr(only, "grad_aug")
    assert only.loss == full.loss and only.kept == full.kept
    assert np.array_equal(only.mask, full.mask) and np.array_equal(only.row_kl, full.row_kl)


def test_uda_default_docs_show_the_default_sharpening():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ori, aug = logits(4, 5), logits(4, 5)
    T = 0.5
    # the docstring's snippet for the default, sharpen='target'
    o, a = torch.tensor(ori), torch.tensor(aug)
    target = F.softmax(o / T, dim=-1)
    row_kl = torch.sum(torch.nn.KLDivLoss(reduction="none")(F.log_softmax(a, dim=-1), target), dim=-1)
    expected = (row_kl.sum() / 4).item()
    assert_close(infoloss.uda_consistency_loss(ori, aug, temperature=T).loss, expected, rtol=1e-12, atol=1e-12)
    assert "sharpen='target'" in infoloss.uda_consistency.__doc__


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss", "distill", "distill_topk", "cross_entropy_extras",
                                "linear_cross_entropy", "linear_cross_entropy_with_grad", "linear_distill"])
def test_ignore_index_defaults_to_minus_100_everywhere(fn):
    assert inspect.signature(getattr(infoloss, fn)).parameters["ignore_index"].default == -100


def test_linear_cross_entropy_accepts_torchs_none_spelling():
    h, w = logits(4, 3), logits(5, 3)
    y = np.array([0, -100, 2, 3])
    assert infoloss.linear_cross_entropy(h, w, y, ignore_index=None) == infoloss.linear_cross_entropy(h, w, y)
