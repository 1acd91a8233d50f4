#!/usr/bin/env python3
"""Generate the PyTorch / SciPy reference fixtures in ``testdata/``.

Run from anywhere with torch 2.15, SciPy 1.17 and NumPy 2.4 installed::

    python scripts/gen_fixtures.py            # writes <repo>/testdata/*.json
    python scripts/gen_fixtures.py --check    # regenerates in memory, fails if a file differs

Everything is deterministic: every family has its own fixed seed (``SEEDS`` below) and torch runs single-threaded.
The files are in the common fixture schema (``fixture_schema.py``), documented in ``testdata/README.md`` (which this
script writes); the conformance runners (``crates/infoloss-conformance`` and every front end's adapter) read them.

Values and gradients of the losses come from torch (forward, then ``torch.autograd.grad`` with the recorded upstream
gradient). The information measures take their values from SciPy and their gradients from torch autograd of the same
formulas in float64 (see ``info_*`` below).
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
import scipy
import scipy.special as sps
import scipy.stats as sst
import torch
import torch.nn.functional as F
from scipy.spatial import distance as ssd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_schema  # noqa: E402  (the common layout of every file in testdata/)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata"

DTYPES = ("float32", "float64")
TDT = {"float32": torch.float32, "float64": torch.float64}
NPDT = {"float32": np.float32, "float64": np.float64}

INF = math.inf
NAN = math.nan

# One seed per file, so adding cases to one family never changes another.
SEEDS = {
    "softmax": 1001,
    "nll_loss": 1002,
    "cross_entropy": 1003,
    "kl_div": 1004,
    "binary_cross_entropy": 1005,
    "binary_cross_entropy_with_logits": 1006,
    "info": 1007,
}

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------------------------------------------
# JSON encoding
# --------------------------------------------------------------------------------------------------------------


def enc_float(v) -> float | str:
    """A float as JSON: the exact value (float32 → the exact double), non-finite as strings."""
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f


def enc_array(a, kind: str = "float") -> dict:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if kind == "int64":
        return {"shape": list(a.shape), "dtype": "int64", "data": [int(v) for v in a.reshape(-1)]}
    return {"shape": list(a.shape), "data": [enc_float(v) for v in a.reshape(-1)]}


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------------------------
# Case builder
# --------------------------------------------------------------------------------------------------------------

LOSS_FNS = {
    "nll_loss",
    "cross_entropy",
    "cross_entropy_probs",
    "kl_div",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
}

# Which arguments get a gradient (grad_input = first, grad_target = second).
GRAD_TARGET = {
    "cross_entropy_probs",
    "kl_div",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "rel_entr",
    "entropy",  # only when qk is given
    "jensenshannon",
}
NO_GRAD = {"self_information", "shannon_cross_entropy"}  # the Rust API has no backward for these


def torch_call(fn: str, x, t, o: dict):
    """The torch reference of one function. ``o`` holds torch tensors for weight/pos_weight."""
    if fn == "logsumexp":
        return torch.logsumexp(x, o["dim"])
    if fn == "log_softmax":
        return F.log_softmax(x, o["dim"])
    if fn == "softmax":
        return F.softmax(x, o["dim"])
    if fn == "nll_loss":
        return F.nll_loss(x, t, weight=o["weight"], ignore_index=o["ignore_index"], reduction=o["reduction"])
    if fn in ("cross_entropy", "cross_entropy_probs"):
        return F.cross_entropy(
            x,
            t,
            weight=o["weight"],
            ignore_index=o["ignore_index"],
            reduction=o["reduction"],
            label_smoothing=o["label_smoothing"],
        )
    if fn == "kl_div":
        return F.kl_div(x, t, reduction=o["reduction"], log_target=o["log_target"])
    if fn == "binary_cross_entropy":
        return F.binary_cross_entropy(x, t, weight=o["weight"], reduction=o["reduction"])
    if fn == "binary_cross_entropy_with_logits":
        return F.binary_cross_entropy_with_logits(
            x, t, weight=o["weight"], reduction=o["reduction"], pos_weight=o["pos_weight"]
        )
    raise ValueError(fn)


def is_reduced(fn: str, opts: dict) -> bool:
    return fn in LOSS_FNS and opts.get("reduction") != "none"


def torch_eval(fn: str, xt, tt, topts: dict, make_go):
    """Forward and autograd of one torch function. Returns (output, [grad_input, grad_target?], grad_output)."""
    want_target_grad = fn in GRAD_TARGET and tt is not None and tt.dtype != torch.int64
    xg = xt.clone().requires_grad_(True)
    tg = tt.clone().requires_grad_(True) if want_target_grad else tt
    out = torch_call(fn, xg, tg, topts)
    go = make_go(out)
    wrt = [xg] + ([tg] if want_target_grad else [])
    grads = torch.autograd.grad(out, wrt, go, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
    return out.detach(), [g.detach() for g in grads], go


F32_TOL = (1e-6, 1e-7)  # (rtol, atol)
N_PERTURB = 6  # re-evaluations with every float32 input moved by at most one float32 ulp


def f32_ulp_perturb(t: torch.Tensor, rng, lo=None, hi=None) -> torch.Tensor:
    """A float64 tensor holding float32 values, each finite one moved by -1, 0 or +1 float32 ulp (random)."""
    a = t.detach().to(torch.float64).numpy().astype(np.float32)
    u = rng.integers(-1, 2, a.shape)
    up = np.nextafter(a, np.float32(np.inf))
    dn = np.nextafter(a, np.float32(-np.inf))
    b = np.where(u > 0, up, np.where(u < 0, dn, a))
    # 0, ±1 and subnormals stay put: 0 and 1 are special points of most of these functions (BCE x ∈ {0, 1},
    # hard targets, kl_div t = 0, zero weights), and one ulp of a subnormal is a large relative change
    keep = ~np.isfinite(a) | (np.abs(a) < np.finfo(np.float32).tiny) | (np.abs(a) == 1.0)
    b = np.where(keep, a, b)
    if lo is not None:
        b = np.clip(b, lo, hi)
    return torch.tensor(b.astype(np.float64))


def f32_reference(evaluate, inputs: dict, actual32: list, rng, bounds: dict | None = None, n_variants: int = 1) -> dict:
    """The float32 elements whose value is rounding-limited: their exact value and the float32 rounding noise.

    ``evaluate(inputs, dtype, variant=0) -> [arrays]`` computes the case in ``torch.float64`` or
    ``torch.float32``; variants ``1..n_variants-1`` compute the same values another way in float32 (softmax
    over a dimension moved last, which torch runs through another kernel; SciPy's own float32 arithmetic);
    ``inputs`` maps names to float64 tensors holding the case's float32 values (non-float objects pass
    through); ``actual32`` are the expected float32 arrays written to the fixture.

    Per element, with ``exact`` the float64 evaluation at the case's inputs, over ``N_PERTURB`` trials in
    which every float input moves by at most one float32 ulp (0, ±1 and subnormals stay put):

    - ``cond`` = the largest change of the float64 value: the element's sensitivity to float32 rounding of its
      operands (an implementation whose elementary functions are within an ulp — but not the same ulp as
      torch's — lands anywhere in that range);
    - ``alg`` = the largest error of a float32 evaluation (every variant, at the case's inputs and at the moved
      ones) against the float64 value at the same inputs, and ``|actual32 − exact|``: the float32 formula's own
      rounding noise, large where the formula cancels catastrophically (e.g. ``g − Σg·s`` in the softmax
      backward).

    The element is listed as ``[flat index, exact, 2·max(cond, alg)]`` when that slack exceeds a tenth of the
    float32 tolerance, unless ``cond > 1e-3·|exact| + 1e-5`` (a discontinuity — ties between huge logits, a
    clamp — not a rounding limit) or ``alg > 0.25·|exact| + 1e-6`` (float32 meaningless there); unlisted
    elements must match ``actual32`` within the plain tolerance. The runner accepts a listed element also when
    ``|got − exact| ≤ atol + rtol·|exact| + slack``.
    """
    bounds = bounds or {}
    flat = lambda arrs: [a.detach().to(torch.float64).reshape(-1).numpy() for a in arrs]

    def widen(acc, d):
        ok = np.isfinite(d)
        acc[ok] = np.maximum(acc[ok], d[ok])

    exact = flat(evaluate(inputs, torch.float64))
    cond = [np.zeros_like(e) for e in exact]
    alg = [np.abs(a.detach().to(torch.float64).reshape(-1).numpy() - e) for a, e in zip(actual32, exact)]
    for al in alg:
        al[~np.isfinite(al)] = 0.0
    for variant in range(n_variants):
        for al, e, r in zip(alg, exact, flat(evaluate(inputs, torch.float32, variant))):
            widen(al, np.abs(r - e))
    for _ in range(N_PERTURB):
        pert = {}
        for k, v in inputs.items():
            if isinstance(v, torch.Tensor) and v.dtype == torch.float64:
                lo, hi = bounds.get(k, (None, None))
                pert[k] = f32_ulp_perturb(v, rng, lo, hi)
            else:
                pert[k] = v
        try:
            r64 = flat(evaluate(pert, torch.float64))
            r32s = [flat(evaluate(pert, torch.float32, v)) for v in range(n_variants)]
        except Exception:
            continue
        for j, (cd, al, e, a) in enumerate(zip(cond, alg, exact, r64)):
            widen(cd, np.abs(a - e))
            for r32 in r32s:
                widen(al, np.abs(r32[j] - a))
    rtol, atol = F32_TOL
    out = {}
    for key, a32, e, cd, al in zip(("output", "grad_input", "grad_target"), actual32, exact, cond, alg):
        v32 = a32.detach().to(torch.float64).reshape(-1).numpy()
        rows = []
        for i, (u, v, c, g) in enumerate(zip(v32, e, cd, al)):
            if not (math.isfinite(u) and math.isfinite(v)):
                continue  # non-finite results are float32 semantics (overflow, NaN): they must match exactly
            slack = 2 * max(c, g)
            if slack > 0.1 * (atol + rtol * abs(v)) and c <= 1e-3 * abs(v) + 1e-5 and g <= 0.25 * abs(v) + 1e-6:
                rows.append([i, enc_float(v), enc_float(slack)])
        if rows:
            out[key] = rows
    return out


class Family:
    """Collects the cases of one fixture file."""

    def __init__(self, name: str):
        self.name = name
        self.rng = np.random.default_rng(SEEDS[name])
        self.prng = np.random.default_rng(SEEDS[name] + 1_000_000)  # float32 perturbation trials only
        self.cases: list[dict] = []
        self.names: set[str] = set()
        self.n_reduced = 0

    # ---- naming -------------------------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        assert name not in self.names, f"duplicate case name {name}"
        self.names.add(name)
        return name

    # ---- upstream gradient --------------------------------------------------------------------------------
    def grad_output(self, out: torch.Tensor, reduced: bool) -> torch.Tensor:
        if reduced:
            # alternate between loss.backward()'s 1.0 and a random scalar
            self.n_reduced += 1
            g = 1.0 if self.n_reduced % 2 == 1 else float(self.rng.uniform(-2.0, 2.0))
            return torch.tensor(g, dtype=out.dtype)
        return torch.tensor(self.rng.uniform(-2.0, 2.0, size=tuple(out.shape)), dtype=out.dtype)

    # ---- torch-backed cases -------------------------------------------------------------------------------
    def torch_case(self, name: str, fn: str, dtype: str, x, t=None, note: str | None = None, **opts) -> None:
        """One case computed by torch in ``dtype``: forward, then autograd for input (and target)."""
        tdt = TDT[dtype]
        xt = torch.tensor(np.asarray(x, dtype=np.float64), dtype=tdt)
        tt = None
        if t is not None:
            t = np.asarray(t)
            if t.dtype.kind in "iu":
                tt = torch.tensor(t, dtype=torch.int64)
            else:
                tt = torch.tensor(t.astype(np.float64), dtype=tdt)
        topts = {}
        jopts = {}
        for k, v in opts.items():
            if k in ("weight", "pos_weight"):
                topts[k] = None if v is None else torch.tensor(np.asarray(v, dtype=np.float64), dtype=tdt)
                jopts[k] = None if v is None else enc_array(topts[k])
            else:
                topts[k] = jopts[k] = v
        case = {"name": self._unique(name), "function": fn, "dtype": dtype}
        if note:
            case["note"] = note
        case["inputs"] = {"input": enc_array(xt)}
        if tt is not None:
            case["inputs"]["target"] = enc_array(tt, "int64" if tt.dtype == torch.int64 else "float")
        case["options"] = jopts

        try:
            out, grads, go = torch_eval(fn, xt, tt, topts, lambda o: self.grad_output(o, is_reduced(fn, opts)))
        except Exception as e:  # torch rejects the input: record its message
            case["error"] = True
            case["error_type"] = type(e).__name__
            case["message"] = str(e).split("\n")[0]
            self.cases.append(case)
            return
        case["grad_output"] = enc_array(go)
        exp = {"output": enc_array(out), "grad_input": enc_array(grads[0])}
        if len(grads) > 1:
            exp["grad_target"] = enc_array(grads[1])
        case["expected"] = exp
        if dtype == "float32":
            # see f32_reference and testdata/README.md ("float32 rounding")
            def evaluate(inp, dt, variant=0):
                cast = lambda a: a if a is None or a.dtype == torch.int64 else a.to(dt)
                o = {k: (cast(inp[k]) if k in inp else v) for k, v in topts.items()}
                x_, go_ = cast(inp["input"]), cast(inp["grad_output"])
                if variant == 1:  # softmax family: the reduced dimension moved last (contiguous rows)
                    d = o["dim"] % max(x_.dim(), 1) if x_.dim() else 0
                    last = max(x_.dim() - 1, 0)
                    o["dim"] = -1
                    x_ = x_.movedim(d, -1).contiguous() if x_.dim() else x_
                    if fn != "logsumexp" and x_.dim():
                        go_ = go_.movedim(d, -1).contiguous()
                    res, grads_, _ = torch_eval(fn, x_, None, o, lambda _o: go_)
                    if x_.dim():
                        if fn != "logsumexp":
                            res = res.movedim(last, d)
                        grads_ = [g.movedim(last, d) for g in grads_]
                    return [res] + grads_
                res, grads_, _ = torch_eval(fn, x_, cast(inp["target"]), o, lambda _o: go_)
                return [res] + grads_

            up = lambda a: None if a is None else (a if a.dtype == torch.int64 else a.to(torch.float64))
            inputs = {"input": up(xt), "target": up(tt), "grad_output": up(go)}
            for k, v in topts.items():
                if isinstance(v, torch.Tensor):
                    inputs[k] = up(v)
            bounds = {"input": (0.0, 1.0), "target": (0.0, 1.0)} if fn == "binary_cross_entropy" else {}
            nvar = 2 if fn in ("logsumexp", "log_softmax", "softmax") else 1
            ref = f32_reference(evaluate, inputs, [out] + list(grads), self.prng, bounds, nvar)
            if ref:
                case["f32_reference"] = ref
        self.cases.append(case)

    # ---- output -------------------------------------------------------------------------------------------
    def document(self) -> dict:
        head = fixture_schema.header(self.name, "scripts/gen_fixtures.py", versions(), len(self.cases),
                                     seed=SEEDS[self.name])
        return dict(head, cases=self.cases)


# --------------------------------------------------------------------------------------------------------------
# Random data helpers
# --------------------------------------------------------------------------------------------------------------


def shape_str(shape) -> str:
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


def softmax_np(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    e = np.exp(a - m)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_np(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def class_dim(shape) -> int:
    return 0 if len(shape) == 1 else 1


def target_shape(shape) -> tuple:
    """The class-index target shape for a class-dim-1 input."""
    if len(shape) == 1:
        return ()
    return (shape[0],) + tuple(shape[2:])


# --------------------------------------------------------------------------------------------------------------
# softmax family: logsumexp, log_softmax, softmax
# --------------------------------------------------------------------------------------------------------------


def gen_softmax() -> Family:
    fam = Family("softmax")
    rng = fam.rng
    shapes = [(), (5,), (1, 7), (3, 4), (2, 3, 4), (2, 3, 2, 2), (0, 3), (3, 0), (4, 1)]
    fns = ("logsumexp", "log_softmax", "softmax")
    for dtype in DTYPES:
        for fn in fns:
            for shape in shapes:
                nd = max(len(shape), 1)
                for dim in range(-nd, nd):
                    x = rng.standard_normal(shape) * 2.0
                    fam.torch_case(f"{fn}/{dtype}/{shape_str(shape)}/dim{dim}", fn, dtype, x, dim=dim)
            # larger rows (vectorised kernels in torch use chunks of 8/16)
            for c in (17, 33):
                x = rng.standard_normal((3, c)) * 3.0
                fam.torch_case(f"{fn}/{dtype}/wide{c}/dim1", fn, dtype, x, dim=1)
                fam.torch_case(f"{fn}/{dtype}/wide{c}/dim0", fn, dtype, x, dim=0)
            # edge values: -inf entries, all -inf, +inf, NaN, ±1e4, near exp overflow
            edge = np.array(
                [
                    [0.0, -INF, 1.0, 2.0],
                    [-INF, -INF, -INF, -INF],
                    [INF, 0.0, 1.0, -1.0],
                    [INF, INF, 0.0, 0.0],
                    [1e4, -1e4, 0.0, 1.0],
                    [1e4, 1e4 + 1.0, 1e4 - 1.0, -1e4],
                    [-1e4, -1e4, -1e4, -1e4],
                    [88.0, 89.0, 90.0, 87.5],
                    [NAN, 0.0, 1.0, 2.0],
                    [-INF, 3.0, -INF, -INF],
                ]
            )
            for dim in (1, -1, 0):
                fam.torch_case(f"{fn}/{dtype}/edge_values/dim{dim}", fn, dtype, edge, dim=dim)
            big = np.array([[1e30, 1e30, -1e30], [-1e30, 0.0, 1e-30], [1e-30, -1e-30, 0.0]])
            fam.torch_case(f"{fn}/{dtype}/huge_and_tiny/dim1", fn, dtype, big, dim=1)
            same = np.full((2, 5), 3.25)
            fam.torch_case(f"{fn}/{dtype}/constant_rows/dim1", fn, dtype, same, dim=1)
            # errors: dimension out of range
            fam.torch_case(f"{fn}/{dtype}/error_dim_too_large", fn, dtype, rng.standard_normal((3, 4)), dim=2)
            fam.torch_case(f"{fn}/{dtype}/error_dim_too_negative", fn, dtype, rng.standard_normal((3, 4)), dim=-3)
            fam.torch_case(f"{fn}/{dtype}/error_scalar_dim1", fn, dtype, np.array(1.5), dim=1)
    return fam


# --------------------------------------------------------------------------------------------------------------
# nll_loss
# --------------------------------------------------------------------------------------------------------------

CLASS_SHAPES = [
    ("batch", (4, 5)),
    ("single_row", (1, 5)),
    ("vector", (5,)),
    ("empty", (0, 5)),
    ("3d", (2, 3, 4)),
    ("4d", (2, 3, 2, 2)),
    ("5d", (2, 3, 1, 2, 2)),
]
REDUCTIONS = ("none", "mean", "sum")


def class_targets(rng, shape, ii_mode: str):
    """Random class targets for a class-dim-1 input, with some set to ignore_index per ``ii_mode``.

    Returns (target, ignore_index)."""
    C = shape[class_dim(shape)]
    tshape = target_shape(shape)
    t = rng.integers(0, C, size=tshape).astype(np.int64)
    flat = t.reshape(-1)
    if ii_mode == "default":
        ii = -100
    elif ii_mode == "inside":
        ii = 1
        if flat.size:
            flat[0] = 1  # at least one ignored
            if flat.size > 2:
                flat[-1] = 2  # and at least one that is not (C >= 3 everywhere)
    elif ii_mode == "outside_pos":
        ii = C + 3
        if flat.size:
            flat[0] = ii
    elif ii_mode == "outside_neg":
        ii = -1
        if flat.size:
            flat[-1] = -1
    else:
        raise ValueError(ii_mode)
    return flat.reshape(tshape), ii


def gen_nll() -> Family:
    fam = Family("nll_loss")
    rng = fam.rng
    fn = "nll_loss"
    for dtype in DTYPES:
        for sname, shape in CLASS_SHAPES:
            C = shape[class_dim(shape)]
            for wmode in ("noweight", "weight"):
                for ii_mode in ("default", "inside", "outside_pos", "outside_neg"):
                    for red in REDUCTIONS:
                        x = log_softmax_np(rng.standard_normal(shape) * 2.0, class_dim(shape))
                        t, ii = class_targets(rng, shape, ii_mode)
                        w = rng.uniform(0.1, 2.0, C) if wmode == "weight" else None
                        fam.torch_case(
                            f"{fn}/{dtype}/{sname}/{wmode}/ii_{ii_mode}/{red}",
                            fn, dtype, x, t, weight=w, ignore_index=ii, reduction=red,
                        )
        # edge cases
        for red in REDUCTIONS:
            x = rng.standard_normal((3, 4))
            t = np.array([2, 2, 2])
            fam.torch_case(f"{fn}/{dtype}/all_ignored/{red}", fn, dtype, x, t, weight=None, ignore_index=2,
                           reduction=red)
            fam.torch_case(f"{fn}/{dtype}/all_ignored_weighted/{red}", fn, dtype, x, t,
                           weight=[0.5, 1.0, 2.0, 3.0], ignore_index=2, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/all_ignored_4d/{red}", fn, dtype, rng.standard_normal((2, 3, 2, 2)),
                           np.full((2, 2, 2), 7), weight=None, ignore_index=7, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/vector_ignored/{red}", fn, dtype, rng.standard_normal(4), np.array(0),
                           weight=None, ignore_index=0, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/zero_weight_only_class/{red}", fn, dtype, x, np.array([1, 1, 1]),
                           weight=[1.0, 0.0, 2.0, 3.0], ignore_index=-100, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/negative_weight/{red}", fn, dtype, x, np.array([0, 1, 3]),
                           weight=[1.0, -0.5, 2.0, 3.0], ignore_index=-100, reduction=red)
            xi = np.array([[0.0, -INF, 1.0], [INF, 0.0, -1.0], [-1e4, 1e4, 0.0], [NAN, 0.0, 1.0]])
            fam.torch_case(f"{fn}/{dtype}/nonfinite_inputs/{red}", fn, dtype, xi, np.array([1, 1, 0, 2]),
                           weight=None, ignore_index=-100, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/nonfinite_ignored/{red}", fn, dtype, xi, np.array([1, 1, 0, 0]),
                           weight=None, ignore_index=0, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/empty_3d/{red}", fn, dtype, np.zeros((0, 3, 2)), np.zeros((0, 2), np.int64),
                           weight=[1.0, 2.0, 3.0], ignore_index=-100, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/empty_classes_zero_rows/{red}", fn, dtype, np.zeros((2, 3, 0)),
                           np.zeros((2, 0), np.int64), weight=None, ignore_index=-100, reduction=red)
        big = rng.standard_normal((64, 10))
        tb = rng.integers(0, 10, 64)
        tb[::7] = -100
        for red in REDUCTIONS:
            fam.torch_case(f"{fn}/{dtype}/large_batch/{red}", fn, dtype, big, tb, weight=rng.uniform(0.1, 2, 10),
                           ignore_index=-100, reduction=red)
        # errors
        x = rng.standard_normal((4, 5))
        err = [
            ("error_target_eq_C", x, np.array([0, 5, 1, 2]), None, -100, "mean"),
            ("error_target_large", x, np.array([0, 1, 12, 2]), None, -100, "sum"),
            ("error_target_negative", x, np.array([0, -1, 1, 2]), None, -100, "mean"),
            ("error_target_negative_not_ignored", x, np.array([0, -2, 1, 2]), None, -1, "none"),
            ("error_target_out_of_range_3d", rng.standard_normal((2, 3, 4)), np.array([[0, 1, 2, 7], [0, 0, 0, 0]]),
             None, -100, "mean"),
            ("error_vector_target_out_of_range", rng.standard_normal(5), np.array(5), None, -100, "none"),
            ("error_batch_mismatch", x, np.array([0, 1, 2]), None, -100, "mean"),
            ("error_weight_too_long", x, np.array([0, 1, 2, 3]), [1.0] * 6, -100, "mean"),
            ("error_weight_too_short", x, np.array([0, 1, 2, 3]), [1.0] * 4, -100, "sum"),
            ("error_nd_target_shape", rng.standard_normal((2, 5, 4)), np.zeros((2, 3), np.int64), None, -100, "mean"),
            ("error_3d_input_1d_target", rng.standard_normal((2, 5, 4)), np.zeros((2,), np.int64), None, -100, "mean"),
            ("error_multi_target", x, np.zeros((4, 2), np.int64), None, -100, "mean"),
            ("error_scalar_input", np.array(1.0), np.array(0), None, -100, "mean"),
            ("error_batchmean", x, np.array([0, 1, 2, 3]), None, -100, "batchmean"),
        ]
        for name, xe, te, we, ii, red in err:
            fam.torch_case(f"{fn}/{dtype}/{name}", fn, dtype, xe, te, weight=we, ignore_index=ii, reduction=red)
    return fam


# --------------------------------------------------------------------------------------------------------------
# cross_entropy (class indices and probabilities)
# --------------------------------------------------------------------------------------------------------------


def prob_targets(rng, shape, kind: str):
    cd = class_dim(shape)
    if kind == "dirichlet":
        return softmax_np(rng.standard_normal(shape) * 1.5, cd)
    if kind == "zeros":
        p = softmax_np(rng.standard_normal(shape) * 1.5, cd)
        mask = rng.random(shape) < 0.4
        p = np.where(mask, 0.0, p)
        return p
    if kind == "onehot":
        C = shape[cd]
        idx = rng.integers(0, C, size=target_shape(shape))
        return np.moveaxis(np.eye(C)[idx], -1, cd) if len(shape) > 1 else np.eye(C)[idx]
    if kind == "unnormalized":
        return rng.uniform(0.0, 2.0, shape)
    if kind == "negative":
        return rng.uniform(-0.5, 1.0, shape)
    raise ValueError(kind)


def gen_cross_entropy() -> Family:
    fam = Family("cross_entropy")
    rng = fam.rng
    fn = "cross_entropy"
    for dtype in DTYPES:
        # ---- class indices: every shape × weight × ignore_index × label_smoothing × reduction
        for sname, shape in CLASS_SHAPES:
            C = shape[class_dim(shape)]
            for wmode in ("noweight", "weight"):
                for ii_mode in ("default", "inside", "outside_pos"):
                    for ls in (0.0, 0.1, 1.0):
                        for red in REDUCTIONS:
                            x = rng.standard_normal(shape) * 2.0
                            t, ii = class_targets(rng, shape, ii_mode)
                            w = rng.uniform(0.1, 2.0, C) if wmode == "weight" else None
                            fam.torch_case(
                                f"{fn}/{dtype}/{sname}/{wmode}/ii_{ii_mode}/ls{ls}/{red}",
                                fn, dtype, x, t, weight=w, ignore_index=ii, reduction=red, label_smoothing=ls,
                            )
        # negative ignore_index inside the target set, smoothing 0.3
        for red in REDUCTIONS:
            for wmode in ("noweight", "weight"):
                x = rng.standard_normal((5, 4))
                t, ii = class_targets(rng, (5, 4), "outside_neg")
                w = rng.uniform(0.1, 2.0, 4) if wmode == "weight" else None
                fam.torch_case(f"{fn}/{dtype}/batch/{wmode}/ii_outside_neg/ls0.3/{red}", fn, dtype, x, t,
                               weight=w, ignore_index=ii, reduction=red, label_smoothing=0.3)
        # edge values
        for red in REDUCTIONS:
            for ls in (0.0, 0.1):
                xe = np.array([[0.0, -INF, 1.0], [1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [2.0, 1.0, -INF],
                               [INF, 0.0, 1.0], [-1e4, -1e4, -1e4]])
                te = np.array([0, 0, 0, 2, 1, 1])
                fam.torch_case(f"{fn}/{dtype}/extreme_logits/ls{ls}/{red}", fn, dtype, xe, te, weight=None,
                               ignore_index=-100, reduction=red, label_smoothing=ls)
                xe2 = np.array([[1.0, -INF, 0.5], [0.3, 2.0, -1.0]])
                fam.torch_case(f"{fn}/{dtype}/neg_inf_at_target/ls{ls}/{red}", fn, dtype, xe2, np.array([1, 0]),
                               weight=[0.5, 2.0, 1.0], ignore_index=-100, reduction=red, label_smoothing=ls)
                fam.torch_case(f"{fn}/{dtype}/neg_inf_at_ignored_target/ls{ls}/{red}", fn, dtype, xe2,
                               np.array([1, 0]), weight=None, ignore_index=1, reduction=red, label_smoothing=ls)
                xl = np.array([[1e4, 0.0, -1e4, 5.0], [-1e4, 1e4, 1e4, 0.0]])
                fam.torch_case(f"{fn}/{dtype}/pm1e4_logits/ls{ls}/{red}", fn, dtype, xl, np.array([0, 2]),
                               weight=[1.0, 2.0, 0.5, 1.5], ignore_index=-100, reduction=red, label_smoothing=ls)
            for ls in (0.0, 0.1, 1.0):
                x = rng.standard_normal((3, 4))
                fam.torch_case(f"{fn}/{dtype}/all_ignored/ls{ls}/{red}", fn, dtype, x, np.array([2, 2, 2]),
                               weight=[0.5, 1.0, 2.0, 3.0], ignore_index=2, reduction=red, label_smoothing=ls)
                fam.torch_case(f"{fn}/{dtype}/vector_ignored/ls{ls}/{red}", fn, dtype, rng.standard_normal(4),
                               np.array(3), weight=None, ignore_index=3, reduction=red, label_smoothing=ls)
                fam.torch_case(f"{fn}/{dtype}/zero_weight_target_class/ls{ls}/{red}", fn, dtype, x,
                               np.array([1, 1, 3]), weight=[1.0, 0.0, 2.0, 3.0], ignore_index=3, reduction=red,
                               label_smoothing=ls)
            # weight + ignore_index + smoothing together, the issue #69339 combination
            x = rng.standard_normal((4, 3))
            fam.torch_case(f"{fn}/{dtype}/issue69339_weight_ii_ls/{red}", fn, dtype, x, np.array([0, 2, -100, 1]),
                           weight=[0.2, 1.0, 3.0], ignore_index=-100, reduction=red, label_smoothing=0.1)
            # label_smoothing < 0: torch only checks the upper bound and treats ε ≤ 0 as 0
            fam.torch_case(f"{fn}/{dtype}/negative_label_smoothing/{red}", fn, dtype, x, np.array([0, 2, 1, 1]),
                           weight=None, ignore_index=-100, reduction=red, label_smoothing=-0.1,
                           note="torch checks only label_smoothing <= 1; a negative value behaves as 0")
            big = rng.standard_normal((50, 12)) * 3
            tb = rng.integers(0, 12, 50)
            tb[::9] = 4
            fam.torch_case(f"{fn}/{dtype}/large_batch/{red}", fn, dtype, big, tb, weight=rng.uniform(0.1, 2, 12),
                           ignore_index=4, reduction=red, label_smoothing=0.05)
        # errors (class targets)
        x = rng.standard_normal((4, 5))
        t = np.array([0, 1, 2, 3])
        err = [
            ("error_target_eq_C", x, np.array([0, 5, 1, 2]), {}),
            ("error_target_negative", x, np.array([0, -1, 1, 2]), {}),
            ("error_target_out_of_range_ls", x, np.array([0, 9, 1, 2]), {"label_smoothing": 0.1,
                                                                          "weight": [1.0] * 5}),
            ("error_target_out_of_range_4d", rng.standard_normal((2, 5, 2, 2)), np.full((2, 2, 2), 5), {}),
            ("error_batch_mismatch", x, np.array([0, 1, 2]), {}),
            ("error_weight_wrong_length", x, t, {"weight": [1.0] * 4}),
            ("error_label_smoothing_1.5", x, t, {"label_smoothing": 1.5}),
            ("error_batchmean", x, t, {"reduction": "batchmean"}),
            ("error_ntc_layout", rng.standard_normal((2, 3, 5)), np.zeros((2, 3), np.int64), {}),
            ("error_int_target_same_shape", x, np.zeros((4, 5), np.int64), {}),
            ("error_scalar_input", np.array(0.5), np.array(0), {}),
        ]
        for name, xe, te, o in err:
            opts = {"weight": None, "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}
            opts.update(o)
            fam.torch_case(f"{fn}/{dtype}/{name}", fn, dtype, xe, te, **opts)

        # ---- probability targets
        fnp = "cross_entropy_probs"
        kinds = ("dirichlet", "zeros", "onehot", "unnormalized", "negative")
        k = 0
        for sname, shape in CLASS_SHAPES[:6]:
            C = shape[class_dim(shape)]
            for wmode in ("noweight", "weight"):
                for ls in (0.0, 0.1, 1.0):
                    for red in REDUCTIONS:
                        kind = kinds[k % len(kinds)]
                        k += 1
                        x = rng.standard_normal(shape) * 2.0
                        p = prob_targets(rng, shape, kind)
                        w = rng.uniform(0.1, 2.0, C) if wmode == "weight" else None
                        fam.torch_case(f"{fnp}/{dtype}/{sname}/{wmode}/ls{ls}/{red}/{kind}", fnp, dtype, x, p,
                                       weight=w, ignore_index=-100, reduction=red, label_smoothing=ls)
        for red in REDUCTIONS:
            x = rng.standard_normal((3, 4))
            fam.torch_case(f"{fnp}/{dtype}/negative_ignore_index_allowed/{red}", fnp, dtype, x,
                           prob_targets(rng, (3, 4), "dirichlet"), weight=None, ignore_index=-1, reduction=red,
                           label_smoothing=0.0)
            xe = np.array([[0.0, -INF, 1.0], [1e4, -1e4, 0.0], [2.0, 1.0, -INF], [INF, 0.0, 1.0]])
            pe = np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
            for ls in (0.0, 0.1):
                fam.torch_case(f"{fnp}/{dtype}/extreme_logits/ls{ls}/{red}", fnp, dtype, xe, pe, weight=None,
                               ignore_index=-100, reduction=red, label_smoothing=ls)
                fam.torch_case(f"{fnp}/{dtype}/extreme_logits_weighted/ls{ls}/{red}", fnp, dtype, xe, pe,
                               weight=[1.0, 0.5, 2.0], ignore_index=-100, reduction=red, label_smoothing=ls)
            fam.torch_case(f"{fnp}/{dtype}/neg_inf_logit_positive_target/{red}", fnp, dtype,
                           np.array([[1.0, -INF, 0.0]]), np.array([[0.2, 0.3, 0.5]]), weight=None,
                           ignore_index=-100, reduction=red, label_smoothing=0.0)
            fam.torch_case(f"{fnp}/{dtype}/negative_label_smoothing/{red}", fnp, dtype, x,
                           prob_targets(rng, (3, 4), "dirichlet"), weight=None, ignore_index=-100, reduction=red,
                           label_smoothing=-0.1, note="torch checks only label_smoothing <= 1; a negative value behaves as 0")
            big = rng.standard_normal((40, 9)) * 3
            fam.torch_case(f"{fnp}/{dtype}/large_batch/{red}", fnp, dtype, big, prob_targets(rng, (40, 9), "zeros"),
                           weight=rng.uniform(0.1, 2, 9), ignore_index=-100, reduction=red, label_smoothing=0.05)
        x = rng.standard_normal((4, 5))
        p = prob_targets(rng, (4, 5), "dirichlet")
        errp = [
            ("error_ignore_index_0", x, p, {"ignore_index": 0}),
            ("error_ignore_index_3", x, p, {"ignore_index": 3}),
            ("error_label_smoothing_1.5", x, p, {"label_smoothing": 1.5}),
            ("error_weight_wrong_length", x, p, {"weight": [1.0] * 6}),
            ("error_shape_mismatch", x, prob_targets(rng, (4, 4), "dirichlet"), {}),
            ("error_batchmean", x, p, {"reduction": "batchmean"}),
        ]
        for name, xe, pe, o in errp:
            opts = {"weight": None, "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}
            opts.update(o)
            fam.torch_case(f"{fnp}/{dtype}/{name}", fnp, dtype, xe, pe, **opts)
    return fam


# --------------------------------------------------------------------------------------------------------------
# kl_div
# --------------------------------------------------------------------------------------------------------------


def gen_kl_div() -> Family:
    fam = Family("kl_div")
    rng = fam.rng
    fn = "kl_div"
    reds = ("none", "mean", "sum", "batchmean")
    shapes = [("batch", (4, 5)), ("single_row", (1, 5)), ("vector", (5,)), ("scalar", ()), ("empty", (0, 5)),
              ("3d", (2, 3, 4)), ("4d", (2, 3, 2, 2))]

    def inp(shape):
        if len(shape) == 0:
            return np.array(math.log(0.3) + rng.standard_normal() * 0.1)
        return log_softmax_np(rng.standard_normal(shape) * 1.5, -1)

    def tgt(shape, log_target):
        if len(shape) == 0:
            p = np.array(rng.uniform(0.05, 1.0))
        else:
            p = softmax_np(rng.standard_normal(shape) * 1.5, -1)
        return np.log(p) if log_target else p

    for dtype in DTYPES:
        for sname, shape in shapes:
            for lt in (False, True):
                for red in reds:
                    fam.torch_case(f"{fn}/{dtype}/{sname}/log_target_{lt}/{red}", fn, dtype, inp(shape),
                                   tgt(shape, lt), reduction=red, log_target=lt)
        # target broadcasting into the input shape
        for tshape in ((5,), (4, 1), (1, 5), (), (1, 1)):
            for lt in (False, True):
                for red in reds:
                    fam.torch_case(f"{fn}/{dtype}/broadcast_target_{shape_str(tshape)}/log_target_{lt}/{red}", fn,
                                   dtype, inp((4, 5)), tgt(tshape, lt), reduction=red, log_target=lt)
        # input broadcasting into the target shape (torch accepts it too: the output takes the target's shape)
        for lt in (False, True):
            for red in ("none", "sum", "batchmean"):
                fam.torch_case(f"{fn}/{dtype}/broadcast_input_5/log_target_{lt}/{red}", fn, dtype, inp((5,)),
                               tgt((3, 5), lt), reduction=red, log_target=lt,
                               note="input broadcast into a larger target: torch's output has the broadcast shape")
        # edge values
        for red in reds:
            x = np.array([[-1.0, -INF, -2.0, 0.5], [-0.5, -1.5, -INF, -3.0], [1e4, -1e4, INF, -0.1]])
            t = np.array([[0.0, 0.0, 0.3, 0.7], [0.2, -0.1, 0.5, 0.4], [0.0, 0.5, 0.0, 2.0]])
            fam.torch_case(f"{fn}/{dtype}/zeros_negative_and_inf/log_target_False/{red}", fn, dtype, x, t,
                           reduction=red, log_target=False)
            tl = np.array([[-INF, -INF, -1.2, -0.3], [-1.6, 0.5, -0.7, -0.9], [-INF, -0.7, INF, 1e4]])
            fam.torch_case(f"{fn}/{dtype}/neg_inf_targets/log_target_True/{red}", fn, dtype, x, tl,
                           reduction=red, log_target=True)
            xz = np.array([-INF, -INF, -1.0])
            fam.torch_case(f"{fn}/{dtype}/zero_target_neg_inf_input/{red}", fn, dtype, xz, np.array([0.0, 0.5, 0.5]),
                           reduction=red, log_target=False)
            fam.torch_case(f"{fn}/{dtype}/all_zero_targets/{red}", fn, dtype, inp((3, 4)), np.zeros((3, 4)),
                           reduction=red, log_target=False)
            fam.torch_case(f"{fn}/{dtype}/tiny_targets/{red}", fn, dtype, inp((2, 3)),
                           np.array([[1e-30, 1e-8, 1.0], [1e-45, 0.5, 0.5]]), reduction=red, log_target=False)
            big = inp((32, 10))
            fam.torch_case(f"{fn}/{dtype}/large_batch/{red}", fn, dtype, big, tgt((32, 10), False), reduction=red,
                           log_target=False)
            fam.torch_case(f"{fn}/{dtype}/large_batch_log_target/{red}", fn, dtype, big, tgt((32, 10), True),
                           reduction=red, log_target=True)
        # errors: shapes that do not broadcast
        for red in ("mean", "none"):
            fam.torch_case(f"{fn}/{dtype}/error_shape_mismatch/{red}", fn, dtype, inp((4, 5)), tgt((4, 3), False),
                           reduction=red, log_target=False)
            fam.torch_case(f"{fn}/{dtype}/error_shape_mismatch_rows/{red}", fn, dtype, inp((4, 5)),
                           tgt((3, 5), True), reduction=red, log_target=True)
    return fam


# --------------------------------------------------------------------------------------------------------------
# binary_cross_entropy and binary_cross_entropy_with_logits
# --------------------------------------------------------------------------------------------------------------

BIN_SHAPES = [("batch", (4, 5)), ("single_row", (1, 5)), ("vector", (5,)), ("scalar", ()), ("empty", (0, 5)),
              ("3d", (2, 3, 4))]


def weight_shapes(shape):
    """Weight shapes that broadcast into ``shape``: (label, shape)."""
    out = [("full", shape)]
    if len(shape) >= 1:
        out.append(("last", (shape[-1],)))
    if len(shape) >= 2:
        out.append(("col", (shape[0],) + (1,) * (len(shape) - 1)))
    out.append(("one", (1,) if len(shape) >= 1 else ()))
    return out


def bin_targets(rng, shape, i):
    if i % 3 == 0:
        return rng.integers(0, 2, shape).astype(np.float64)
    if i % 3 == 1:
        return rng.uniform(0.0, 1.0, shape)
    t = rng.uniform(0.0, 1.0, shape)
    return np.where(rng.random(shape) < 0.5, np.round(t), t)


def gen_bce() -> Family:
    fam = Family("binary_cross_entropy")
    rng = fam.rng
    fn = "binary_cross_entropy"
    i = 0
    for dtype in DTYPES:
        for sname, shape in BIN_SHAPES:
            for wlabel, wshape in [("noweight", None)] + weight_shapes(shape):
                for red in REDUCTIONS:
                    i += 1
                    x = rng.uniform(0.02, 0.98, shape)
                    t = bin_targets(rng, shape, i)
                    w = None if wshape is None else rng.uniform(0.1, 2.0, wshape)
                    fam.torch_case(f"{fn}/{dtype}/{sname}/{wlabel}/{red}", fn, dtype, x, t, weight=w, reduction=red)
        for red in REDUCTIONS:
            # exact 0 and 1 with hard and soft targets
            x = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5])
            t = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.5])
            fam.torch_case(f"{fn}/{dtype}/probabilities_0_and_1/{red}", fn, dtype, x, t, weight=None, reduction=red)
            fam.torch_case(f"{fn}/{dtype}/probabilities_0_and_1_weighted/{red}", fn, dtype, x, t,
                           weight=[0.5, 2.0, 1.0, 0.25, 3.0, 1.5, 1.0], reduction=red)
            tiny = np.array([1e-8, 1e-8, 1e-30, 1e-30, 1 - 1e-8, 1 - 1e-8, 1e-50, 1e-45, 1 - 1e-16, 0.999])
            tt = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
            fam.torch_case(f"{fn}/{dtype}/tiny_probabilities/{red}", fn, dtype, tiny, tt, weight=None, reduction=red)
            big = rng.uniform(0.0, 1.0, (16, 8))
            fam.torch_case(f"{fn}/{dtype}/large_batch/{red}", fn, dtype, big, bin_targets(rng, (16, 8), 1),
                           weight=rng.uniform(0, 1, (8,)), reduction=red)
            fam.torch_case(f"{fn}/{dtype}/zero_weight/{red}", fn, dtype, np.array([0.0, 0.3, 1.0]),
                           np.array([1.0, 1.0, 0.0]), weight=[0.0, 1.0, 0.0], reduction=red)
        x = rng.uniform(0.1, 0.9, (3, 2))
        t = rng.uniform(0, 1, (3, 2))
        err = [
            ("error_input_above_1", np.array([0.2, 1.5, 0.3]), np.array([0.0, 1.0, 0.0]), None, "mean"),
            ("error_input_negative", np.array([0.2, -0.1, 0.3]), np.array([0.0, 1.0, 0.0]), None, "none"),
            ("error_input_nan", np.array([0.2, NAN, 0.3]), np.array([0.0, 1.0, 0.0]), None, "sum"),
            ("error_input_inf", np.array([0.2, INF, 0.3]), np.array([0.0, 1.0, 0.0]), None, "sum"),
            ("error_target_above_1", np.array([0.2, 0.5, 0.3]), np.array([0.0, 1.5, 0.0]), None, "mean"),
            ("error_target_negative", np.array([0.2, 0.5, 0.3]), np.array([0.0, -0.5, 0.0]), None, "mean"),
            ("error_target_nan", np.array([0.2, 0.5, 0.3]), np.array([0.0, NAN, 0.0]), None, "mean"),
            ("error_target_shape", x, t[:, :1], None, "mean"),
            ("error_target_transposed", x, t.T, None, "mean"),
            ("error_weight_wrong_length", x, t, [1.0, 2.0, 3.0], "mean"),
            ("error_weight_enlarges", x, t, np.ones((2, 3, 2)), "mean"),
            ("error_batchmean", x, t, None, "batchmean"),
        ]
        for name, xe, te, we, red in err:
            fam.torch_case(f"{fn}/{dtype}/{name}", fn, dtype, xe, te, weight=we, reduction=red)
    return fam


def gen_bce_logits() -> Family:
    fam = Family("binary_cross_entropy_with_logits")
    rng = fam.rng
    fn = "binary_cross_entropy_with_logits"
    i = 0
    for dtype in DTYPES:
        for sname, shape in BIN_SHAPES:
            ws = [("noweight", None)] + [w for w in weight_shapes(shape) if w[0] in ("full", "last")]
            pws = [("nopw", None)] + [w for w in weight_shapes(shape) if w[0] in ("last", "col", "full")]
            for wlabel, wshape in ws:
                for pwlabel, pwshape in pws:
                    for red in REDUCTIONS:
                        i += 1
                        x = rng.standard_normal(shape) * 3.0
                        t = bin_targets(rng, shape, i)
                        w = None if wshape is None else rng.uniform(0.1, 2.0, wshape)
                        pw = None if pwshape is None else rng.uniform(0.2, 4.0, pwshape)
                        fam.torch_case(f"{fn}/{dtype}/{sname}/{wlabel}/pw_{pwlabel}/{red}", fn, dtype, x, t,
                                       weight=w, pos_weight=pw, reduction=red)
        for red in REDUCTIONS:
            z = np.array([-200.0, -3.0, 0.0, 2.5, 200.0])
            y = np.array([1.0, 0.3, 1.0, 0.0, 0.0])
            fam.torch_case(f"{fn}/{dtype}/spec_example_pw3/{red}", fn, dtype, z, y, weight=None,
                           pos_weight=[3.0] * 5, reduction=red)
            xe = np.array([-1e4, -1e4, 1e4, 1e4, -200.0, 200.0, -200.0, 200.0, 0.0, -30.0, 30.0, 1e-8])
            te = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0])
            for pwl, pw in (("nopw", None), ("pw", [2.0] * 12)):
                fam.torch_case(f"{fn}/{dtype}/extreme_logits/{pwl}/{red}", fn, dtype, xe, te, weight=None,
                               pos_weight=pw, reduction=red)
            xi = np.array([INF, -INF, INF, -INF, NAN])
            ti = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
            fam.torch_case(f"{fn}/{dtype}/infinite_logits/{red}", fn, dtype, xi, ti, weight=None, pos_weight=None,
                           reduction=red)
            fam.torch_case(f"{fn}/{dtype}/targets_outside_0_1/{red}", fn, dtype, rng.standard_normal(6),
                           np.array([2.0, -0.5, 1.5, -1.0, 3.0, 0.5]), weight=None, pos_weight=[1.5] * 6,
                           reduction=red)
            fam.torch_case(f"{fn}/{dtype}/pos_weight_4d_c11/{red}", fn, dtype, rng.standard_normal((2, 3, 2, 2)),
                           bin_targets(rng, (2, 3, 2, 2), 0), weight=None, pos_weight=rng.uniform(0.5, 3, (3, 1, 1)),
                           reduction=red)
            fam.torch_case(f"{fn}/{dtype}/seeds_logits_weight_and_pw/{red}", fn, dtype,
                           np.array([[5.0, 1.0, 8.0], [2.0, 4.0, 6.0]]), np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                           weight=[[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]], pos_weight=[1.0, 2.0, 3.0], reduction=red)
            big = rng.standard_normal((16, 8)) * 4
            fam.torch_case(f"{fn}/{dtype}/large_batch/{red}", fn, dtype, big, bin_targets(rng, (16, 8), 2),
                           weight=rng.uniform(0, 1, (16, 1)), pos_weight=rng.uniform(0.5, 2, (8,)), reduction=red)
        x = rng.standard_normal((4, 3))
        t = bin_targets(rng, (4, 3), 1)
        err = [
            ("error_target_shape", x, t[:, :2], {}),
            ("error_target_broadcastable_shape", x, t[:1], {}),
            ("error_pos_weight_wrong_length", x, t, {"pos_weight": [1.0] * 4}),
            ("error_pos_weight_enlarges", x, t, {"pos_weight": np.ones((2, 4, 3))}),
            ("error_weight_wrong_length", x, t, {"weight": [1.0] * 4}),
            ("error_weight_enlarges", x, t, {"weight": np.ones((2, 4, 3))}),
            ("error_batchmean", x, t, {"reduction": "batchmean"}),
        ]
        for name, xe, te, o in err:
            opts = {"weight": None, "pos_weight": None, "reduction": "mean"}
            opts.update(o)
            fam.torch_case(f"{fn}/{dtype}/{name}", fn, dtype, xe, te, **opts)
    return fam


# --------------------------------------------------------------------------------------------------------------
# Seeds (shared/SEEDS.md worked numbers), added to their families
# --------------------------------------------------------------------------------------------------------------


def add_seeds(bce: Family, bcel: Family, kl: Family, ce: Family) -> None:
    x = np.array([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]])
    t = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    w = np.array([[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])
    for dtype in DTYPES:
        bce.torch_case(f"seed1_bce_weighted/{dtype}", "binary_cross_entropy", dtype, x, t, weight=w,
                       reduction="mean", note="SEEDS.md #1: exact 0.12723308136613606")
        bce.torch_case(f"seed2_bce/{dtype}", "binary_cross_entropy", dtype, x, t, weight=None, reduction="mean",
                       note="SEEDS.md #2: exact 0.5912299819733728")
        bcel.torch_case(f"seed3_bce_with_logits/{dtype}", "binary_cross_entropy_with_logits", dtype, x, t,
                        weight=None, pos_weight=None, reduction="mean",
                        note="SEEDS.md #3: exact 0.7678469016522563")
        bcel.torch_case(f"seed4_bce_with_logits_large/{dtype}", "binary_cross_entropy_with_logits", dtype,
                        np.array([[5.0, 1.0, 8.0], [2.0, 4.0, 6.0]]), t, weight=None, pos_weight=None,
                        reduction="mean", note="SEEDS.md #4: exact 3.244644344413125")
        # #5: the input is log(softmax(l)) computed by torch in the case's dtype
        l = torch.tensor(x, dtype=TDT[dtype])
        logp = torch.log(F.softmax(l, dim=1)).numpy().astype(np.float64)
        kl.torch_case(f"seed5_kl_div_batchmean/{dtype}", "kl_div", dtype, logp,
                      np.array([[0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]), reduction="batchmean", log_target=False,
                      note="SEEDS.md #5: exact 0.057796191309196596; input = torch.log(F.softmax(l, 1)) in this dtype")
        lg = torch.log(torch.tensor([[0.3, 0.3, 0.4]], dtype=TDT[dtype])).numpy().astype(np.float64)
        ce.torch_case(f"seed6_cross_entropy/{dtype}", "cross_entropy", dtype, lg, np.array([2]), weight=None,
                      ignore_index=-100, reduction="mean", label_smoothing=0.0,
                      note="SEEDS.md #6: exact 0.9162907318741551 (= -log 0.4)")
        ce.torch_case(f"seed6_cross_entropy_probs/{dtype}", "cross_entropy_probs", dtype, lg,
                      np.array([[0.0, 0.0, 1.0]]), weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, note="SEEDS.md #6 with the one-hot label as a probability target")


# --------------------------------------------------------------------------------------------------------------
# Information measures: values from SciPy, gradients from torch autograd (float64) of the same formulas
# --------------------------------------------------------------------------------------------------------------
#
# The gradient conventions are those documented in crates/infoloss/src/info.rs, built from torch pieces:
#   - entr: torch.special.entr's own autograd (+inf at 0, NaN for x < 0);
#   - rel_entr and the Jensen–Shannon term: the partials of the formula where it is smooth, and at its kinks
#     the one-sided values documented in info.rs (custom autograd Functions below);
#   - the normalization x̂ = x/Σx: autograd with zero entries divided by a *detached* Σx, so a (possibly
#     infinite) partial at x̂_i = 0 cannot reach the other entries (plain autograd would give 0·∞ = NaN for
#     the whole row);
#   - a distribution whose value is ±inf or NaN gets NaN gradients (its upstream gradient is set to NaN);
#   - the JS distance's sqrt has gradient 0 at 0.


def _rel_entr_value(p, q):
    pos = (p > 0) & (q > 0)
    zero = (p == 0) & (q >= 0)
    v = torch.where(pos, p * torch.log(p / q), torch.where(zero, torch.zeros_like(p), torch.full_like(p, INF)))
    return torch.where(p.isnan() | q.isnan(), torch.full_like(p, NAN), v)


class RelEntr(torch.autograd.Function):
    """scipy.special.rel_entr with the gradient of info.rs (rel_entr_backward)."""

    @staticmethod
    def forward(ctx, p, q):
        ctx.save_for_backward(p, q)
        return _rel_entr_value(p, q)

    @staticmethod
    def backward(ctx, g):
        p, q = ctx.saved_tensors
        pos = (p > 0) & (q > 0)
        zero = (p == 0) & (q >= 0)
        nan = torch.full_like(p, NAN)
        dp = torch.where(pos | zero, g * (torch.log(p / q) + 1), nan)
        dq = torch.where(pos, -g * p / q, torch.where(zero, torch.zeros_like(q), nan))
        bad = p.isnan() | q.isnan()
        return torch.where(bad, nan, dp), torch.where(bad, nan, dq)


class CrossTerm(torch.autograd.Function):
    """The term −p̂·ln q̂ of H(p̂, q̂) (entr + rel_entr off the smooth region), partials −ln q̂ and −p̂/q̂."""

    @staticmethod
    def forward(ctx, p, q):
        ctx.save_for_backward(p, q)
        smooth = (p > 0) & (q > 0)
        other = torch.special.entr(p) + _rel_entr_value(p, q)
        return torch.where(smooth, -p * torch.log(q), other)

    @staticmethod
    def backward(ctx, g):
        p, q = ctx.saved_tensors
        dp = g * -torch.log(q)
        dq = torch.where(p == 0, torch.zeros_like(q), -g * p / q)
        return dp, dq


class JsTerm(torch.autograd.Function):
    """rel_entr(p̂, m) + rel_entr(q̂, m) with m = (p̂+q̂)/2; partial ln(p̂/m) (−inf at p̂ = 0 < q̂, ln 2 at 0 = 0)."""

    @staticmethod
    def forward(ctx, p, q):
        ctx.save_for_backward(p, q)
        m = (p + q) / 2.0
        return _rel_entr_value(p, m) + _rel_entr_value(q, m)

    @staticmethod
    def backward(ctx, g):
        p, q = ctx.saved_tensors
        m = (p + q) / 2.0
        ln2 = torch.full_like(p, math.log(2.0))

        def part(a, b):
            return torch.where((a == 0) & (b == 0), ln2, torch.log(a / m))

        return g * part(p, q), g * part(q, p)


class SafeSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        r = torch.sqrt(u)
        ctx.save_for_backward(r)
        return r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return torch.where(r == 0, torch.zeros_like(r), g / (2 * r))


def masked_normalize(x, axis):
    s = x.sum(axis, keepdim=True)
    return torch.where(x == 0, x / s.detach(), x / s)


def info_torch(fn: str, p, q, o: dict):
    """The torch formula of one information measure (values agree with SciPy; gradients as info.rs)."""
    base = o.get("base")
    lnb = None if base is None else math.log(base)
    if fn == "entr":
        return torch.special.entr(p)
    if fn == "self_information":
        v = -torch.log(p)
        return v if lnb is None else v / lnb
    if fn == "rel_entr":
        pb, qb = torch.broadcast_tensors(p, q)
        return RelEntr.apply(pb, qb)
    axis = o["axis"]
    if p.dim() == 0:  # one distribution of one element
        p = p.reshape(1)
        q = None if q is None else q.reshape(1)
        axis = 0
    if fn in ("entropy", "shannon_cross_entropy"):
        if q is not None:
            p, q = torch.broadcast_tensors(p, q)
        ph = masked_normalize(p, axis)
        if q is None:
            vec = torch.special.entr(ph)
        else:
            qh = masked_normalize(q, axis)
            vec = RelEntr.apply(ph, qh) if fn == "entropy" else CrossTerm.apply(ph, qh)
        v = vec.sum(axis)
        return v if lnb is None else v / lnb
    if fn == "jensenshannon":
        ph, qh = masked_normalize(p, axis), masked_normalize(q, axis)
        ph, qh = torch.broadcast_tensors(ph, qh)
        u = JsTerm.apply(ph, qh).sum(axis, keepdim=o["keepdims"])
        if lnb is not None:
            u = u / lnb
        return SafeSqrt.apply(u / 2.0)
    raise ValueError(fn)


def info_scipy(fn: str, p: np.ndarray, q, o: dict) -> np.ndarray:
    base, axis = o.get("base"), o.get("axis")
    with np.errstate(all="ignore"):
        if fn == "entr":
            return sps.entr(p)
        if fn == "self_information":
            v = -np.log(p)
            return v if base is None else v / np.log(base)
        if fn == "rel_entr":
            return sps.rel_entr(p, q)
        if fn == "entropy":
            return np.asarray(sst.entropy(p, q, base=base, axis=axis))
        if fn == "shannon_cross_entropy":
            # H(p, q) = H(p) + D(p‖q) (the scipy.stats.entropy docs), with pk broadcast against qk first as
            # entropy(pk, qk) does
            pb, qb = np.broadcast_arrays(p, q)
            return np.asarray(sst.entropy(pb, base=base, axis=axis) + sst.entropy(pb, qb, base=base, axis=axis))
        if fn == "jensenshannon":
            return np.asarray(ssd.jensenshannon(p, q, base=base, axis=axis, keepdims=o["keepdims"]))
    raise ValueError(fn)


def info_eval(fn: str, p, q, o: dict, go, scipy_out=None):
    """Value (torch formula) and gradients for upstream gradient ``go``; rows with a non-finite value get NaN."""
    pg = p.clone().requires_grad_(True)
    qg = None if q is None else q.clone().requires_grad_(True)
    out = info_torch(fn, pg, qg, o)
    ref = out.detach() if scipy_out is None else scipy_out
    if fn in ("entropy", "shannon_cross_entropy", "jensenshannon"):
        go = torch.where(torch.isfinite(ref), go, torch.full_like(go, NAN))
    wrt = [pg] + ([qg] if qg is not None else [])
    grads = torch.autograd.grad(out, wrt, go, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
    return out.detach(), [g.detach() for g in grads]


def info_case(fam: Family, name: str, fn: str, dtype: str, p, q=None, note: str | None = None, **opts) -> None:
    """One information-measure case: inputs rounded to ``dtype``, everything computed in float64 from them."""
    npdt = NPDT[dtype]
    p = np.asarray(p, dtype=np.float64).astype(npdt).astype(np.float64)
    q = None if q is None else np.asarray(q, dtype=np.float64).astype(npdt).astype(np.float64)
    case = {"name": fam._unique(name), "function": fn, "dtype": dtype}
    if note:
        case["note"] = note
    case["inputs"] = {"input": enc_array(p)}
    if q is not None:
        case["inputs"]["target"] = enc_array(q)
    case["options"] = dict(opts)
    try:
        val = info_scipy(fn, p, q, opts)
    except Exception as e:
        case["error"] = True
        case["error_type"] = type(e).__name__
        case["message"] = str(e).split("\n")[0]
        fam.cases.append(case)
        return
    val = np.asarray(val, dtype=np.float64)
    go = fam.rng.uniform(-2.0, 2.0, val.shape).astype(npdt).astype(np.float64)
    tp = torch.tensor(p)
    tq = None if q is None else torch.tensor(q)
    tgo = torch.tensor(go)
    out_t, grads = info_eval(fn, tp, tq, opts, tgo, torch.tensor(val))
    # the torch formula must reproduce SciPy's value (it is what the gradients differentiate)
    assert out_t.shape == val.shape, (name, out_t.shape, val.shape)
    both = np.isfinite(val) & np.isfinite(out_t.numpy())
    assert np.array_equal(np.isfinite(val), np.isfinite(out_t.numpy())) or fn == "jensenshannon", name
    assert np.allclose(out_t.numpy()[both], val[both], rtol=1e-9, atol=1e-15), (name, out_t, val)
    rnd = lambda a: np.asarray(a, dtype=np.float64).astype(npdt)
    case["grad_output"] = enc_array(rnd(go))
    # float32: the value is SciPy's own float32 result (as torch's float32 result for the losses); the exact
    # value computed from the same inputs in float64 is the f32_reference alternative where they differ
    val32 = val
    if dtype == "float32":
        val32 = np.asarray(info_scipy(fn, p.astype(np.float32), None if q is None else q.astype(np.float32), opts))
    exp = {"output": enc_array(rnd(val32)), "grad_input": enc_array(rnd(grads[0].numpy()))}
    if fn != "self_information" and fn != "entr" and q is not None:
        exp["grad_target"] = enc_array(rnd(grads[1].numpy()))
    case["expected"] = exp
    if dtype == "float32":
        def evaluate(inp, dt, variant=0):
            pp = inp["input"].to(dt)
            qq = None if inp["target"] is None else inp["target"].to(dt)
            o_, g_ = info_eval(fn, pp, qq, opts, inp["grad_output"].to(dt))
            if variant == 1:  # SciPy's own float32 arithmetic for the value
                o_ = torch.tensor(np.asarray(info_scipy(fn, pp.numpy(), None if qq is None else qq.numpy(), opts),
                                             dtype=np.float64))
            return [o_] + g_

        inputs = {"input": tp, "target": tq, "grad_output": tgo}
        actual = [torch.tensor(rnd(val32))] + [torch.tensor(rnd(g.numpy())) for g in grads]
        ref = f32_reference(evaluate, inputs, actual, fam.prng, n_variants=2)
        if ref:
            case["f32_reference"] = ref
    fam.cases.append(case)


def gen_info() -> Family:
    fam = Family("info")
    rng = fam.rng
    bases = (None, 2.0, 10.0, math.e)
    for dtype in DTYPES:
        # ---- entr
        info_case(fam, f"entr/{dtype}/random_2x5", "entr", dtype, rng.uniform(0.0, 1.5, (2, 5)))
        info_case(fam, f"entr/{dtype}/special_values", "entr", dtype,
                  [0.0, 1.0, -1.0, -0.5, INF, NAN, 1e-300, 1e-30, 0.5, 2.0, 1e30, math.exp(-1.0)])
        info_case(fam, f"entr/{dtype}/scalar", "entr", dtype, 0.3)
        info_case(fam, f"entr/{dtype}/empty", "entr", dtype, np.zeros((0, 3)))
        # ---- self_information
        for i, b in enumerate((None, 2.0, 0.5, 10.0)):
            info_case(fam, f"self_information/{dtype}/random/base_{b}", "self_information", dtype,
                      rng.uniform(0.01, 1.0, (3, 4)), base=b)
        info_case(fam, f"self_information/{dtype}/special_values", "self_information", dtype,
                  [0.0, 1.0, 0.5, -0.5, INF, NAN, 1e-300, 2.0], base=None)
        info_case(fam, f"self_information/{dtype}/special_values_bits", "self_information", dtype,
                  [0.0, 1.0, 0.25, -0.5, INF, 1e-30], base=2.0)
        # ---- rel_entr
        info_case(fam, f"rel_entr/{dtype}/random_3x4", "rel_entr", dtype, rng.uniform(0.05, 1.0, (3, 4)),
                  rng.uniform(0.05, 1.0, (3, 4)))
        info_case(fam, f"rel_entr/{dtype}/broadcast_q_row", "rel_entr", dtype, rng.uniform(0.05, 1.0, (3, 4)),
                  rng.uniform(0.05, 1.0, (4,)))
        info_case(fam, f"rel_entr/{dtype}/broadcast_outer", "rel_entr", dtype, rng.uniform(0.05, 1.0, (3, 1)),
                  rng.uniform(0.05, 1.0, (1, 4)))
        info_case(fam, f"rel_entr/{dtype}/broadcast_p_row", "rel_entr", dtype, rng.uniform(0.05, 1.0, (4,)),
                  rng.uniform(0.05, 1.0, (3, 4)))
        vals = [0.0, 0.5, 2.0, -1.0, INF, NAN]
        pp, qq = np.meshgrid(vals, [0.0, 0.3, 2.0, -1.0, INF, NAN], indexing="ij")
        info_case(fam, f"rel_entr/{dtype}/special_grid", "rel_entr", dtype, pp.reshape(-1), qq.reshape(-1),
                  note="every SciPy case of rel_entr; gradients at the kinks as documented in info.rs")
        info_case(fam, f"rel_entr/{dtype}/scalar", "rel_entr", dtype, 0.4, 0.7)
        info_case(fam, f"rel_entr/{dtype}/error_shapes", "rel_entr", dtype, np.ones((3, 4)), np.ones(3))
        # ---- entropy / relative entropy / cross-entropy
        k = 0
        for fn in ("entropy", "entropy_rel", "shannon_cross_entropy"):
            f = "entropy" if fn == "entropy_rel" else fn
            withq = fn != "entropy"
            for shape in ((5,), (4, 3), (2, 3, 4)):
                for axis in sorted(set(range(-len(shape), len(shape)))):
                    b = bases[k % len(bases)]
                    k += 1
                    pk = rng.uniform(0.05, 2.0, shape)
                    qk = rng.uniform(0.05, 2.0, shape) if withq else None
                    info_case(fam, f"{fn}/{dtype}/{shape_str(shape)}/axis{axis}/base_{b}", f, dtype, pk, qk,
                              base=b, axis=axis)
            # zeros in pk; zeros in both; q̂ = 0 < p̂ (inf); negative entries; a row summing to 0
            pz = np.array([[0.0, 0.2, 0.3, 0.5], [0.1, 0.0, 0.0, 0.9], [0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25],
                           [0.5, -0.1, 0.3, 0.3]])
            qz = np.array([[0.1, 0.4, 0.2, 0.3], [0.3, 0.0, 0.5, 0.2], [0.2, 0.3, 0.1, 0.4], [0.0, 0.5, 0.25, 0.25],
                           [0.3, 0.3, 0.2, 0.2]])
            info_case(fam, f"{fn}/{dtype}/zeros_and_degenerate_rows", f, dtype, pz, qz if withq else None,
                      base=None, axis=1,
                      note="zero probabilities (normalization convention of info.rs), a zero row (NaN), "
                           "negative entries, and with qk: 0 = q̂ < p̂ (inf)")
            info_case(fam, f"{fn}/{dtype}/zeros_bits_axis0", f, dtype, pz.T, qz.T if withq else None, base=2.0,
                      axis=0)
            info_case(fam, f"{fn}/{dtype}/broadcast_q_row", f, dtype, rng.uniform(0.05, 2.0, (4, 3)),
                      rng.uniform(0.05, 2.0, (3,)) if withq else None, base=None, axis=1)
            info_case(fam, f"{fn}/{dtype}/broadcast_q_row_axis0", f, dtype, rng.uniform(0.05, 2.0, (4, 3)),
                      rng.uniform(0.05, 2.0, (3,)) if withq else None, base=None, axis=0)
            info_case(fam, f"{fn}/{dtype}/broadcast_p_col", f, dtype, rng.uniform(0.05, 2.0, (4, 1)),
                      rng.uniform(0.05, 2.0, (4, 3)) if withq else None, base=2.0, axis=1)
            info_case(fam, f"{fn}/{dtype}/scalar", f, dtype, 5.0, 3.0 if withq else None, base=None, axis=0)
            info_case(fam, f"{fn}/{dtype}/empty_axis", f, dtype, np.zeros((0, 3)),
                      np.zeros((0, 3)) if withq else None, base=None, axis=0)
            info_case(fam, f"{fn}/{dtype}/empty_other_axis", f, dtype, np.zeros((3, 0)),
                      np.zeros((3, 0)) if withq else None, base=None, axis=0)
            info_case(fam, f"{fn}/{dtype}/large_row", f, dtype, rng.uniform(0.0, 1.0, (3, 40)),
                      rng.uniform(0.01, 1.0, (3, 40)) if withq else None, base=None, axis=-1)
            info_case(fam, f"{fn}/{dtype}/error_axis", f, dtype, np.ones((4, 3)), np.ones((4, 3)) if withq else None,
                      base=None, axis=2)
            info_case(fam, f"{fn}/{dtype}/error_base_0", f, dtype, np.ones((4, 3)),
                      np.ones((4, 3)) if withq else None, base=0.0, axis=0)
            info_case(fam, f"{fn}/{dtype}/error_base_negative", f, dtype, np.ones(3), np.ones(3) if withq else None,
                      base=-2.0, axis=0)
            if withq:
                info_case(fam, f"{fn}/{dtype}/error_shapes", f, dtype, np.ones((4, 3)), np.ones((4, 2)), base=None,
                          axis=1)
        info_case(fam, f"shannon_cross_entropy/{dtype}/seed6_one_hot", "shannon_cross_entropy", dtype,
                  [0.0, 0.0, 1.0], [0.3, 0.3, 0.4], base=None, axis=0,
                  note="SEEDS.md #6: H([0,0,1], [0.3,0.3,0.4]) = -ln 0.4 = 0.9162907318741551")
        info_case(fam, f"entropy/{dtype}/scipy_doc_coin_bits", "entropy", dtype, [0.5, 0.5], [0.9, 0.1], base=2.0,
                  axis=0, note="scipy.stats.entropy docs: 0.7369655941662062")
        # ---- Jensen–Shannon distance
        k = 0
        for shape in ((5,), (4, 3), (2, 3, 4)):
            for axis in sorted(set(range(-len(shape), len(shape)))):
                for keep in (False, True):
                    b = (None, 2.0)[k % 2]
                    k += 1
                    info_case(fam, f"jensenshannon/{dtype}/{shape_str(shape)}/axis{axis}/keepdims_{keep}/base_{b}",
                              "jensenshannon", dtype, rng.uniform(0.05, 2.0, shape), rng.uniform(0.05, 2.0, shape),
                              base=b, axis=axis, keepdims=keep)
        pz = np.array([[0.0, 0.2, 0.3, 0.5], [0.1, 0.0, 0.0, 0.9], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25],
                       [0.5, -0.1, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0]])
        qz = np.array([[0.1, 0.4, 0.2, 0.3], [0.3, 0.0, 0.5, 0.2], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5],
                       [0.3, 0.3, 0.2, 0.2], [0.2, 0.3, 0.1, 0.4]])
        for keep in (False, True):
            info_case(fam, f"jensenshannon/{dtype}/zeros_and_degenerate_rows/keepdims_{keep}", "jensenshannon", dtype,
                      pz, qz, base=None, axis=1, keepdims=keep,
                      note="zeros (−inf and ln 2 partials), disjoint supports, p̂ = q̂ (JS = 0, gradient 0), a "
                           "negative entry (inf, NaN gradient), a zero row (NaN)")
        info_case(fam, f"jensenshannon/{dtype}/disjoint_bits", "jensenshannon", dtype, [1.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0], base=2.0, axis=0, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/equal_up_to_scale", "jensenshannon", dtype, [1.0, 3.0, 4.0],
                  [2.0, 6.0, 8.0], base=None, axis=0, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/broadcast_q_row", "jensenshannon", dtype,
                  rng.uniform(0.05, 2.0, (4, 3)), rng.uniform(0.05, 2.0, (3,)), base=None, axis=-1, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/broadcast_q_1x3", "jensenshannon", dtype,
                  rng.uniform(0.05, 2.0, (4, 3)), rng.uniform(0.05, 2.0, (1, 3)), base=2.0, axis=1, keepdims=True)
        info_case(fam, f"jensenshannon/{dtype}/large_row", "jensenshannon", dtype, rng.uniform(0.0, 1.0, (3, 40)),
                  rng.uniform(0.0, 1.0, (3, 40)), base=None, axis=1, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/empty_axis", "jensenshannon", dtype, np.zeros((0, 3)),
                  np.zeros((0, 3)), base=None, axis=0, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/error_shapes", "jensenshannon", dtype, np.ones((4, 3)),
                  np.ones((4, 2)), base=None, axis=-1, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/error_axis", "jensenshannon", dtype, np.ones((4, 3)),
                  np.ones((4, 3)), base=None, axis=2, keepdims=False)
        info_case(fam, f"jensenshannon/{dtype}/error_axis_of_q", "jensenshannon", dtype, np.ones((4, 3)),
                  np.ones(3), base=None, axis=1, keepdims=False,
                  note="SciPy normalizes q along axis 1 of its own (1-D) shape before broadcasting")
    return fam


# --------------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------------


def build() -> dict[str, dict]:
    fams = {
        "softmax": gen_softmax(),
        "nll_loss": gen_nll(),
        "cross_entropy": gen_cross_entropy(),
        "kl_div": gen_kl_div(),
        "binary_cross_entropy": gen_bce(),
        "binary_cross_entropy_with_logits": gen_bce_logits(),
    }
    add_seeds(fams["binary_cross_entropy"], fams["binary_cross_entropy_with_logits"], fams["kl_div"],
              fams["cross_entropy"])
    info = gen_info()
    if info is not None:
        fams["info"] = info
    return {name: fam.document() for name, fam in fams.items()}


def dumps(doc: dict) -> str:
    return fixture_schema.dumps({k: v for k, v in doc.items() if k != "cases"}, doc["cases"])


README_TEMPLATE = """\
# testdata/: PyTorch and SciPy reference fixtures

Every JSON file here is one fixture family in **one schema** (below), read by one case reader per language —
`crates/infoloss-conformance` (Rust) and `crates/infoloss-py/tests/conformance.py` (Python) — and run by every
front end through a thin adapter: core Rust (`crates/infoloss/tests/fixtures.rs`), candle
(`crates/infoloss-candle/tests/fixtures.rs`), the command line on `.npy` files
(`crates/infoloss-cli/tests/conformance.rs`) and the NumPy API (`crates/infoloss-py/tests/test_fixtures.py`).
Each adapter runs every case of every file or counts it as not supported, and writes its tally to
`target/conformance/<front end>/`; `scripts/conformance_table.py` (the last step of `scripts/test.sh`) prints the
table of cases per front end.

**Do not edit the JSON files by hand**: change the generator and regenerate. The generator of each file is named
in its header: `scripts/gen_fixtures.py` writes the seven files of the table below (and this README),
`scripts/gen_fixtures_linear.py` writes `ce_extras.json` and `linear.json`, `scripts/gen_fixtures_distill.py`
writes `distill.json` and `uda.json`; all three write through `scripts/fixture_schema.py`.

## Regenerating

With torch 2.15, SciPy 1.17 and NumPy 2.4 installed (e.g. the test venv `scripts/test.sh` creates):

```sh
python scripts/gen_fixtures.py            # rewrites its files and this README
python scripts/gen_fixtures.py --check    # exits 1 if a file differs from a fresh run (also gen_fixtures_linear.py)
python scripts/gen_fixtures_linear.py
python scripts/gen_fixtures_distill.py
cargo test -p infoloss --test integration fixtures:: -- --nocapture   # the core adapter; prints counts and float32 notes
```

The output is deterministic: every file has its own fixed seed, torch runs single-threaded with deterministic
algorithms, and nothing depends on the time or the machine. Regenerating with the same versions reproduces the
files byte for byte.

## Recorded versions

{versions_table}

The same versions are in the header of every JSON file (`versions`).

## Files

{files_table}

## Schema

Each file is one JSON object; every case sits on its own line.

```text
{{
  "schema_version": 2, "family": "cross_entropy", "generator": "scripts/gen_fixtures.py", "seed": 1003,
  "versions": {{"torch": ..., ...}},
  "tolerances": {{"float32": {{"rtol": 1e-6, "atol": 1e-7}}, "float64": {{"rtol": 1e-12, "atol": 1e-12}}}},
  "count": <number of cases>,
  "cases": [ <case>, ... ]
}}
```

`versions` records the versions the values come from (torch in every file; SciPy, NumPy and Python where the
generator used them); `seed` is present where the generator has one seed per file. `tolerances` are the file's
(`distill.json` and `uda.json` compare float64 at atol 1e-13, every other file at 1e-12).

A **case**:

| field | meaning |
|---|---|
| `name` | unique within the file |
| `function` | the function it exercises (tables below); the adapters dispatch on it |
| `dtype` | `"float32"` or `"float64"`: the element type of every float array of the case |
| `note` | optional: why the case exists / where its numbers come from |
| `inputs` | named array records: the arguments. `input` and `target` for the losses, the softmax family and the information measures (`p`, `q`); `ori`/`aug` (UDA); `student`, `teacher`, `labels`, `topk_indices`, `topk_logprobs`, `dense_teacher` (distillation); `hidden`, `weight`, `bias`, `targets`, `class_weight`, `student_hidden`, … (the fused linear losses). An absent or null input is `None` |
| `options` | the Rust option names and values: `weight`, `pos_weight` (array records or `null`), `ignore_index`, `reduction` (`"none"`, `"mean"`, `"sum"`, `"batchmean"`), `label_smoothing`, `log_target`, `dim`, `base` (number or `null`), `axis`, `keepdims`, `lse_square_scale`, `softcap`, `temperature`, `t2_scaling`, `divergence`, `beta`, `alpha`, `normalizer`, `add_tail`, `teacher_topk` (`{{"k", "add_tail"}}`), `sharpen`, `confidence_threshold`, `normalize` |
| `grad_output` | array record: the upstream gradient of the expected gradients. 0-d for reduced losses (passed as `GradOutput::Scalar`), of the output's shape otherwise. `null`: the one-call `*_with_grad` gradient (upstream 1; the information measures' adapters pass `p`, as the values were generated) |
| `expected` | named array records: `output` (the forward result; the loss), `grad_input` (gradient with respect to the first argument for `grad_output`), `grad_target` where the function has one; further results by name: `z_loss`, `lse`, `token_accuracy`, `grad_hidden`, `grad_weight`, `grad_bias`, `row_kl`, `mask`, `kept`, `grad_input_unit` (UDA's gradient for upstream 1) |
| `error`, `error_type`, `message` | instead of `grad_output`/`expected`: the reference library rejects the input; `message` is its first line (e.g. `Target 5 is out of bounds.`). Every entry point must fail |
| `f32_reference` | float32 cases only, optional: `{{field: [[flat index, exact, slack], ...]}}`, see "float32 rounding" below |
| `also_expected` | optional: `[{{"source", "rtol", "atol", "expected": {{field: record}}}}]`, further values every result of that field must also match at their own tolerance: PyTorch's own float32 result of the distillation and UDA cases (whose `expected` is the exact value), torch's `F.linear_cross_entropy` in the float64 `linear.json` cases |
| `chunk_sizes` | optional (fused linear losses): run once per chunk size, then with the automatic one |

An **array record** is `{{"shape": [...], "data": [...]}}` with the data flat in row-major order (`shape: []` is a
0-d array with one element; a zero in the shape means no data). Class-index arrays add `"dtype": "int64"`.

**Numbers.** Floats are JSON numbers holding the exact value: Python's `repr` of the double, which round-trips;
a float32 value is written as the double it converts to exactly (`float(np.float32(v))`), so parsing it as a
double and rounding to float32 gives back the very same float32. Non-finite values are the strings `"nan"`,
`"inf"`, `"-inf"`. (The Rust reader does not let serde_json parse floats: without its `float_roundtrip` feature
that parser can be one ulp off, so it quotes every number token and converts it with Rust's correctly rounded
`str::parse::<f64>`.)

## Functions and where the numbers come from

| `function` | Rust API | reference |
|---|---|---|
| `logsumexp` | `logsumexp(x, dim)`, `logsumexp_backward(x, g, dim)` | `torch.logsumexp(x, dim)` + autograd |
| `log_softmax` | `log_softmax(x, dim)`, `log_softmax_backward(y, g, dim)` (from the output `y`) | `F.log_softmax` + autograd |
| `softmax` | `softmax(x, dim)`, `softmax_backward(s, g, dim)` (from the output `s`) | `F.softmax` + autograd |
| `nll_loss` | `nll_loss`, `nll_loss_backward`, `nll_loss_with_grad` with `NllOptions` | `F.nll_loss` + autograd |
| `cross_entropy` | `cross_entropy[_backward,_with_grad]`, class-index targets | `F.cross_entropy` + autograd |
| `cross_entropy_probs` | `cross_entropy_probs[_backward,_backward_target,_with_grad]` | `F.cross_entropy` with a float target of the input's shape |
| `kl_div` | `kl_div[_backward,_backward_target,_with_grad]` with `KlDivOptions` | `F.kl_div` + autograd (input and target) |
| `binary_cross_entropy` | `binary_cross_entropy[_backward,_backward_target,_with_grad]` | `F.binary_cross_entropy` + autograd |
| `binary_cross_entropy_with_logits` | `binary_cross_entropy_with_logits[_backward,_backward_target,_with_grad]` | `F.binary_cross_entropy_with_logits` + autograd |
| `entr` | `entr`, `entr_backward` | `scipy.special.entr`; gradient: autograd of `torch.special.entr` |
| `self_information` | `self_information`, `info::self_information_backward` | `-np.log(p) / np.log(base)`; gradient: autograd of `-torch.log(p) / ln(base)` |
| `rel_entr` | `rel_entr`, `rel_entr_backward` | `scipy.special.rel_entr` (broadcasting) |
| `entropy` | `entropy`, `entropy_backward` (with or without `qk`) | `scipy.stats.entropy(pk, qk, base, axis)` |
| `shannon_cross_entropy` | `shannon_cross_entropy`, `info::shannon_cross_entropy_backward` | `entropy(pk) + entropy(pk, qk)` (the SciPy docs' identity), with pk broadcast against qk first as `entropy(pk, qk)` does |
| `jensenshannon` | `jensenshannon`, `jensenshannon_backward` | `scipy.spatial.distance.jensenshannon(p, q, base, axis, keepdims)` |

**Losses** (first nine rows): torch computes the case in its dtype on CPU — forward, then
`torch.autograd.grad(output, [input, target], grad_output)` with `requires_grad` on the input and on float
targets. The runner also checks `_with_grad` against the expected output and against `_backward(GradOutput::one())`.

**Information measures**: the value is SciPy's. SciPy has no gradients; they come from torch autograd, in
float64, of the same formulas written in torch, with the conventions documented in
`crates/infoloss/src/info.rs` where the formulas are not differentiable: `entr`'s own autograd (+inf at 0);
`rel_entr` and the Jensen–Shannon term through small custom autograd functions giving the documented one-sided
values at their kinks (`rel_entr`: −inf·g at p = 0 < q, NaN at p = q = 0; JS: −inf at p̂ = 0 < q̂, ln 2 at
p̂ = q̂ = 0); the normalization x̂ = x/Σx with zero entries divided by a detached Σx (so their infinite partials do
not turn the whole row into NaN); NaN gradients for a distribution whose value is not finite; gradient 0 where
the JS distance is 0. The generator asserts that these torch formulas reproduce SciPy's values.
For float32 cases the inputs are rounded to float32, the expected **value** is SciPy's own float32 result, and
the expected **gradients** are the float64 ones rounded to float32.

## Coverage

Every function × every option × every reduction (`kl_div` including `batchmean`) × float32/float64, on: empty
batches `(0, C)`, a single row, 1-D inputs `(C)` with 0-d targets, N-d inputs `(N, C, d1, …)` (3-D, 4-D, 5-D),
0-d inputs where torch accepts them, softmax dims (every valid one, negative ones included), wide rows (17, 33
classes), `weight` of shape `(C,)` (class weights) and, for BCE/BCE-with-logits, full-shape, last-dimension
`(C,)`, `(N, 1)` and `(1,)` weights and `pos_weight` (`(C, 1, 1)` for a 4-D input too), `kl_div` targets
broadcast into the input (`(C,)`, `(N, 1)`, `(1, C)`, `()`) and an input broadcast into a larger target.
Edge values: zeros in probability targets, all targets ignored, `ignore_index` inside `[0, C)` and outside it
(`C + 3`, `-1`), label smoothing 0 / 0.1 / 1.0 combined with weights and `ignore_index`, ±inf and ±1e4 logits,
a −inf logit at the target class (and at an ignored target), NaN logits, zero and negative class weights, BCE
probabilities exactly 0 and 1 and 1e-8 / 1e-30 / 1e-45 / 1 − 1e-8, BCE-with-logits ±200 / ±1e4 / ±inf logits
and targets outside [0, 1], `kl_div` t = 0 with input −inf, negative and subnormal targets, −inf log-targets,
and every SciPy special case of `rel_entr`, `entr`, `entropy` (zero rows, negative entries, zero-length axes,
0-d inputs, bases), `jensenshannon` (disjoint supports, equal distributions, `keepdims`, broadcasting).
Errors: out-of-range class targets (too large, negative, in N-d and 1-D inputs), batch and shape mismatches,
BCE inputs outside [0, 1], NaN and inf, BCE targets outside [0, 1] and NaN, `label_smoothing = 1.5`,
probability targets with `ignore_index >= 0`, weights and `pos_weight` of the wrong length or enlarging the
output, `reduction = "batchmean"` outside `kl_div`, `dim`/`axis` out of range, SciPy's `base <= 0`, integer
targets of the input's shape. The six worked numbers of `shared/SEEDS.md` are the cases named `seed1_…` to
`seed6_…` (float32 and float64), plus `shannon_cross_entropy/*/seed6_one_hot`.

Not representable, so not covered: torch's dtype errors (`expected target dtype to be Long`, integer inputs) —
the Rust signatures make them impossible. Deliberately left out: SciPy's results for `base = 1` (inf/NaN) and
for `jensenshannon` with `0 < base <= 1` (NaN), which infoloss rejects with an error (documented in
`info.rs`).

## Comparison rules (one in each reader)

`|got − expected| ≤ atol + rtol·|expected|` at the file's tolerances for the case's dtype; NaN exactly where
expected; ±inf exactly (same sign) where expected; shapes equal; an element listed in `f32_reference` also passes
within `atol + rtol·|exact| + slack` of `exact`; every `also_expected` value must match at its own tolerance.
Error cases must fail from every entry point. A panic is a failure. On failure the test prints every failing case
(name, field, index, got, expected).

## float32 rounding (`f32_reference`)

A float32 result can only be as close to torch's float32 result as the two float32 computations' rounding
allows, and in formulas that cancel catastrophically — `g − Σg·s` in the softmax backward,
`g − exp(y)·Σg` in the log_softmax backward, `logσ(−x) − pw·logσ(x)` in the BCE-with-logits target gradient,
`(1 − ε)·w_y·(p − e_y) + (ε/C)·(p·Σw − w)` in label-smoothed cross-entropy, `Σ p̂·ln(p̂/m)` for two close
distributions in Jensen–Shannon — one float32 ulp of an operand of size ~1 is already more than
`atol = 1e-7`. Torch's own float32 result is then no more exact than ours: it even changes with the kernel
(softmax along a non-last dimension rounds differently from the same rows made contiguous). So that such cases
neither fail spuriously nor need a global loosening, the generator records, **per element**, for every float32
case:

- `exact`: the same case computed in float64 from the very same float32 inputs (torch in float64; for the
  information measures the float64 torch formulas);
- the float32 noise at that point: the largest float32-vs-float64 error of the formula (torch's float32 kernel;
  for softmax also the dimension-moved-last kernel; for the information measures also SciPy's float32
  arithmetic) at the case's inputs and at 6 random neighbours where every float input moved by at most one
  float32 ulp (0, ±1 and subnormals stay put), and the largest change of the float64 value over those
  neighbours (the element's sensitivity to one-ulp operand errors);
- `slack = 2 × that noise`.

`f32_reference: {{"grad_input": [[flat index, exact, slack], ...], ...}}` lists the elements whose slack
exceeds a tenth of the float32 tolerance, except where the float64 value jumps by more than `1e-3·|exact| +
1e-5` between neighbours (a discontinuity — ties between ±1e30 logits, a clamp — not a rounding limit) or the
float32 noise exceeds `0.25·|exact| + 1e-6`. A listed element passes if it is within tolerance of the float32
expectation **or** within `tolerance + slack` of `exact`; unlisted elements, and every float64 comparison, get
the plain tolerance. The float64 twin of every case checks the same semantics at 1e-12, so `f32_reference` only
absorbs rounding, never a wrong formula. The runner counts the elements that passed only through
`f32_reference` and lists them with `--nocapture`.

### Cases that need it (analysis)

With the implementations as of this writing, {via_count} float32 elements pass only through `f32_reference`
(every one within its allowance `atol + rtol·|exact| + slack`, the closest at 65 % of it):

- **softmax / log_softmax backward** (`softmax/float32/5/dim0`, `softmax/float32/2x3x4/dim-3`,
  `softmax/float32/2x3x2x2/dim0`, `softmax/float32/wide17/dim0`, `softmax/float32/wide33/dim0`,
  `log_softmax/float32/2x3x4/dim-2`, `log_softmax/float32/2x3x2x2/dim1`, `log_softmax/float32/2x3x2x2/dim2`):
  `g_i − Σg·s` with `|g| ≲ 2` and a result of 1e-3…1e-5. One ulp of `Σg·s` (1.2e-7 for a sum of size 1–2) is
  the whole error. Example: `softmax/float32/2x3x2x2/dim0` at `[1, 1, 1, 1]`: torch −2.9642642e-3, exact
  −2.9642656e-3, infoloss −2.9643830e-3 — which is exactly what torch itself returns for the same two rows when
  they are contiguous (`torch.softmax` of the 1-D row gives −2.964383e-3): torch's non-last-dimension kernel just
  rounds the sum differently. `softmax/float32/wide33/dim0` at `[2, 22]`: exact −8.0771e-6, torch −8.1062e-6
  (0.36 % off), infoloss −7.9870e-6 (1.1 % off, 9.0e-8 absolute).
- **log_softmax output near 0** (`log_softmax/float32/wide17/dim0` at `[0, 3]`): `(x − m) − ln Σexp(x − m)`
  with Σ ≈ 1.00124; torch sums in float32 (error ~1e-7 on Σ, 8.6e-5 relative on the result −1.2432e-3),
  infoloss sums in float64 and is exact to 1e-10 — it passes through `exact`, not through torch's value.
- **label-smoothed / weighted / probability-target cross-entropy gradients**
  (`cross_entropy/float32/3d/weight/ii_inside/ls0.1/sum`, `cross_entropy/float32/4d/weight/ii_default/ls0.0/sum`,
  `cross_entropy/float32/large_batch/none`, `cross_entropy_probs/float32/3d/weight/ls0.0/sum/unnormalized`,
  `cross_entropy_probs/float32/4d/noweight/ls0.0/sum/onehot`, `cross_entropy_probs/float32/large_batch/none`):
  differences of `p·Σw·t` and `w·t` terms of size ~1 giving results of 1e-2…1e-1; infoloss is within 1.5e-7 of
  `exact`, while torch's own float32 results differ from `exact` by up to 7e-7.
- **BCE-with-logits target gradient** (`binary_cross_entropy_with_logits/float32/batch/full/pw_full/sum` at
  `[3, 3]`): `(logσ(−x) − pw·logσ(x))·g·w` with logσ(−x) = −1.0293 and pw·logσ(x) = −1.0454 (x = 0.587,
  pw = 2.365): the difference 0.0161 loses 6 bits. infoloss 3.0532334e-2, torch 3.0532563e-2, exact
  3.0532595e-2; |got − exact| = 2.6e-7 is about one float32 ulp of logσ(−x) times g·w ≈ 1.9.
- **Information measures** (`jensenshannon/float32/…` — especially `2x3x4/axis-3/keepdims_True/base_2.0` and
  `2x3x4/axis2/keepdims_False/base_None` —, `entropy_rel/float32/…`, `shannon_cross_entropy/float32/…`): the
  Jensen–Shannon divergence of two close distributions (~5e-7 here) is a sum of terms `p̂·ln(p̂/m)` whose ratio
  `p̂/m` is within 1e-3 of 1; one float32 rounding of that ratio (6e-8) is already ~10 % of the divergence, so
  the float32 distance (its square root) is only good to a few percent: for `[0, 2, 0]` of the first case SciPy
  in float32 gives 7.1783e-4, infoloss 7.1781e-4, the exact value is 6.8722e-4; the gradients divide by
  `4·JS` and inherit the error (up to 4 %). Gradients that are exactly 0 by symmetry (an input broadcast along
  the axis) come out as ±1e-7…4e-7 in float32. These elements are within `slack` of `exact`; they are
  rounding, not semantics (the float64 twins match SciPy to 1e-12).
"""


def write_readme(docs: dict, texts: dict, check: bool) -> bool:
    vers = versions()
    versions_table = "| package | version |\n|---|---|\n" + "\n".join(f"| {k} | `{v}` |" for k, v in vers.items())
    rows = ["| file | cases | float32 / float64 | error cases | with `f32_reference` | size |",
            "|---|---|---|---|---|---|"]
    total = 0
    for name, doc in docs.items():
        cases = doc["cases"]
        total += len(cases)
        n32 = sum(1 for c in cases if c["dtype"] == "float32")
        nerr = sum(1 for c in cases if c.get("error"))
        nref = sum(1 for c in cases if "f32_reference" in c)
        rows.append(f"| `{name}.json` | {len(cases)} | {n32} / {len(cases) - n32} | {nerr} | {nref} | "
                    f"{len(texts[name]) / 1024:.0f} KiB |")
    size = sum(len(t) for t in texts.values())
    rows.append(f"| **total** | **{total}** | | | | {size / 1024 / 1024:.1f} MiB |")
    text = README_TEMPLATE.format(versions_table=versions_table, files_table="\n".join(rows), via_count=VIA_COUNT)
    path = OUT / "README.md"
    if check:
        return path.exists() and path.read_text() == text
    path.write_text(text)
    return True


# float32 elements that passed only through f32_reference in the last full run of the runner (documented above)
VIA_COUNT = 70


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if the files on disk differ from a fresh run")
    args = ap.parse_args()
    docs = build()
    OUT.mkdir(exist_ok=True)
    total = 0
    bad = []
    texts = {name: dumps(doc) for name, doc in docs.items()}
    if not write_readme(docs, texts, args.check):
        bad.append("README.md")
    for name, doc in docs.items():
        text = texts[name]
        path = OUT / f"{name}.json"
        total += doc["count"]
        if args.check:
            if not path.exists() or path.read_text() != text:
                bad.append(path.name)
        else:
            path.write_text(text)
        n_err = sum(1 for c in doc["cases"] if c.get("error"))
        print(f"{path.name:42s} {doc['count']:5d} cases ({n_err} error cases), {len(text) / 1024:8.1f} KiB")
    print(f"total {total} cases; versions {versions()}")
    if bad:
        print("out of date:", ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
