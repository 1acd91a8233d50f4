"""The committed fixtures of the later losses, through the public Python API:

- ``testdata/distill.json`` and ``testdata/uda.json`` (``scripts/gen_fixtures_distill.py``; their Rust runner is
  ``crates/infoloss/tests/distill.rs``): every value is compared with the exact one (the fixture's PyTorch code
  in float64 on the same inputs) at rtol 1e-12 / atol 1e-13 (float64) and rtol 1e-6 / atol 1e-7 (float32), and
  float32 results also with PyTorch's own float32 result (whose rounding error is larger: rtol 2e-6 / atol 2e-7,
  5e-5 / 5e-6 for the ``large_logits`` cases, as the Rust runner);
- ``testdata/ce_extras.json`` and ``testdata/linear.json`` (``scripts/gen_fixtures_linear.py``; Rust runner
  ``crates/infoloss/tests/ce_extras_linear.rs``): float64 within 1e-12 + 1e-12·|torch|; float32 within
  1e-7 + 1e-6·|torch| of torch's float32 value or within 1e-7 + 1e-6·|exact| + 2·spread of the exact value
  (``spread``: the element's inherent float32 uncertainty, recorded by the generator). The fused linear losses
  run at each of the case's chunk sizes and the automatic one. Error cases must raise.

NaN and ±inf must match exactly everywhere.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

import infoloss
from conftest import TESTDATA, mismatches

FILES = ("distill.json", "uda.json", "ce_extras.json", "linear.json")


@lru_cache(maxsize=None)
def _doc(name):
    return json.loads((TESTDATA / name).read_text())


def _cases(name):
    return [pytest.param(c, id=c["name"]) for c in _doc(name)["cases"]]


def _dtype(case):
    return np.dtype({"f32": np.float32, "f64": np.float64}.get(case["dtype"], case["dtype"]))


def _flat(values):
    return np.array([float(v) for v in values], dtype=np.float64)


def _check(failures, what, got, want, rtol, atol, alternatives=None):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        failures.append(f"{what}: {got.size} elements, expected {want.size}")
        return
    bad = mismatches(got, want, rtol, atol, alternatives)
    if bad:
        i = bad[0]
        failures.append(f"{what}: {len(bad)} of {want.size} differ; first at {i}: got {got[i]!r}, expected {want[i]!r}")


def test_the_fixture_files_are_the_expected_ones():
    # every JSON file that scripts/gen_fixtures.py did not write is run here (test_fixtures.py runs the others)
    others = {f.name for f in TESTDATA.glob("*.json")
              if json.loads(f.read_text()).get("generator") != "scripts/gen_fixtures.py"}
    assert others == set(FILES), others
    assert len(_doc("distill.json")["cases"]) >= 100
    assert len(_doc("uda.json")["cases"]) >= 30
    assert _doc("ce_extras.json")["count"] == len(_doc("ce_extras.json")["cases"])
    assert _doc("linear.json")["count"] == len(_doc("linear.json")["cases"])


# ------------------------------------------------------------------------------------------ distill.json


def _exact_tol(case):
    return (1e-6, 1e-7) if case["dtype"] == "f32" else (1e-12, 1e-13)


def _torch_f32_tol(case):
    return (5e-5, 5e-6) if "large_logits" in case["name"] else (2e-6, 2e-7)


def _distill_kwargs(o):
    return dict(temperature=o["temperature"], t2_scaling=o["t2_scaling"], divergence=o["divergence"],
                beta=o["beta"], alpha=o["alpha"], ignore_index=o["ignore_index"], reduction=o["reduction"],
                normalizer=o["normalizer"])


@pytest.mark.parametrize("case", _cases("distill.json"))
def test_distill_fixture(case):
    dt = _dtype(case)
    rows, cols = case["shape"]
    s = _flat(case["student"]).reshape(rows, cols).astype(dt)
    labels = None if case["labels"] is None else np.array(case["labels"], dtype=np.int64)
    kw = _distill_kwargs(case["options"])
    up = None if case["upstream"] is None else _flat(case["upstream"]).astype(dt)
    tk = case.get("topk")
    if tk:
        k = tk["k"]
        idx = np.array(tk["indices"], dtype=np.int64).reshape(rows, k)
        lq = _flat(tk["logprobs"]).reshape(rows, k).astype(dt)
        loss = infoloss.distill_topk(s, idx, lq, labels, add_tail=tk["add_tail"], **kw)
        loss2, grad = infoloss.distill_topk_with_grad(s, idx, lq, labels, add_tail=tk["add_tail"], grad_output=up,
                                                      **kw)
    else:
        t = _flat(case["teacher"]).reshape(rows, cols).astype(dt)
        loss = infoloss.distill(s, t, labels, **kw)
        loss2, grad = infoloss.distill_with_grad(s, t, labels, grad_output=up, **kw)
    failures = []
    if kw["reduction"] == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dt and loss.shape == (rows,)
    else:
        assert type(loss) is float
    assert grad.dtype == dt and grad.shape == (rows, cols)
    _check(failures, "forward-only loss vs _with_grad loss", loss, loss2, 0.0, 0.0)
    rt, at = _exact_tol(case)
    _check(failures, "loss", loss, _flat(case["loss"]), rt, at)
    _check(failures, "grad", grad, _flat(case["grad"]), rt, at)
    if case["dtype"] == "f32":
        rt, at = _torch_f32_tol(case)
        _check(failures, "loss vs torch float32", loss, _flat(case["loss_torch"]), rt, at)
        _check(failures, "grad vs torch float32", grad, _flat(case["grad_torch"]), rt, at)
    if case.get("dense_teacher"):
        # k = classes without tail: the dense loss on the teacher's logits gives the same values
        t = _flat(case["dense_teacher"]).reshape(rows, cols).astype(dt)
        dl, dg = infoloss.distill_with_grad(s, t, labels, grad_output=up, **kw)
        _check(failures, "k = V vs dense loss", dl, loss, 4 * rt, 4 * at)
        _check(failures, "k = V vs dense grad", dg, grad, 4 * rt, 4 * at)
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- uda.json


@pytest.mark.parametrize("case", _cases("uda.json"))
def test_uda_fixture(case):
    dt = _dtype(case)
    rows, cols = case["shape"]
    ori = _flat(case["ori"]).reshape(rows, cols).astype(dt)
    aug = _flat(case["aug"]).reshape(rows, cols).astype(dt)
    r = infoloss.uda_consistency(ori, aug, **case["options"])
    assert isinstance(r, infoloss.UdaResult)
    assert type(r.loss) is float and type(r.kept) is int
    assert r.grad_aug.dtype == dt and r.grad_aug.shape == (rows, cols)
    assert r.mask.shape == (rows,) and r.row_kl.shape == (rows,)
    assert r.mask.tolist() == [float(v) for v in case["mask"]]
    assert r.kept == case["kept"]
    failures = []
    rt, at = _exact_tol(case)
    _check(failures, "loss", r.loss, _flat(case["loss"]), rt, at)
    _check(failures, "grad", r.grad_aug, _flat(case["grad"]), rt, at)
    _check(failures, "row_kl", r.row_kl, _flat(case["row_kl"]), rt, at)
    if case["dtype"] == "f32":
        rt, at = _torch_f32_tol(case)
        _check(failures, "loss vs torch float32", r.loss, _flat(case["loss_torch"]), rt, at)
        _check(failures, "grad vs torch float32", r.grad_aug, _flat(case["grad_torch"]), rt, at)
    # the tuple unpacks in the documented order
    loss, grad, mask, kept, row_kl = r
    assert loss is r.loss and grad is r.grad_aug and kept == r.kept
    # loss.backward(upstream) in torch: uda_consistency_backward with the case's non-unit upstream gradient
    up = float(case["upstream"])
    gu = infoloss.uda_consistency_backward(ori, aug, up, **case["options"])
    assert up != 1.0 and gu.dtype == dt and gu.shape == (rows, cols)
    rt, at = _exact_tol(case)
    _check(failures, "grad_upstream", gu, _flat(case["grad_upstream"]), rt, at)
    if case["dtype"] == "f32":
        rt, at = _torch_f32_tol(case)
        _check(failures, "grad_upstream vs torch float32", gu, _flat(case["grad_upstream_torch"]), rt, at)
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- ce_extras.json, linear.json


def _rec(rec, dt=np.float64):
    if rec is None:
        return None
    shape = tuple(int(d) for d in rec["shape"])
    if rec.get("dtype") == "int64":
        return np.array([int(v) for v in rec["data"]], dtype=np.int64).reshape(shape)
    return _flat(rec["data"]).reshape(shape).astype(dt)


class Checker:
    """The comparison rule of scripts/gen_fixtures_linear.py (see the module docstring)."""

    def __init__(self, case):
        self.case = case
        self.f32 = case["dtype"] == "float32"
        self.failures = []

    def __call__(self, what, got, section="expected"):
        case = self.case
        want = _rec(case[section][what])
        if got is None:
            self.failures.append(f"{what}: missing")
            return
        got = np.asarray(got)
        if got.shape != want.shape:
            self.failures.append(f"{what}: shape {got.shape}, expected {want.shape}")
            return
        alts = None
        if self.f32 and section == "expected":
            exact, spread = _rec((case.get("exact") or {}).get(what)), _rec((case.get("spread") or {}).get(what))
            if exact is not None and spread is not None:
                e, sp = exact.reshape(-1), spread.reshape(-1)
                alts = {i: (float(e[i]), 2.0 * float(sp[i])) for i in range(e.size) if np.isfinite(e[i])}
        rt, at = (1e-6, 1e-7) if self.f32 else (1e-12, 1e-12)
        _check(self.failures, f"{section}.{what}", got, want, rt, at, alts)

    def done(self, extra=""):
        assert not self.failures, extra + "\n".join(self.failures)


def _expected_error(case):
    return IndexError if "out of bounds" in case.get("message", "") else (ValueError, TypeError, IndexError)


def _reduced(r, reduction):
    """Reduced results are Python floats, unreduced ones arrays."""
    for v in (r.loss, r.z_loss, r.token_accuracy):
        assert (type(v) is float) if reduction != "none" else isinstance(v, np.ndarray)


@pytest.mark.parametrize("case", _cases("ce_extras.json"))
def test_ce_extras_fixture(case):
    dt = _dtype(case)
    inp, o = case["inputs"], case["options"]
    x, y, w = _rec(inp["input"], dt), _rec(inp["target"]), _rec(inp.get("weight"), dt)
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
    go = _rec(case["grad_output"], dt)
    r = infoloss.cross_entropy_extras_with_grad(x, y, grad_output=go, **kw)
    fwd = infoloss.cross_entropy_extras(x, y, **kw)
    assert fwd.grad_input is None and r.grad_input.dtype == dt
    _reduced(r, o["reduction"])
    ck = Checker(case)
    for what in ("loss", "z_loss", "lse", "token_accuracy"):
        ck(what, getattr(r, what))
        _check(ck.failures, f"forward-only {what}", getattr(fwd, what), getattr(r, what), 0.0, 0.0)
    ck("grad_input", r.grad_input)
    ck.done()


def _chunks(case):
    return list(case.get("chunk_sizes") or []) + ([None] if not case.get("error") or not case.get("chunk_sizes")
                                                  else [])


def _linear_ce(case, dt, chunk, go):
    inp, o = case["inputs"], case["options"]
    return infoloss.linear_cross_entropy_with_grad(
        _rec(inp["hidden"], dt), _rec(inp["weight"], dt), _rec(inp["targets"]), linear_bias=_rec(inp["bias"], dt),
        weight=_rec(inp["class_weight"], dt), reduction=o["reduction"], ignore_index=o["ignore_index"],
        label_smoothing=float(o["label_smoothing"]), lse_square_scale=float(o["lse_square_scale"]),
        softcap=None if o["softcap"] is None else float(o["softcap"]), chunk_size=chunk, return_lse=True,
        return_token_accuracy=True, grad_output=go,
    )


def _linear_distill(case, dt, chunk, forward_only=False):
    inp, o = case["inputs"], case["options"]
    args = [_rec(inp[k], dt) for k in ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight")]
    kw = dict(_distill_kwargs({k: (float(v) if k in ("temperature", "beta", "alpha") else v)
                               for k, v in o.items()}), chunk_size=chunk)
    # the "ldx_" cases: biases, a top-k teacher, a non-unit upstream gradient
    kw.update(student_bias=_rec(inp.get("student_bias"), dt), teacher_bias=_rec(inp.get("teacher_bias"), dt))
    topk = case.get("teacher_topk")
    if topk is not None:
        kw.update(teacher_topk=topk["k"], add_tail=topk["add_tail"])
    if forward_only:
        return infoloss.linear_distill(*args, _rec(inp["labels"]), **kw)
    return infoloss.linear_distill_with_grad(*args, _rec(inp["labels"]), grad_output=_rec(case.get("grad_output"), dt),
                                             **kw)


@pytest.mark.parametrize("case", _cases("linear.json"))
def test_linear_fixture(case):
    dt = _dtype(case)
    fn = case["function"]
    if case.get("error"):
        for chunk in _chunks(case):
            with pytest.raises(_expected_error(case)):
                if fn == "linear_cross_entropy":
                    _linear_ce(case, dt, chunk, None)
                else:
                    _linear_distill(case, dt, chunk)
        return
    ck = Checker(case)
    for chunk in _chunks(case):
        n = len(ck.failures)
        if fn == "linear_cross_entropy":
            r = _linear_ce(case, dt, chunk, _rec(case.get("grad_output"), dt))
            _reduced(r, case["options"]["reduction"])
            for what in ("loss", "z_loss", "lse", "token_accuracy"):
                ck(what, getattr(r, what))
            ck("grad_hidden", r.grad_input)
            ck("grad_weight", r.grad_linear_weight)
            assert (r.grad_linear_bias is None) == (case["inputs"]["bias"] is None)
            if r.grad_linear_bias is not None:
                ck("grad_bias", r.grad_linear_bias)
            if case.get("torch_linear_cross_entropy") and not ck.f32:
                # torch's own chunked F.linear_cross_entropy (float64)
                ck("loss", r.loss, "torch_linear_cross_entropy")
                ck("grad_hidden", r.grad_input, "torch_linear_cross_entropy")
                ck("grad_weight", r.grad_linear_weight, "torch_linear_cross_entropy")
            assert r.grad_input.dtype == dt and r.grad_linear_weight.dtype == dt
        else:
            loss, gx, gw, gb = _linear_distill(case, dt, chunk)
            ck("loss", loss)
            ck("grad_hidden", gx)
            ck("grad_weight", gw)
            assert gx.dtype == dt and gw.dtype == dt
            assert (gb is None) == (case["inputs"].get("student_bias") is None)
            if gb is not None:
                ck("grad_bias", gb)
                assert gb.dtype == dt
            _check(ck.failures, "forward-only loss", _linear_distill(case, dt, chunk, forward_only=True), loss,
                   0.0, 0.0)
        ck.failures[n:] = [f"chunk {chunk}: {m}" for m in ck.failures[n:]]
    ck.done()
