#!/usr/bin/env python3
"""Generate the PyTorch 2.15 fixtures of the cross-entropy extras and the fused linear losses.

Writes exactly two files::

    testdata/ce_extras.json   cross_entropy_extras: z-loss, softcap, lse, token accuracy
    testdata/linear.json      linear_cross_entropy and linear_distill

Run with the torch 2.15 environment (deterministic: fixed seeds, one torch thread)::

    python scripts/gen_fixtures_linear.py            # write
    python scripts/gen_fixtures_linear.py --check    # fail if the files on disk differ

Both files are in the common fixture schema (testdata/README.md; written through ``fixture_schema.py``). The
values are computed here as::

    case = {"name", "function", "dtype": "float32" | "float64",
            "inputs": {name: array}, "options": {...}, "grad_output": array | null,
            "expected": {name: array},          # torch evaluated in `dtype`
            "exact": {name: array},             # float32 only: the same expression in float64 on the same inputs
            "spread": {name: array},            # float32 only: see below
            "chunk_sizes": [...]}               # linear functions: run once per chunk size
    error case = {"name", "function", "dtype", "inputs", "options", "error": true, "message": torch's or ours}

and ``to_schema`` writes ``exact``/``spread`` as ``f32_reference`` rows ``[index, exact, 2·spread]``.

Tolerances: float64 |got − expected| ≤ 1e-12 + 1e-12·|expected|. float32: within 1e-7 + 1e-6·|expected| of torch's
float32 value, or within 1e-7 + 1e-6·|exact| + 2·spread of the exact (float64) value, where ``spread`` is the largest
change of the float64 result when every float32 input moves by at most one float32 ulp (4 random trials): the
element's inherent float32 uncertainty. (The fused linear losses run their GEMMs in float32 with another summation
order than torch's BLAS; float32 rounding of the logits alone moves the results by about that much.) Non-finite
values must match exactly.

The torch expressions (``xc`` = capped logits; ``keep`` = target != ignore_index)::

    xc   = c * torch.tanh(x / c)            (or x)
    lse  = torch.logsumexp(xc, 1)
    z    = torch.where(keep, s * lse.pow(2), 0)
    loss = F.cross_entropy(xc, y, weight, ignore_index, reduction, label_smoothing)
           + {mean: z.sum() / keep.sum(), sum: z.sum(), none: z}        (no z term when s == 0)
    acc  = (xc.argmax(1) == y)[keep].float().mean()   (none: torch.where(keep, (argmax == y).float(), 0))
    linear: x = F.linear(hidden, weight, bias), gradients wrt hidden, weight, bias by autograd
    linear_distill: s = F.linear(xs, ws), t = F.linear(xt, wt), then the distillation expression of
            infoloss::distill (F.kl_div(log_softmax(s/T), log_softmax(t/T), log_target=True)·T², TRL's JSD, TVD,
            + (1 − alpha)·F.cross_entropy(s, labels)), gradients wrt xs and ws.
    linear_distill, "ldx_" cases (appended last): s = F.linear(xs, ws, bs), t = F.linear(xt, wt, bt) (inputs
            "student_bias", "teacher_bias", either may be null), an optional sparse teacher (case key
            "teacher_topk": {"k", "add_tail"}: idx = t.topk(k, 1).indices, lq = log_softmax(t/T, 1).gather(1, idx),
            lp = (s/T).gather(1, idx) − logsumexp(s/T, 1), plus the tail buckets
            logsumexp(s/T over the other classes) − logsumexp(s/T) and log1mexp(logsumexp(lq)) with add_tail), and
            a non-unit "grad_output" (a scalar, or (N,) for 'none'): gradients wrt xs, ws and bs
            ("grad_bias") by torch.autograd.grad(loss, ..., grad_output).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_schema  # noqa: E402  (the common layout of every file in testdata/)
from gen_fixtures_distill import sparse_buckets  # noqa: E402  (the top-k bucket reference of distill_topk)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata"
DT = {"float32": torch.float32, "float64": torch.float64}
N_PERTURB = 4
CHUNKS = [1, 3, 7, 100]

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")


# ----------------------------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------------------------


def enc_float(v):
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f


def enc(a):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        if a.dtype == torch.int64:
            return {"shape": list(a.shape), "dtype": "int64", "data": [int(v) for v in a.reshape(-1).tolist()]}
        a = a.detach().to(torch.float64)
        return {"shape": list(a.shape), "data": [enc_float(v) for v in a.reshape(-1).tolist()]}
    raise TypeError(type(a))


def versions():
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


# ----------------------------------------------------------------------------------------------------------------
# float32 reference: exact value and inherent spread
# ----------------------------------------------------------------------------------------------------------------


def ulp_perturb(t: torch.Tensor, rng) -> torch.Tensor:
    """float64 tensor of float32 values, each finite nonzero one moved by -1, 0 or +1 float32 ulp."""
    a = t.detach().to(torch.float64).numpy().astype(np.float32)
    u = rng.integers(-1, 2, a.shape)
    up = np.nextafter(a, np.float32(np.inf))
    dn = np.nextafter(a, np.float32(-np.inf))
    b = np.where(u > 0, up, np.where(u < 0, dn, a))
    b = np.where(np.isfinite(a) & (np.abs(a) >= np.finfo(np.float32).tiny), b, a)
    return torch.tensor(b.astype(np.float64))


def f32_reference(evaluate, inputs: dict, rng):
    """``evaluate(inputs_float64) -> {name: tensor}``: the exact results and the per-element spread."""
    exact = {k: v.detach().to(torch.float64) for k, v in evaluate(inputs).items()}
    spread = {k: torch.zeros_like(v) for k, v in exact.items()}
    for _ in range(N_PERTURB):
        pert = {k: (ulp_perturb(v, rng) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                for k, v in inputs.items()}
        res = evaluate(pert)
        for k, v in res.items():
            d = (v.detach().to(torch.float64) - exact[k]).abs()
            ok = torch.isfinite(d)
            spread[k] = torch.where(ok, torch.maximum(spread[k], d), spread[k])
    return exact, spread


# ----------------------------------------------------------------------------------------------------------------
# Cross-entropy with extras
# ----------------------------------------------------------------------------------------------------------------


def ce_extras_expr(x, y, o, w=None):
    """The torch expression; returns the dict of outputs (loss, z_loss, lse, token_accuracy) and the loss."""
    c = o["softcap"]
    xc = c * torch.tanh(x / c) if c is not None else x
    red, ii, s = o["reduction"], o["ignore_index"], o["lse_square_scale"]
    keep = y != ii
    ce = F.cross_entropy(xc, y, weight=w, ignore_index=ii, reduction=red, label_smoothing=o["label_smoothing"])
    lse = torch.logsumexp(xc, 1) if xc.shape[1] > 0 else torch.full((xc.shape[0],), -math.inf, dtype=xc.dtype)
    if s != 0.0:
        z_rows = torch.where(keep, s * lse.pow(2), torch.zeros_like(lse))
        z = {"mean": z_rows.sum() / keep.sum(), "sum": z_rows.sum(), "none": z_rows}[red]
        loss = ce + z
    else:
        z = torch.zeros((), dtype=x.dtype) if red != "none" else torch.zeros(x.shape[0], dtype=x.dtype)
        loss = ce
    if xc.shape[1] > 0:
        correct = (xc.argmax(1) == y) & keep
    else:
        correct = torch.zeros(x.shape[0], dtype=torch.bool)
    if red == "none":
        acc = correct.to(x.dtype)
    else:
        kept = int(keep.sum())
        acc = torch.tensor(float(correct.sum()) / kept if kept else math.nan, dtype=x.dtype)
    outs = {"loss": loss, "z_loss": z, "lse": lse, "token_accuracy": acc}
    return outs, loss


def upstream(loss, rng):
    if loss.dim() == 0:
        return torch.tensor(float(rng.choice([1.0, rng.uniform(-2, 2)])), dtype=loss.dtype)
    return torch.tensor(rng.uniform(-2, 2, size=tuple(loss.shape)), dtype=loss.dtype)


def ce_eval(x, y, o, w, go):
    xg = x.detach().clone().requires_grad_(True)
    outs, loss = ce_extras_expr(xg, y, o, w)
    (g,) = torch.autograd.grad(loss, [xg], go, allow_unused=True)
    res = {k: v.detach() for k, v in outs.items()}
    res["grad_input"] = torch.zeros_like(xg) if g is None else g.detach()
    return res


def ce_case(cases, rng, prng, name, dtype, x, y, o, w=None, go=None):
    dt = DT[dtype]
    xt = torch.tensor(np.asarray(x, dtype=np.float64), dtype=dt)
    yt = torch.tensor(np.asarray(y, dtype=np.int64))
    wt = None if w is None else torch.tensor(np.asarray(w, dtype=np.float64), dtype=dt)
    _, loss = ce_extras_expr(xt, yt, o, wt)
    if go is None:
        go = upstream(loss, rng)
    go = go.to(dt)
    res = ce_eval(xt, yt, o, wt, go)
    case = {"name": name, "function": "cross_entropy_extras", "dtype": dtype,
            "inputs": {"input": enc(xt), "target": enc(yt), "weight": enc(wt)},
            "options": enc_opts(o), "grad_output": enc(go), "expected": {k: enc(v) for k, v in res.items()}}
    if dtype == "float32":
        def evaluate(inp):
            return ce_eval(inp["x"], yt, o, inp["w"], inp["go"])
        up = lambda a: None if a is None else a.to(torch.float64)
        exact, spread = f32_reference(evaluate, {"x": up(xt), "w": up(wt), "go": up(go)}, prng)
        case["exact"] = {k: enc(v) for k, v in exact.items()}
        case["spread"] = {k: enc(v) for k, v in spread.items()}
    cases.append(case)


def ce_opts(**kw):
    o = dict(reduction="mean", ignore_index=-100, label_smoothing=0.0, lse_square_scale=0.0, softcap=None)
    o.update(kw)
    return o


def enc_opts(o):
    """Options as JSON: non-finite floats as strings."""
    return {k: (enc_float(v) if isinstance(v, float) else v) for k, v in o.items()}


def gen_ce_extras():
    rng = np.random.default_rng(4101)
    prng = np.random.default_rng(4102)
    cases = []
    N, C = 6, 5
    for dtype in DT:
        x = rng.standard_normal((N, C)) * 2.5
        y = rng.integers(0, C, N)
        y_ign = y.copy()
        y_ign[[1, 4]] = -100
        w = rng.uniform(0.2, 2.0, C)
        for red in ("mean", "sum", "none"):
            for weighted in (False, True):
                for ls in (0.0, 0.1):
                    for s in (0.0, 1e-4, 0.05):
                        for cap in (None, 1.5, 30.0):
                            for ign in (False, True):
                                if ign and (weighted or ls) and cap == 30.0:
                                    continue
                                o = ce_opts(reduction=red, label_smoothing=ls, lse_square_scale=s, softcap=cap)
                                name = (f"{dtype}_{red}_w{int(weighted)}_ls{ls}_z{s}_cap{cap}_ign{int(ign)}")
                                ce_case(cases, rng, prng, name, dtype, x, y_ign if ign else y, o,
                                        w if weighted else None)
        # ---- edge cases ----
        all_ign = np.full(N, -100)
        for red in ("mean", "sum", "none"):
            ce_case(cases, rng, prng, f"{dtype}_all_ignored_{red}", dtype, x, all_ign,
                    ce_opts(reduction=red, lse_square_scale=0.01, softcap=3.0))
        # ignore_index that is a valid class
        ce_case(cases, rng, prng, f"{dtype}_ignore_index_is_class", dtype, x, y,
                ce_opts(ignore_index=int(y[0]), lse_square_scale=0.02, label_smoothing=0.2), w)
        # ties for the argmax (first index wins), with and without a softcap that saturates
        xt = x.copy()
        xt[0, :] = [1.0, 3.0, 3.0, -1.0, 0.0]
        xt[1, :] = [40.0, 80.0, 0.0, 0.0, 0.0]   # softcap 1: tanh(40) == tanh(80) == 1 in float32 → tie at 0
        yt = y.copy()
        yt[0], yt[1] = 2, 1
        for cap in (None, 1.0):
            ce_case(cases, rng, prng, f"{dtype}_argmax_ties_cap{cap}", dtype, xt, yt,
                    ce_opts(softcap=cap, lse_square_scale=1e-3))
        # non-finite logits: -inf at the target (inf loss), NaN in a row, +inf under a softcap (capped to c)
        xn = x.copy()
        xn[0, y[0]] = -math.inf
        xn[2, 3] = math.nan
        for red in ("mean", "none"):
            ce_case(cases, rng, prng, f"{dtype}_nonfinite_{red}", dtype, xn, y,
                    ce_opts(reduction=red, lse_square_scale=0.01))
        xi = x.copy()
        xi[3, 1] = math.inf
        xi[4, 0] = -math.inf
        ce_case(cases, rng, prng, f"{dtype}_inf_under_softcap", dtype, xi, y,
                ce_opts(softcap=5.0, lse_square_scale=0.01, label_smoothing=0.1))
        # large logits: z-loss dominates
        ce_case(cases, rng, prng, f"{dtype}_large_logits", dtype, x * 100.0, y,
                ce_opts(lse_square_scale=1e-4, reduction="sum"))
        # empty batch
        for red in ("mean", "sum", "none"):
            ce_case(cases, rng, prng, f"{dtype}_empty_{red}", dtype, np.zeros((0, C)), np.zeros(0, dtype=np.int64),
                    ce_opts(reduction=red, lse_square_scale=0.01))
        # one row, many classes
        xb = rng.standard_normal((3, 257)) * 4
        ce_case(cases, rng, prng, f"{dtype}_wide", dtype, xb, rng.integers(0, 257, 3),
                ce_opts(lse_square_scale=1e-2, softcap=6.0, label_smoothing=0.05))
    # ---- errors (the runner checks that infoloss rejects them too) ----
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    def err(name, o, yy=None, xx=None, w=None, message=""):
        xx = x if xx is None else xx
        yy = y if yy is None else yy
        cases.append({"name": name, "function": "cross_entropy_extras", "dtype": "float64",
                      "inputs": {"input": enc(torch.tensor(xx)), "target": enc(torch.tensor(yy)),
                                 "weight": enc(None if w is None else torch.tensor(w))},
                      "options": enc_opts(o), "error": True, "message": message})
    err("error_softcap_zero", ce_opts(softcap=0.0), message="softcap must be a finite number > 0")
    err("error_softcap_negative", ce_opts(softcap=-2.0), message="softcap must be a finite number > 0")
    err("error_z_nan", ce_opts(lse_square_scale=math.nan), message="lse_square_scale must be finite")
    err("error_label_smoothing", ce_opts(label_smoothing=1.5),
        message="label_smoothing must be between 0.0 and 1.0. Got: 1.5")
    yy = y.copy()
    yy[2] = C
    err("error_target_out_of_range", ce_opts(), yy=yy, message=f"Target {C} is out of bounds.")
    err("error_target_shape", ce_opts(), yy=y[:-1], message="Expected input batch_size to match target")
    err("error_weight_shape", ce_opts(), w=np.ones(C + 1), message="weight tensor should be defined either for all")
    return cases + ce_nonfinite_ignored_cases()


def ce_nonfinite_ignored_cases():
    """Ignored rows holding a NaN, a +inf or only -inf: torch's autograd gives them a NaN gradient row even for a
    zero upstream gradient (0·exp(NaN) in the log_softmax / logsumexp backwards), except where a softcap maps the
    infinities to ±c. Generators of their own, so the cases before them keep their values."""
    rng = np.random.default_rng(4124)
    prng = np.random.default_rng(4125)
    cases = []
    N, C = 6, 5
    for dtype in DT:
        x = rng.standard_normal((N, C)) * 2.0
        y = rng.integers(0, C, N)
        x[1, 2] = math.nan
        x[3, 4] = math.inf
        x[4, :] = -math.inf
        y[[1, 3, 4, 5]] = -100
        for red in ("mean", "sum", "none"):
            for cap in (None, 2.0):
                for s in (0.0, 0.01):
                    o = ce_opts(reduction=red, softcap=cap, lse_square_scale=s, label_smoothing=0.1 if s else 0.0)
                    ce_case(cases, rng, prng, f"{dtype}_ignored_nonfinite_{red}_cap{cap}_z{s}", dtype, x, y, o)
    return cases


# ----------------------------------------------------------------------------------------------------------------
# linear_cross_entropy
# ----------------------------------------------------------------------------------------------------------------


def lce_eval(h, W, b, y, o, cw, go):
    hg = h.detach().clone().requires_grad_(True)
    Wg = W.detach().clone().requires_grad_(True)
    bg = None if b is None else b.detach().clone().requires_grad_(True)
    logits = F.linear(hg, Wg, bg)
    outs, loss = ce_extras_expr(logits, y, o, cw)
    wrt = [hg, Wg] + ([bg] if bg is not None else [])
    grads = torch.autograd.grad(loss, wrt, go, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]
    res = {k: v.detach() for k, v in outs.items()}
    res["grad_hidden"], res["grad_weight"] = grads[0].detach(), grads[1].detach()
    if bg is not None:
        res["grad_bias"] = grads[2].detach()
    return res


def lce_case(cases, rng, prng, name, dtype, h, W, b, y, o, cw=None, go=None):
    dt = DT[dtype]
    t = lambda a: None if a is None else torch.tensor(np.asarray(a, dtype=np.float64), dtype=dt)
    ht, Wt, bt, cwt = t(h), t(W), t(b), t(cw)
    yt = torch.tensor(np.asarray(y, dtype=np.int64))
    _, loss = ce_extras_expr(F.linear(ht, Wt, bt), yt, o, cwt)
    if go is None:
        go = upstream(loss, rng)
    go = go.to(dt)
    res = lce_eval(ht, Wt, bt, yt, o, cwt, go)
    case = {"name": name, "function": "linear_cross_entropy", "dtype": dtype,
            "inputs": {"hidden": enc(ht), "weight": enc(Wt), "bias": enc(bt), "targets": enc(yt),
                       "class_weight": enc(cwt)},
            "options": enc_opts(o), "chunk_sizes": CHUNKS, "grad_output": enc(go),
            "expected": {k: enc(v) for k, v in res.items()}}
    # torch 2.15's own F.linear_cross_entropy (reference and chunked paths) agrees where it applies
    if o["lse_square_scale"] == 0.0 and o["softcap"] is None and ht.shape[0] > 0:
        # torch 2.15's chunked path (options given) sums masked row losses, so an ignored row of NaN logits makes
        # its loss NaN (0·NaN), where its default path and F.cross_entropy(F.linear(...)) give the finite loss we
        # follow; for such inputs only the default path is compared.
        chunked = (torch.nn.LinearCrossEntropyOptions(),) if bool(torch.isfinite(ht).all()) else ()
        for opt in (None,) + chunked:
            hg = ht.clone().requires_grad_(True)
            Wg = Wt.clone().requires_grad_(True)
            l2 = F.linear_cross_entropy(hg, Wg, yt, linear_bias=bt, weight=cwt, reduction=o["reduction"],
                                        ignore_index=o["ignore_index"], label_smoothing=o["label_smoothing"],
                                        options=opt)
            g2 = torch.autograd.grad(l2, [hg, Wg], go)
            tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(l2, res["loss"], equal_nan=True, **tol)
            torch.testing.assert_close(g2[0], res["grad_hidden"], equal_nan=True, **tol)
            torch.testing.assert_close(g2[1], res["grad_weight"], equal_nan=True, **tol)
            if opt is not None:
                case["torch_linear_cross_entropy"] = {"loss": enc(l2.detach()), "grad_hidden": enc(g2[0]),
                                                      "grad_weight": enc(g2[1])}
    if dtype == "float32":
        def evaluate(inp):
            return lce_eval(inp["h"], inp["W"], inp["b"], yt, o, inp["cw"], inp["go"])
        up = lambda a: None if a is None else a.to(torch.float64)
        exact, spread = f32_reference(evaluate, {"h": up(ht), "W": up(Wt), "b": up(bt), "cw": up(cwt),
                                                 "go": up(go)}, prng)
        case["exact"] = {k: enc(v) for k, v in exact.items()}
        case["spread"] = {k: enc(v) for k, v in spread.items()}
    cases.append(case)


def gen_linear_ce(cases):
    rng = np.random.default_rng(4201)
    prng = np.random.default_rng(4202)
    N, H, V = 7, 5, 11
    for dtype in DT:
        h = rng.standard_normal((N, H))
        W = rng.standard_normal((V, H)) * 0.8
        b = rng.standard_normal(V) * 0.5
        y = rng.integers(0, V, N)
        y[[2, 5]] = -100
        cw = rng.uniform(0.2, 2.0, V)
        for red in ("mean", "sum", "none"):
            for bias in (False, True):
                for weighted in (False, True):
                    for ls in (0.0, 0.1):
                        for s in (0.0, 0.01):
                            for cap in (None, 2.0):
                                o = ce_opts(reduction=red, label_smoothing=ls, lse_square_scale=s, softcap=cap)
                                name = f"lce_{dtype}_{red}_b{int(bias)}_w{int(weighted)}_ls{ls}_z{s}_cap{cap}"
                                lce_case(cases, rng, prng, name, dtype, h, W, b if bias else None, y, o,
                                         cw if weighted else None)
        # every row kept, token accuracy / lse meaningful, larger logits
        y_all = rng.integers(0, V, N)
        lce_case(cases, rng, prng, f"lce_{dtype}_all_kept_scaled", dtype, h * 3, W, b, y_all,
                 ce_opts(lse_square_scale=1e-3, softcap=4.0))
        # all ignored
        for red in ("mean", "sum"):
            lce_case(cases, rng, prng, f"lce_{dtype}_all_ignored_{red}", dtype, h, W, b, np.full(N, -100),
                     ce_opts(reduction=red, lse_square_scale=0.01))
        # H = 0: logits are the bias
        lce_case(cases, rng, prng, f"lce_{dtype}_h0", dtype, np.zeros((N, 0)), np.zeros((V, 0)), b, y_all,
                 ce_opts(label_smoothing=0.1))
        # N = 0
        lce_case(cases, rng, prng, f"lce_{dtype}_n0_sum", dtype, np.zeros((0, H)), W, b,
                 np.zeros(0, dtype=np.int64), ce_opts(reduction="sum"))
        # a wider vocabulary, odd sizes
        h2 = rng.standard_normal((9, 17))
        W2 = rng.standard_normal((131, 17)) * 0.3
        lce_case(cases, rng, prng, f"lce_{dtype}_wide", dtype, h2, W2, rng.standard_normal(131) * 0.1,
                 rng.integers(0, 131, 9), ce_opts(lse_square_scale=1e-4, label_smoothing=0.05, softcap=3.0))
    # errors
    rng2 = np.random.default_rng(4203)
    h = rng2.standard_normal((N, H))
    W = rng2.standard_normal((V, H))
    y = rng2.integers(0, V, N)
    def err(name, hh, WW, bb, yy, o, message, chunk=None):
        c = {"name": name, "function": "linear_cross_entropy", "dtype": "float64",
             "inputs": {"hidden": enc(torch.tensor(hh)), "weight": enc(torch.tensor(WW)),
                        "bias": enc(None if bb is None else torch.tensor(bb)), "targets": enc(torch.tensor(yy)),
                        "class_weight": None},
             "options": enc_opts(o), "error": True, "message": message}
        if chunk is not None:
            c["chunk_sizes"] = [chunk]
        cases.append(c)
    err("lce_error_hidden_size", h, W[:, :4], None, y, ce_opts(), "mat1 and mat2 shapes cannot be multiplied")
    err("lce_error_bias_size", h, W, np.zeros(V - 1), y, ce_opts(), "bias size mismatch")
    err("lce_error_targets_len", h, W, None, y[:-1], ce_opts(), "Expected input batch_size to match target")
    yy = y.copy()
    yy[3] = V
    err("lce_error_target_range", h, W, None, yy, ce_opts(), f"Target {V} is out of bounds.")
    err("lce_error_chunk_zero", h, W, None, y, ce_opts(), "chunk_size must be at least 1", chunk=0)
    err("lce_error_softcap", h, W, None, y, ce_opts(softcap=-1.0), "softcap must be a finite number > 0")


# ----------------------------------------------------------------------------------------------------------------
# linear_distill
# ----------------------------------------------------------------------------------------------------------------


def divergence_rows(lp, lq, div, beta):
    """Per-row divergence between student log-probs lp and teacher log-probs lq."""
    if div == "forward_kl" or (div == "jsd" and beta == 0.0):
        return F.kl_div(lp, lq, reduction="none", log_target=True).sum(1)
    if div == "reverse_kl" or (div == "jsd" and beta == 1.0):
        return F.kl_div(lq, lp, reduction="none", log_target=True).sum(1)
    if div == "jsd":
        bt = torch.tensor(beta, dtype=lp.dtype)
        lm = torch.logsumexp(torch.stack([lq + torch.log(bt), lp + torch.log1p(-bt)]), dim=0)
        return (bt * F.kl_div(lm, lq, reduction="none", log_target=True).sum(1)
                + (1 - bt) * F.kl_div(lm, lp, reduction="none", log_target=True).sum(1))
    if div == "tvd":
        return 0.5 * (lp.exp() - lq.exp()).abs().sum(1)
    raise ValueError(div)


def topk_buckets(s, t, T, k, add_tail):
    """Student and teacher log-probabilities over the teacher's top-k buckets (+ the tail bucket), as
    infoloss::distill_topk defines them with logprobs = log_softmax(t / T) gathered at t.topk(k)."""
    idx = t.topk(k, dim=1).indices
    return sparse_buckets(s, T, idx, F.log_softmax(t / T, 1).gather(1, idx), add_tail)


def distill_expr(s, t, labels, o, topk=None):
    T, alpha, red, ii = o["temperature"], o["alpha"], o["reduction"], o["ignore_index"]
    cT = T * T if o["t2_scaling"] else 1.0
    rows, V = s.shape
    keep = (labels != ii) if labels is not None else torch.ones(rows, dtype=torch.bool)
    n = float(keep.sum()) if o["normalizer"] is None else o["normalizer"]
    terms = []
    if alpha > 0:
        if topk is None:
            lp, lq = F.log_softmax(s / T, 1), F.log_softmax(t / T, 1)
        else:
            lp, lq = topk_buckets(s, t, T, topk["k"], topk["add_tail"])
        d = divergence_rows(lp, lq, o["divergence"], o["beta"])
        d = torch.where(keep, d, torch.zeros_like(d))
        soft = {"none": d, "sum": d.sum(), "batchmean": d.sum() / n, "mean": d.sum() / (n * V)}[red]
        terms.append(alpha * cT * soft)
    if alpha < 1:
        ce = F.cross_entropy(s, labels, ignore_index=ii, reduction="none")
        hard = {"none": ce, "sum": ce.sum(), "batchmean": ce.sum() / n, "mean": ce.sum() / n}[red]
        terms.append((1 - alpha) * hard)
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def ld_eval(xs, ws, xt, wt, labels, o):
    xg = xs.detach().clone().requires_grad_(True)
    wg = ws.detach().clone().requires_grad_(True)
    loss = distill_expr(F.linear(xg, wg), F.linear(xt, wt), labels, o)
    go = torch.ones_like(loss)
    gx, gw = torch.autograd.grad(loss, [xg, wg], go)
    return {"loss": loss.detach(), "grad_hidden": gx.detach(), "grad_weight": gw.detach()}


def ld_opts(**kw):
    o = dict(temperature=1.0, t2_scaling=True, divergence="forward_kl", beta=0.0, alpha=1.0, ignore_index=-100,
             reduction="batchmean", normalizer=None)
    o.update(kw)
    return o


def ld_case(cases, prng, name, dtype, xs, ws, xt, wt, labels, o):
    dt = DT[dtype]
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), dtype=dt)
    xs_, ws_, xt_, wt_ = t(xs), t(ws), t(xt), t(wt)
    y = None if labels is None else torch.tensor(np.asarray(labels, dtype=np.int64))
    res = ld_eval(xs_, ws_, xt_, wt_, y, o)
    case = {"name": name, "function": "linear_distill", "dtype": dtype,
            "inputs": {"student_hidden": enc(xs_), "student_weight": enc(ws_), "teacher_hidden": enc(xt_),
                       "teacher_weight": enc(wt_), "labels": enc(y)},
            "options": enc_opts(o), "chunk_sizes": CHUNKS, "grad_output": None,
            "expected": {k: enc(v) for k, v in res.items()}}
    if dtype == "float32":
        def evaluate(inp):
            return ld_eval(inp["xs"], inp["ws"], inp["xt"], inp["wt"], y, o)
        up = lambda a: a.to(torch.float64)
        exact, spread = f32_reference(evaluate, {"xs": up(xs_), "ws": up(ws_), "xt": up(xt_), "wt": up(wt_)}, prng)
        case["exact"] = {k: enc(v) for k, v in exact.items()}
        case["spread"] = {k: enc(v) for k, v in spread.items()}
    cases.append(case)


def gen_linear_distill(cases):
    rng = np.random.default_rng(4301)
    prng = np.random.default_rng(4302)
    N, Hs, Ht, V = 7, 5, 4, 11
    for dtype in DT:
        xs = rng.standard_normal((N, Hs))
        ws = rng.standard_normal((V, Hs)) * 0.8
        xt = rng.standard_normal((N, Ht))
        wt = rng.standard_normal((V, Ht)) * 0.8
        y = rng.integers(0, V, N)
        y[[1, 4]] = -100
        for div, beta in (("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.5), ("jsd", 0.2), ("tvd", 0.0)):
            for red in ("batchmean", "mean", "sum", "none"):
                for T in (1.0, 2.0):
                    for alpha, labels in ((1.0, None), (1.0, y), (0.5, y)):
                        o = ld_opts(divergence=div, beta=beta, reduction=red, temperature=T, alpha=alpha)
                        name = (f"ld_{dtype}_{div}{beta if div == 'jsd' else ''}_{red}_T{T}_a{alpha}"
                                f"_labels{int(labels is not None)}")
                        ld_case(cases, prng, name, dtype, xs, ws, xt, wt, labels, o)
        ld_case(cases, prng, f"ld_{dtype}_normalizer", dtype, xs, ws, xt, wt, y,
                ld_opts(normalizer=32.0, alpha=0.7, temperature=1.5))
        ld_case(cases, prng, f"ld_{dtype}_no_t2", dtype, xs, ws, xt, wt, None,
                ld_opts(t2_scaling=False, temperature=3.0, reduction="sum"))
        ld_case(cases, prng, f"ld_{dtype}_all_ignored", dtype, xs, ws, xt, wt, np.full(N, -100),
                ld_opts(alpha=0.5))
    rng2 = np.random.default_rng(4303)
    xs = rng2.standard_normal((N, Hs))
    ws = rng2.standard_normal((V, Hs))
    xt = rng2.standard_normal((N, Ht))
    wt = rng2.standard_normal((V, Ht))
    def err(name, a, b, c, d, labels, o, message, chunk=None):
        e = {"name": name, "function": "linear_distill", "dtype": "float64",
             "inputs": {"student_hidden": enc(torch.tensor(a)), "student_weight": enc(torch.tensor(b)),
                        "teacher_hidden": enc(torch.tensor(c)), "teacher_weight": enc(torch.tensor(d)),
                        "labels": None if labels is None else enc(torch.tensor(labels))},
             "options": enc_opts(o), "error": True, "message": message}
        if chunk is not None:
            e["chunk_sizes"] = [chunk]
        cases.append(e)
    err("ld_error_student_h", xs, ws[:, :3], xt, wt, None, ld_opts(), "mat1 and mat2 shapes cannot be multiplied")
    err("ld_error_vocab", xs, ws, xt, wt[:-1], None, ld_opts(), "student and teacher logits differ in shape")
    err("ld_error_rows", xs, ws, xt[:-1], wt, None, ld_opts(), "student and teacher logits differ in shape")
    err("ld_error_temperature", xs, ws, xt, wt, None, ld_opts(temperature=0.0), "temperature must be > 0")
    err("ld_error_alpha_without_labels", xs, ws, xt, wt, None, ld_opts(alpha=0.5), "alpha < 1 needs labels")
    yy = np.zeros(N, dtype=np.int64)
    yy[2] = V
    err("ld_error_label_range", xs, ws, xt, wt, yy, ld_opts(alpha=0.5), f"Target {V} is out of bounds.")
    err("ld_error_chunk_zero", xs, ws, xt, wt, None, ld_opts(), "chunk_size must be at least 1", chunk=0)


def ldx_eval(xs, ws, bs, xt, wt, bt, labels, o, topk, go):
    """linear_distill with biases, a top-k teacher and the upstream gradient ``go``."""
    xg = xs.detach().clone().requires_grad_(True)
    wg = ws.detach().clone().requires_grad_(True)
    bg = None if bs is None else bs.detach().clone().requires_grad_(True)
    loss = distill_expr(F.linear(xg, wg, bg), F.linear(xt, wt, bt), labels, o, topk)
    params = [xg, wg] + ([] if bg is None else [bg])
    grads = torch.autograd.grad(loss, params, go)
    res = {"loss": loss.detach(), "grad_hidden": grads[0].detach(), "grad_weight": grads[1].detach()}
    if bg is not None:
        res["grad_bias"] = grads[2].detach()
    return res


def ldx_case(cases, rng, prng, name, dtype, arrays, labels, o, topk, chunks=CHUNKS):
    """A linear_distill case with biases (``arrays`` = xs, ws, bs, xt, wt, bt; a bias may be None), an optional
    top-k teacher ``{"k", "add_tail"}`` and a non-unit upstream gradient (a scalar, or one per row for 'none')."""
    dt = DT[dtype]
    t = lambda a: None if a is None else torch.tensor(np.asarray(a, dtype=np.float64), dtype=dt)
    xs_, ws_, bs_, xt_, wt_, bt_ = (t(a) for a in arrays)
    y = None if labels is None else torch.tensor(np.asarray(labels, dtype=np.int64))
    N = xs_.shape[0]
    if topk is not None and topk["k"] < ws_.shape[0]:
        # the top-k must not depend on rounding: a clear gap between the k-th and the (k+1)-th teacher logit
        tl = torch.sort(F.linear(xt_.double(), wt_.double(), None if bt_ is None else bt_.double()), 1,
                        descending=True).values
        gap = (tl[:, topk["k"] - 1] - tl[:, topk["k"]]).min().item()
        assert gap > 1e-3, (name, gap)
    if o["reduction"] == "none":
        go = torch.tensor(rng.uniform(-2, 2, size=N), dtype=dt)
    else:
        go = torch.tensor(float(rng.choice([-1.5, 0.25, 3.0])), dtype=dt)
    res = ldx_eval(xs_, ws_, bs_, xt_, wt_, bt_, y, o, topk, go)
    case = {"name": name, "function": "linear_distill", "dtype": dtype,
            "inputs": {"student_hidden": enc(xs_), "student_weight": enc(ws_), "teacher_hidden": enc(xt_),
                       "teacher_weight": enc(wt_), "labels": enc(y), "student_bias": enc(bs_),
                       "teacher_bias": enc(bt_)},
            "options": enc_opts(o), "teacher_topk": topk, "chunk_sizes": chunks, "grad_output": enc(go),
            "expected": {k: enc(v) for k, v in res.items()}}
    if dtype == "float32":
        def evaluate(inp):
            return ldx_eval(inp["xs"], inp["ws"], inp["bs"], inp["xt"], inp["wt"], inp["bt"], y, o, topk,
                            inp["go"])
        up = lambda a: None if a is None else a.to(torch.float64)
        exact, spread = f32_reference(evaluate, {"xs": up(xs_), "ws": up(ws_), "bs": up(bs_), "xt": up(xt_),
                                                 "wt": up(wt_), "bt": up(bt_), "go": up(go)}, prng)
        case["exact"] = {k: enc(v) for k, v in exact.items()}
        case["spread"] = {k: enc(v) for k, v in spread.items()}
    cases.append(case)


def gen_linear_distill_extras(cases):
    """Biases, sparse top-k teachers and non-unit upstream gradients (appended after the other cases)."""
    rng = np.random.default_rng(4311)
    prng = np.random.default_rng(4312)
    N, Hs, Ht, V = 7, 5, 4, 11
    divs = (("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.5), ("tvd", 0.0))
    for dtype in DT:
        while True:
            xs = rng.standard_normal((N, Hs))
            ws = rng.standard_normal((V, Hs)) * 0.8
            bs = rng.standard_normal(V) * 0.5
            xt = rng.standard_normal((N, Ht))
            wt = rng.standard_normal((V, Ht)) * 0.8
            bt = rng.standard_normal(V) * 0.5
            tl = np.sort(xt @ wt.T + bt, axis=1)
            if np.diff(tl, axis=1).min() > 1e-3:  # no near-ties in the teacher's logits
                break
        y = rng.integers(0, V, N)
        y[[2, 5]] = -100
        # dense teacher with biases
        for div, beta in divs:
            for red in ("batchmean", "mean", "sum", "none"):
                for alpha, labels in ((1.0, None), (0.5, y)):
                    o = ld_opts(divergence=div, beta=beta, reduction=red, temperature=2.0, alpha=alpha)
                    name = (f"ldx_{dtype}_bias_{div}{beta if div == 'jsd' else ''}_{red}_a{alpha}"
                            f"_labels{int(labels is not None)}")
                    ldx_case(cases, rng, prng, name, dtype, (xs, ws, bs, xt, wt, bt), labels, o, None)
        # a student bias only, a teacher bias only
        ldx_case(cases, rng, prng, f"ldx_{dtype}_student_bias_only", dtype, (xs, ws, bs, xt, wt, None), y,
                 ld_opts(alpha=0.7, temperature=1.5), None)
        ldx_case(cases, rng, prng, f"ldx_{dtype}_teacher_bias_only", dtype, (xs, ws, None, xt, wt, bt), None,
                 ld_opts(reduction="none"), None)
        # sparse top-k teacher
        for k, tail in ((1, True), (3, False), (3, True), (7, True), (V, False)):
            for div, beta in divs:
                for red in ("batchmean", "none"):
                    o = ld_opts(divergence=div, beta=beta, reduction=red, temperature=2.0)
                    name = f"ldx_{dtype}_topk{k}_tail{int(tail)}_{div}{beta if div == 'jsd' else ''}_{red}"
                    ldx_case(cases, rng, prng, name, dtype, (xs, ws, bs, xt, wt, bt), None, o,
                             {"k": k, "add_tail": tail})
            for red in ("mean", "sum"):
                o = ld_opts(reduction=red, alpha=0.5, t2_scaling=False, temperature=0.7)
                ldx_case(cases, rng, prng, f"ldx_{dtype}_topk{k}_tail{int(tail)}_mix_{red}", dtype,
                         (xs, ws, bs, xt, wt, bt), y, o, {"k": k, "add_tail": tail})
        ldx_case(cases, rng, prng, f"ldx_{dtype}_topk3_normalizer", dtype, (xs, ws, bs, xt, wt, bt), y,
                 ld_opts(normalizer=20.0, alpha=0.6), {"k": 3, "add_tail": True})
        ldx_case(cases, rng, prng, f"ldx_{dtype}_topk3_all_ignored", dtype, (xs, ws, bs, xt, wt, bt),
                 np.full(N, -100), ld_opts(alpha=0.5), {"k": 3, "add_tail": True})
    rng2 = np.random.default_rng(4313)
    xs = rng2.standard_normal((N, Hs))
    ws = rng2.standard_normal((V, Hs))
    xt = rng2.standard_normal((N, Ht))
    wt = rng2.standard_normal((V, Ht))

    def err(name, bs, bt, o, topk, message, go=None):
        e = {"name": name, "function": "linear_distill", "dtype": "float64",
             "inputs": {"student_hidden": enc(torch.tensor(xs)), "student_weight": enc(torch.tensor(ws)),
                        "teacher_hidden": enc(torch.tensor(xt)), "teacher_weight": enc(torch.tensor(wt)),
                        "labels": None, "student_bias": None if bs is None else enc(torch.tensor(bs)),
                        "teacher_bias": None if bt is None else enc(torch.tensor(bt))},
             "options": enc_opts(o), "teacher_topk": topk, "grad_output": go, "error": True, "message": message}
        cases.append(e)
    err("ldx_error_student_bias_size", np.zeros(V - 1), None, ld_opts(), None, "bias size mismatch")
    err("ldx_error_teacher_bias_size", None, np.zeros(V + 1), ld_opts(), None, "bias size mismatch")
    err("ldx_error_topk_k", None, None, ld_opts(), {"k": V + 1, "add_tail": False},
        "selected index k out of range")
    err("ldx_error_grad_output_rows", None, None, ld_opts(reduction="none"), None,
        "grad_output must have one entry per row", enc(torch.ones(N - 1, dtype=torch.float64)))
    err("ldx_error_grad_output_reduced", None, None, ld_opts(), None, "grad_output of a scalar loss is a scalar",
        enc(torch.ones(N, dtype=torch.float64)))


def gen_linear_issue24(cases):
    """A NaN hidden row that is ignored (torch: NaN gradient row, and the weight gradient NaN in every entry, as
    F.linear_cross_entropy gives), and a top-k teacher with k = V and the tail bucket (the tail is empty: the
    dense loss). Generators of their own, appended after the other cases."""
    rng = np.random.default_rng(4241)
    prng = np.random.default_rng(4242)
    N, H, V = 7, 5, 11
    for dtype in DT:
        h = rng.standard_normal((N, H))
        W = rng.standard_normal((V, H)) * 0.8
        b = rng.standard_normal(V) * 0.5
        y = rng.integers(0, V, N)
        h[2, 1] = math.nan
        y[[2, 5]] = -100
        for red in ("mean", "sum", "none"):
            for s, cap in ((0.0, None), (0.01, 2.0)):
                o = ce_opts(reduction=red, lse_square_scale=s, softcap=cap)
                lce_case(cases, rng, prng, f"lce_{dtype}_nan_ignored_row_{red}_z{s}_cap{cap}", dtype, h, W, b, y, o)
        Hs, Ht = 5, 4
        xs = rng.standard_normal((N, Hs))
        ws = rng.standard_normal((V, Hs)) * 0.8
        bs = rng.standard_normal(V) * 0.5
        xt = rng.standard_normal((N, Ht))
        wt = rng.standard_normal((V, Ht)) * 0.8
        bt = rng.standard_normal(V) * 0.5
        yl = rng.integers(0, V, N)
        for div, beta in (("forward_kl", 0.0), ("reverse_kl", 0.0), ("jsd", 0.5), ("tvd", 0.0)):
            o = ld_opts(divergence=div, beta=beta, temperature=2.0, alpha=0.7)
            ldx_case(cases, rng, prng, f"ldx_{dtype}_topkV_tail1_{div}{beta if div == 'jsd' else ''}", dtype,
                     (xs, ws, bs, xt, wt, bt), yl, o, {"k": V, "add_tail": True})


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------


def to_schema(case):
    """The common layout (scripts/fixture_schema.py): the loss is ``output``, the class weight of
    ``cross_entropy_extras`` an option as in ``cross_entropy`` (and ``teacher_topk`` an option of
    ``linear_distill``), the float32 ``exact``/``spread`` pairs become
    ``f32_reference`` rows, and torch's own ``F.linear_cross_entropy`` result (compared in float64 only; the
    generator asserts the float32 agreement) becomes an ``also_expected`` entry."""
    c = dict(case)
    ren = lambda d: {("output" if k == "loss" else k): v for k, v in d.items()}
    if c["function"] == "cross_entropy_extras":
        inputs = dict(c["inputs"])
        c["options"] = dict(c["options"], weight=inputs.pop("weight"))
        c["inputs"] = inputs
    if "teacher_topk" in c:
        c["options"] = dict(c["options"], teacher_topk=c.pop("teacher_topk"))
    if "expected" in c:
        c["expected"] = ren(c["expected"])
    exact, spread = c.pop("exact", None), c.pop("spread", None)
    if exact is not None:
        rows = fixture_schema.f32_reference_rows(c["expected"], ren(exact), ren(spread))
        if rows:
            c["f32_reference"] = rows
    torch_lce = c.pop("torch_linear_cross_entropy", None)
    if torch_lce is not None and c["dtype"] == "float64":
        c["also_expected"] = [dict(source="torch F.linear_cross_entropy", **fixture_schema.TOLERANCES["float64"],
                                   expected=ren(torch_lce))]
    return c


def document(family, cases):
    head = fixture_schema.header(family, "scripts/gen_fixtures_linear.py", versions(), len(cases))
    return fixture_schema.dumps(head, [to_schema(c) for c in cases])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the files on disk differ from a fresh run")
    args = ap.parse_args()
    lin = []
    gen_linear_ce(lin)
    gen_linear_distill(lin)
    gen_linear_distill_extras(lin)
    gen_linear_issue24(lin)
    docs = {"ce_extras.json": document("ce_extras", gen_ce_extras()), "linear.json": document("linear", lin)}
    bad = 0
    for name, text in docs.items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} differs from a fresh run", file=sys.stderr)
                bad += 1
        else:
            path.write_text(text)
            print(f"wrote {path} ({text.count(chr(10)) - 2} cases)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
