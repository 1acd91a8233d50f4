"""The ``infoloss.torch`` front end's conformance adapter: every fixture case (read and compared by
tests/conformance.py; schema in testdata/README.md) whose function has a drop-in in ``infoloss.torch`` runs through
it with autograd: the forward on torch tensors, then ``backward(grad_output)``; the output and the gradients
autograd leaves on the input (and on a float target) must match the fixture at the file's tolerances. Inputs torch
rejects must raise. The fused distillations run at each of the case's chunk sizes; the information measures, the
cross-entropy extras and ``linear_cross_entropy`` (multi-output functions with their own result types) count as not
supported; the tally goes to target/conformance/python-torch/.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conformance import NOT_SUPPORTED, Tally, array, distill_kwargs, dtype_of, params

torch = pytest.importorskip("torch")
itorch = pytest.importorskip("infoloss.torch")

TALLY = Tally("python-torch")

LOSSES = {"nll_loss", "cross_entropy", "cross_entropy_probs", "kl_div", "binary_cross_entropy",
          "binary_cross_entropy_with_logits"}
ROWS = {"logsumexp", "log_softmax", "softmax"}


@pytest.fixture(scope="module", autouse=True)
def _write_tally():
    yield
    TALLY.write()


def _tensor(rec, dtype, grad=False):
    a = array(rec, dtype)
    if a is None:
        return None
    t = torch.from_numpy(np.array(a))  # a copy; np.ascontiguousarray would make 0-d arrays 1-d
    return t.requires_grad_() if grad and t.is_floating_point() else t


def _grad(t):
    return None if t is None or t.grad is None else t.grad.detach().numpy()


def _loss(fn, case, x, t):
    o, dt = case["options"], dtype_of(case)
    if fn in ROWS:
        return getattr(itorch, fn)(x, o["dim"])
    w = _tensor(o.get("weight"), dt)
    if fn == "nll_loss":
        return itorch.nll_loss(x, t, weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"])
    if fn in ("cross_entropy", "cross_entropy_probs"):
        return itorch.cross_entropy(x, t, weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"],
                                    label_smoothing=float(o["label_smoothing"]))
    if fn == "kl_div":
        return itorch.kl_div(x, t, reduction=o["reduction"], log_target=o["log_target"])
    if fn == "binary_cross_entropy":
        return itorch.binary_cross_entropy(x, t, weight=w, reduction=o["reduction"])
    return itorch.binary_cross_entropy_with_logits(x, t, weight=w, reduction=o["reduction"],
                                                   pos_weight=_tensor(o.get("pos_weight"), dt))


def _run_loss(ck, case):
    fn, dt = case["function"], dtype_of(case)
    x = _tensor(case["inputs"]["input"], dt, grad=True)
    t = _tensor(case["inputs"].get("target"), dt, grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning
        if case.get("error"):
            with pytest.raises(Exception):
                _loss(fn, case, x, t)
            return
        out = _loss(fn, case, x, t)
    ck.field("output", out.detach().numpy())
    out.backward(_tensor(case["grad_output"], dt))
    ck.field("grad_input", _grad(x))
    if case["expected"].get("grad_target") is not None and t is not None and t.is_floating_point():
        ck.field("grad_target", _grad(t))


def _run_distill(ck, case):
    dt, inp, o = dtype_of(case), case["inputs"], case["options"]
    s = _tensor(inp["student"], dt, grad=True)
    labels = _tensor(inp.get("labels"), dt)
    kw = distill_kwargs(o)
    if case.get("error"):  # an invalid option (distill_softcap.json)
        with pytest.raises(ValueError):
            itorch.distill(s, _tensor(inp["teacher"], dt), labels, **kw)
        return None
    if case["function"] == "distill_topk":
        loss = itorch.distill_topk(s, _tensor(inp["topk_indices"], dt), _tensor(inp["topk_logprobs"], dt), labels,
                                   add_tail=o["add_tail"], **kw)
    else:
        loss = itorch.distill(s, _tensor(inp["teacher"], dt), labels, **kw)
    ck.field("output", loss.detach().numpy())
    up = _tensor(case.get("grad_output"), dt)
    loss.backward(up if up is not None else torch.ones_like(loss))
    ck.field("grad_input", _grad(s))


def _run_uda(ck, case):
    dt = dtype_of(case)
    opts = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in case["options"].items()}
    ori = _tensor(case["inputs"]["ori"], dt)
    for field, up in (("grad_input_unit", None), ("grad_input", _tensor(case["grad_output"], dt))):
        aug = _tensor(case["inputs"]["aug"], dt, grad=True)
        loss = itorch.uda_consistency(ori, aug, **opts)
        ck.field("output", loss.detach().numpy())
        loss.backward(up)
        ck.field(field, _grad(aug))


def _run_linear_distill(ck, case):
    """The fused distillations (a teacher head or a stored top-k) at each of the case's chunk sizes and the
    automatic one: ``backward(grad_output)`` reaches the student's hidden states, weight and bias."""
    dt, inp, o, fn = dtype_of(case), case["inputs"], case["options"], case["function"]
    chunks = list(case.get("chunk_sizes") or []) + ([None] if not case.get("error") or not case.get("chunk_sizes")
                                                    else [])
    for chunk in chunks:
        xs, ws = (_tensor(inp[k], dt, grad=True) for k in ("student_hidden", "student_weight"))
        bs = _tensor(inp.get("student_bias"), dt, grad=True)
        kw = dict(distill_kwargs(o), chunk_size=chunk, student_bias=bs)
        if fn == "linear_distill_topk":
            args = (_tensor(inp["topk_indices"], dt), _tensor(inp["topk_logprobs"], dt))
            kw.update(add_tail=o["add_tail"])
        else:
            args = (_tensor(inp["teacher_hidden"], dt), _tensor(inp["teacher_weight"], dt))
            topk = o.get("teacher_topk")
            kw.update(teacher_bias=_tensor(inp.get("teacher_bias"), dt), teacher_topk=topk and topk["k"],
                      add_tail=bool(topk and topk["add_tail"]))
        up = _tensor(case.get("grad_output"), dt)

        def run():
            loss = getattr(itorch, fn)(xs, ws, *args, _tensor(inp.get("labels"), dt), **kw)
            loss.backward(up if up is not None else torch.ones_like(loss))
            return loss

        if case.get("error"):  # torch's autograd rejects an upstream gradient of the wrong shape itself
            with pytest.raises((ValueError, IndexError, RuntimeError)):
                run()
            continue
        loss = run()
        ck.field("output", loss.detach().numpy())
        ck.field("grad_hidden", _grad(xs))
        ck.field("grad_weight", _grad(ws))
        if bs is not None:
            ck.field("grad_bias", _grad(bs))


def _adapter(ck, case):
    fn = case["function"]
    if fn in LOSSES or fn in ROWS:
        return _run_loss(ck, case)
    if fn in ("distill", "distill_topk"):
        return _run_distill(ck, case)
    if fn == "uda_consistency":
        return _run_uda(ck, case)
    if fn in ("linear_distill", "linear_distill_topk"):
        return _run_linear_distill(ck, case)
    return NOT_SUPPORTED


@pytest.mark.parametrize("file, case", params())
def test_fixture_through_torch(file, case):
    TALLY.run(file, case, _adapter)
