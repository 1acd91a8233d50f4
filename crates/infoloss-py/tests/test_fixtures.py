"""The NumPy front end's conformance adapter: every case of every fixture file in testdata/ (read and compared by
tests/conformance.py; schema in testdata/README.md) through the public Python API, at the file's tolerances, NaN
and ±inf exactly where torch/SciPy put them; inputs torch rejects must raise. The NumPy API has a function for every
fixture function, so no case counts as not supported; the tally goes to target/conformance/python/ for
scripts/conformance_table.py.

- losses, softmax family, information measures: the ``*_with_grad`` functions (output, grad_input, grad_target),
  and the forward-only function must agree with them;
- distillation and UDA: the exact (float64) value at the file's tolerances and PyTorch's own float32 result at
  its wider one (``also_expected``); UDA also through ``uda_consistency_backward`` with a non-unit upstream;
- cross-entropy extras and the fused linear losses: float32 elements may pass through ``f32_reference`` (exact
  value ± 2·spread); the fused losses run at each of the case's chunk sizes and the automatic one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import infoloss
from conformance import Tally, array, distill_kwargs, dtype_of, params

TALLY = Tally("python")


@pytest.fixture(scope="module", autouse=True)
def _write_tally():
    yield
    TALLY.write()


LOSSES = {
    "nll_loss",
    "cross_entropy",
    "cross_entropy_probs",
    "kl_div",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
}
ROWS = {"logsumexp", "log_softmax", "softmax"}
INFO = {"entr", "rel_entr", "entropy", "shannon_cross_entropy", "jensenshannon", "self_information"}


def _call(fn, case, dtype):
    """(output, grad_input, grad_target) through the public ``*_with_grad`` functions, plus the forward-only
    function's output (which must agree)."""
    inputs = case["inputs"]
    o = case.get("options") or {}
    x = array(inputs["input"], dtype)
    t = array(inputs.get("target"), dtype)
    go = array(case.get("grad_output"), dtype)
    w = array(o.get("weight"), dtype)
    if fn in ROWS:
        f, fg = getattr(infoloss, fn), getattr(infoloss, fn + "_with_grad")
        out, gi = fg(x, o["dim"], grad_output=go)
        return f(x, o["dim"]), (out, gi, None)
    if fn == "nll_loss":
        kw = dict(weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"])
        out, gi = infoloss.nll_loss_with_grad(x, t, grad_output=go, **kw)
        return infoloss.nll_loss(x, t, **kw), (out, gi, None)
    if fn in ("cross_entropy", "cross_entropy_probs"):
        kw = dict(weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"],
                  label_smoothing=o["label_smoothing"])
        res = infoloss.cross_entropy_with_grad(x, t, grad_output=go, return_target_grad=True, **kw)
        return infoloss.cross_entropy(x, t, **kw), res
    if fn == "kl_div":
        kw = dict(reduction=o["reduction"], log_target=o["log_target"])
        res = infoloss.kl_div_with_grad(x, t, grad_output=go, return_target_grad=True, **kw)
        return infoloss.kl_div(x, t, **kw), res
    if fn == "binary_cross_entropy":
        kw = dict(weight=w, reduction=o["reduction"])
        res = infoloss.binary_cross_entropy_with_grad(x, t, grad_output=go, return_target_grad=True, **kw)
        return infoloss.binary_cross_entropy(x, t, **kw), res
    if fn == "binary_cross_entropy_with_logits":
        kw = dict(weight=w, reduction=o["reduction"], pos_weight=array(o.get("pos_weight"), dtype))
        res = infoloss.binary_cross_entropy_with_logits_with_grad(
            x, t, grad_output=go, return_target_grad=True, **kw
        )
        return infoloss.binary_cross_entropy_with_logits(x, t, **kw), res
    # SciPy-style measures: input = p, target = q (the Rust runner's convention: grad_output defaults to p)
    p, q = x, t
    g = go if go is not None else p
    base = o.get("base")
    if fn == "entr":
        out, gi = infoloss.entr_with_grad(p, grad_output=g)
        return infoloss.entr(p), (out, gi, None)
    if fn == "rel_entr":
        return infoloss.rel_entr(p, q), infoloss.rel_entr_with_grad(p, q, grad_output=g, return_target_grad=True)
    if fn == "self_information":
        out, gi = infoloss.self_information_with_grad(p, base, grad_output=g)
        return infoloss.self_information(p, base), (out, gi, None)
    if fn == "entropy":
        kw = dict(base=base, axis=o["axis"])
        return infoloss.entropy(p, q, **kw), infoloss.entropy_with_grad(
            p, q, grad_output=g, return_target_grad=True, **kw
        )
    if fn == "shannon_cross_entropy":
        kw = dict(base=base, axis=o["axis"])
        return infoloss.shannon_cross_entropy(p, q, **kw), infoloss.shannon_cross_entropy_with_grad(
            p, q, grad_output=g, return_target_grad=True, **kw
        )
    if fn == "jensenshannon":
        kw = dict(base=base, axis=o["axis"], keepdims=o.get("keepdims", False))
        return infoloss.jensenshannon(p, q, **kw), infoloss.jensenshannon_with_grad(
            p, q, grad_output=g, return_target_grad=True, **kw
        )
    raise AssertionError(f"unknown function {fn}")




def _expected_error(case):
    """torch's IndexError (recorded as ``error_type``; the later generators say "out of bounds") stays one."""
    if case.get("error_type") == "IndexError" or ("error_type" not in case and "out of bounds" in case["message"]):
        return IndexError
    return (ValueError, TypeError, IndexError)


def _run_basic(ck, case):
    fn = case["function"]
    dtype = dtype_of(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning
        if case.get("error"):
            with pytest.raises(_expected_error(case)):
                _call(fn, case, dtype)
            return
        forward, (out, gi, gt) = _call(fn, case, dtype)
    exp = case["expected"]
    for key, got in (("output", out), ("grad_input", gi), ("grad_target", gt)):
        if exp.get(key) is None:
            continue
        if got is None:
            # class-index targets and measures without a second argument have no target gradient
            if key == "grad_target" and not np.any(array(exp[key])):
                continue
            ck.failures.append(f"{key}: missing")
            continue
        got = np.asarray(got)
        if key != "output" and got.dtype != dtype:
            ck.failures.append(f"{key}: dtype {got.dtype}, expected {dtype}")
        ck.field(key, got)
    # the forward-only function agrees with the loss returned together with the gradient
    ck.compare("forward-only result vs the _with_grad loss", forward, out, 0.0, 0.0)


def _run_distill(ck, case):
    dt = dtype_of(case)
    inp, o = case["inputs"], case["options"]
    s = array(inp["student"], dt)
    rows, cols = s.shape
    labels = array(inp.get("labels"))
    kw = distill_kwargs(o)
    if case.get("error"):  # an invalid option (distill_softcap.json)
        with pytest.raises(ValueError):
            infoloss.distill(s, array(inp["teacher"], dt), labels, **kw)
        return None
    up = array(case.get("grad_output"), dt)
    if case["function"] == "distill_topk":
        idx, lq = array(inp["topk_indices"]), array(inp["topk_logprobs"], dt)
        loss = infoloss.distill_topk(s, idx, lq, labels, add_tail=o["add_tail"], **kw)
        loss2, grad = infoloss.distill_topk_with_grad(s, idx, lq, labels, add_tail=o["add_tail"], grad_output=up,
                                                      **kw)
    else:
        t = array(inp["teacher"], dt)
        loss = infoloss.distill(s, t, labels, **kw)
        loss2, grad = infoloss.distill_with_grad(s, t, labels, grad_output=up, **kw)
    if kw["reduction"] == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dt and loss.shape == (rows,)
    else:
        assert type(loss) is float
    assert grad.dtype == dt and grad.shape == (rows, cols)
    ck.compare("forward-only loss vs _with_grad loss", np.asarray(loss), np.asarray(loss2), 0.0, 0.0)
    ck.field("output", np.asarray(loss))
    ck.field("grad_input", grad)
    if inp.get("dense_teacher"):
        # k = classes without tail: the dense loss on the teacher's logits gives the same values
        dl, dg = infoloss.distill_with_grad(s, array(inp["dense_teacher"], dt), labels, grad_output=up, **kw)
        ck.compare("k = V vs dense loss", np.asarray(dl), np.asarray(loss), 4 * ck.rtol, 4 * ck.atol)
        ck.compare("k = V vs dense grad", dg, grad, 4 * ck.rtol, 4 * ck.atol)


def _run_uda(ck, case):
    dt = dtype_of(case)
    ori, aug = array(case["inputs"]["ori"], dt), array(case["inputs"]["aug"], dt)
    rows, cols = ori.shape
    opts = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in case["options"].items()}
    r = infoloss.uda_consistency(ori, aug, **opts)
    assert isinstance(r, infoloss.UdaResult)
    assert type(r.loss) is float and type(r.kept) is int
    assert r.grad_aug.dtype == dt and r.grad_aug.shape == (rows, cols)
    assert r.mask.shape == (rows,) and r.row_kl.shape == (rows,)
    ck.field("output", np.asarray(r.loss))
    ck.field("grad_input_unit", r.grad_aug)
    ck.field("row_kl", r.row_kl)
    ck.field("mask", r.mask)
    ck.field("kept", np.asarray(r.kept))
    # the tuple unpacks in the documented order
    loss, grad, mask, kept, row_kl = r
    assert loss is r.loss and grad is r.grad_aug and kept == r.kept
    # loss.backward(upstream) in torch: uda_consistency_backward with the case's non-unit upstream gradient
    up = float(array(case["grad_output"]))
    gu = infoloss.uda_consistency_backward(ori, aug, up, **opts)
    assert up != 1.0 and gu.dtype == dt and gu.shape == (rows, cols)
    ck.field("grad_input", gu)


def _reduced(r, reduction):
    """Reduced results are Python floats, unreduced ones arrays."""
    for v in (r.loss, r.z_loss, r.token_accuracy):
        assert (type(v) is float) if reduction != "none" else isinstance(v, np.ndarray)


def _run_ce_extras(ck, case):
    dt = dtype_of(case)
    inp, o = case["inputs"], case["options"]
    x, y, w = array(inp["input"], dt), array(inp["target"]), array(o.get("weight"), dt)
    kw = dict(weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"],
              label_smoothing=float(o["label_smoothing"]), lse_square_scale=float(o["lse_square_scale"]),
              softcap=None if o["softcap"] is None else float(o["softcap"]), return_lse=True,
              return_token_accuracy=True)
    if case.get("error"):
        with pytest.raises(_expected_error(case)):
            infoloss.cross_entropy_extras(x, y, **kw)
        with pytest.raises(_expected_error(case)):
            infoloss.cross_entropy_extras_with_grad(x, y, **kw)
        return
    r = infoloss.cross_entropy_extras_with_grad(x, y, grad_output=array(case["grad_output"], dt), **kw)
    fwd = infoloss.cross_entropy_extras(x, y, **kw)
    assert fwd.grad_input is None and r.grad_input.dtype == dt
    _reduced(r, o["reduction"])
    for what in ("loss", "z_loss", "lse", "token_accuracy"):
        ck.field("output" if what == "loss" else what, np.asarray(getattr(r, what)), what)
        ck.compare(f"forward-only {what}", np.asarray(getattr(fwd, what)), np.asarray(getattr(r, what)), 0.0, 0.0)
    ck.field("grad_input", r.grad_input)


def _chunks(case):
    return list(case.get("chunk_sizes") or []) + ([None] if not case.get("error") or not case.get("chunk_sizes")
                                                  else [])


def _linear_ce(case, dt, chunk, go):
    inp, o = case["inputs"], case["options"]
    return infoloss.linear_cross_entropy_with_grad(
        array(inp["hidden"], dt), array(inp["weight"], dt), array(inp["targets"]), linear_bias=array(inp["bias"], dt),
        weight=array(inp["class_weight"], dt), reduction=o["reduction"], ignore_index=o["ignore_index"],
        label_smoothing=float(o["label_smoothing"]), lse_square_scale=float(o["lse_square_scale"]),
        softcap=None if o["softcap"] is None else float(o["softcap"]), chunk_size=chunk, return_lse=True,
        return_token_accuracy=True, grad_output=go,
    )


def _linear_distill(case, dt, chunk, forward_only=False):
    """``linear_distill`` or ``linear_distill_topk`` (a stored teacher) of the case, with its gradients unless
    ``forward_only``."""
    inp, o, fn = case["inputs"], case["options"], case["function"]
    kw = dict(distill_kwargs(o), chunk_size=chunk, student_bias=array(inp.get("student_bias"), dt))
    args = [array(inp["student_hidden"], dt), array(inp["student_weight"], dt)]
    if fn == "linear_distill_topk":
        args += [array(inp["topk_indices"]), array(inp["topk_logprobs"], dt)]
        kw.update(add_tail=o["add_tail"])
    else:
        args += [array(inp[k], dt) for k in ("teacher_hidden", "teacher_weight")]
        # the "ldx_" cases: biases, a top-k teacher, a non-unit upstream gradient
        kw.update(teacher_bias=array(inp.get("teacher_bias"), dt))
        topk = o.get("teacher_topk")
        if topk is not None:
            kw.update(teacher_topk=topk["k"], add_tail=topk["add_tail"])
    if forward_only:
        return getattr(infoloss, fn)(*args, array(inp.get("labels")), **kw)
    return getattr(infoloss, fn + "_with_grad")(*args, array(inp.get("labels")),
                                                grad_output=array(case.get("grad_output"), dt), **kw)


def _run_linear(ck, case):
    dt = dtype_of(case)
    fn = case["function"]
    if case.get("error"):
        for chunk in _chunks(case):
            with pytest.raises(_expected_error(case)):
                if fn == "linear_cross_entropy":
                    _linear_ce(case, dt, chunk, None)
                else:
                    _linear_distill(case, dt, chunk)
        return
    for chunk in _chunks(case):
        n = len(ck.failures)
        if fn == "linear_cross_entropy":
            r = _linear_ce(case, dt, chunk, array(case.get("grad_output"), dt))
            _reduced(r, case["options"]["reduction"])
            for what in ("loss", "z_loss", "lse", "token_accuracy"):
                ck.field("output" if what == "loss" else what, np.asarray(getattr(r, what)), what)
            ck.field("grad_hidden", r.grad_input)
            ck.field("grad_weight", r.grad_linear_weight)
            assert (r.grad_linear_bias is None) == (case["inputs"]["bias"] is None)
            if r.grad_linear_bias is not None:
                ck.field("grad_bias", r.grad_linear_bias)
            assert r.grad_input.dtype == dt and r.grad_linear_weight.dtype == dt
        else:
            loss, gx, gw, gb = _linear_distill(case, dt, chunk)
            ck.field("output", np.asarray(loss))
            ck.field("grad_hidden", gx)
            ck.field("grad_weight", gw)
            assert gx.dtype == dt and gw.dtype == dt
            assert (gb is None) == (case["inputs"].get("student_bias") is None)
            if gb is not None:
                ck.field("grad_bias", gb)
                assert gb.dtype == dt
            ck.compare("forward-only loss", np.asarray(_linear_distill(case, dt, chunk, forward_only=True)),
                       np.asarray(loss), 0.0, 0.0)
        ck.failures[n:] = [f"chunk {chunk}: {m}" for m in ck.failures[n:]]


def _adapter(ck, case):
    fn = case["function"]
    if fn in LOSSES or fn in ROWS or fn in INFO:
        return _run_basic(ck, case)
    if fn in ("distill", "distill_topk"):
        return _run_distill(ck, case)
    if fn == "uda_consistency":
        return _run_uda(ck, case)
    if fn == "cross_entropy_extras":
        return _run_ce_extras(ck, case)
    if fn in ("linear_cross_entropy", "linear_distill", "linear_distill_topk"):
        return _run_linear(ck, case)
    raise AssertionError(f"fixture function the NumPy adapter does not know: {fn}")


def test_the_fixture_files_are_the_expected_ones():
    from conformance import FILES
    from conftest import TESTDATA

    assert {f.name for f in TESTDATA.glob("*.json")} == set(FILES)


@pytest.mark.parametrize("file, case", params())
def test_fixture(file, case):
    TALLY.run(file, case, _adapter)
