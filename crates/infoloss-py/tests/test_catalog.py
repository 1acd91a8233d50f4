"""The Python front ends follow the core's option catalog (``infoloss::options::catalog()``, seen here as
``infoloss._infoloss._catalog()``): every public function of a loss, in ``infoloss`` and ``infoloss.torch``, takes
every option of the catalog under its name with the catalog's default, and takes nothing else but its arrays and the
front-end arguments listed below.

The functions spell PyTorch's parameters and take the other options of the catalog through
``_common.catalog_options``, so an option added to a loss in the core reaches every signature with no Python edit;
this test checks that it does."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import infoloss
import infoloss._infoloss as _C

PKG = Path(infoloss.__file__).resolve().parent
CATALOG = {loss["name"]: loss for loss in _C._catalog()}

#: The Python functions of a loss: ``name`` with these suffixes (the in-place one is required when the catalog says
#: the loss has one).
SUFFIXES = ("", "_with_grad", "_with_grad_in_place", "_loss", "_backward")
#: Losses the Python API serves under another name (``cross_entropy`` takes class indices or probabilities).
PY_NAME = {"cross_entropy_probs": "cross_entropy"}

#: What a function takes besides the catalog's options: its arrays and arguments of the front end, not of the loss.
NOT_OPTIONS = {
    # PyTorch's deprecated reduction arguments, mapped to `reduction` by the Python layer
    "*": {"size_average", "reduce", "grad_output", "return_target_grad"},
    "cross_entropy": {"input", "target"},
    "cross_entropy_probs": {"input", "target"},
    "nll_loss": {"input", "target"},
    "kl_div": {"input", "target"},
    "binary_cross_entropy": {"input", "target"},
    "binary_cross_entropy_with_logits": {"input", "target"},
    # SciPy's nan_policy and keepdims are handled in Python around the core's measure
    "entropy": {"pk", "qk", "nan_policy", "keepdims"},
    "shannon_cross_entropy": {"pk", "qk", "keepdims"},
    "jensenshannon": {"p", "q"},
    "distill": {"student_logits", "teacher_logits", "labels"},
    # the sparse teacher: SparseTeacher { indices, logprobs, add_tail }
    "distill_topk": {"student_logits", "topk_indices", "topk_logprobs", "labels", "add_tail"},
    "uda_consistency": {"ori_logits", "aug_logits"},
    "cross_entropy_extras": {"input", "target"},
    # `options`: torch's nn.LinearCrossEntropyOptions, accepted by infoloss.torch for compatibility
    "linear_cross_entropy": {"input", "linear_weight", "target", "linear_bias", "options"},
    # the linear heads (LinearHead) and the top-k teacher (TeacherTopK { k, add_tail })
    "linear_distill": {
        "student_hidden", "student_weight", "teacher_hidden", "teacher_weight", "labels", "student_bias",
        "teacher_bias", "teacher_topk", "add_tail",
    },
    # the student's head and the stored teacher (SparseTeacher)
    "linear_distill_topk": {
        "student_hidden", "student_weight", "topk_indices", "topk_logprobs", "labels", "student_bias", "add_tail",
    },
}

#: Catalog options a function leaves out on purpose: (function, option) -> why.
LEFT_OUT = {
    # the forward-only fused loss returns the loss alone; the lse and accuracy come with the gradients
    ("linear_cross_entropy", "return_lse"): "returns the loss only",
    ("linear_cross_entropy", "return_token_accuracy"): "returns the loss only",
    ("torch.linear_cross_entropy", "return_lse"): "returns the loss only",
    ("torch.linear_cross_entropy", "return_token_accuracy"): "returns the loss only",
}

#: Defaults a function spells its own way, as the PyTorch function it replaces does: (function, option) -> default.
SPELLED = {
    # F.linear_cross_entropy spells ignore_index's -100 as None
    ("torch.linear_cross_entropy", "ignore_index"): None,
}

EMPTY = object()


def numpy_functions():
    """(qualified name, loss, {param: default}) of every public NumPy-API function of a catalog loss."""
    for loss in CATALOG:
        base = PY_NAME.get(loss, loss)
        for suffix in SUFFIXES:
            name = base + suffix
            if name in infoloss.__all__:
                params = inspect.signature(getattr(infoloss, name)).parameters.values()
                yield name, loss, {
                    p.name: EMPTY if p.default is inspect.Parameter.empty else p.default for p in params
                }


def _ast_default(node):
    if node is None:
        return EMPTY
    try:
        return ast.literal_eval(node)
    except ValueError:
        return EMPTY


def torch_functions():
    """The same for ``infoloss.torch``: its runtime signatures, or without torch its source (ast), which holds the
    parameters the functions spell but not the catalog options they take by name."""
    try:
        import infoloss.torch as itorch
    except ImportError:  # pragma: no cover - the test suite runs with torch (INFOLOSS_REQUIRE_TORCH)
        itorch = None
    tree = ast.parse((PKG / "torch.py").read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for loss in CATALOG:
        base = PY_NAME.get(loss, loss)
        fn = defs.get(base)
        if fn is None:
            continue
        if itorch is not None:
            params = inspect.signature(getattr(itorch, base)).parameters.values()
            yield "torch." + base, loss, {
                p.name: EMPTY if p.default is inspect.Parameter.empty else p.default for p in params
            }
            continue
        a = fn.args
        positional = a.posonlyargs + a.args
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        params = {p.arg: _ast_default(d) for p, d in zip(positional, defaults)}
        params.update({p.arg: _ast_default(d) for p, d in zip(a.kwonlyargs, a.kw_defaults)})
        yield "torch." + base, loss, params


ALL = list(numpy_functions()) + list(torch_functions())


def test_every_loss_has_a_python_function():
    served = {loss for _, loss, _ in ALL}
    missing = set(CATALOG) - served
    assert served <= set(CATALOG) and not missing, f"catalog losses without a Python function: {sorted(missing)}"


@pytest.mark.parametrize("loss", sorted(n for n, l in CATALOG.items() if l["in_place"]))
def test_in_place_flag_matches_the_api(loss):
    name = PY_NAME.get(loss, loss) + "_with_grad_in_place"
    assert name in infoloss.__all__, f"the catalog says {loss} has an in-place variant: infoloss.{name} is missing"


def test_no_in_place_function_outside_the_catalog():
    in_place = {n for n, l in CATALOG.items() if l["in_place"]} | {"cross_entropy"}
    for name in infoloss.__all__:
        if name.endswith("_with_grad_in_place"):
            assert name[: -len("_with_grad_in_place")] in in_place, f"{name}: the catalog says no in-place variant"


@pytest.mark.parametrize("fn,loss,params", ALL, ids=[f"{f}[{l}]" for f, l, _ in ALL])
def test_signature_follows_the_catalog(fn, loss, params):
    problems = []
    options = {o["name"]: o for o in CATALOG[loss]["options"]}
    for name, spec in options.items():
        if (fn, name) in LEFT_OUT:
            continue
        if name not in params:
            problems.append(f"{fn}: lacks the option {name} ({spec['type']} = {spec['default']!r}: {spec['doc']})")
            continue
        default = params[name]
        if (fn, name) in SPELLED and default == SPELLED[fn, name]:
            continue
        if default is EMPTY:
            problems.append(f"{fn}: option {name} has no default; the catalog's is {spec['default']!r}")
        elif default != spec["default"] or type(default) is not type(spec["default"]):
            problems.append(f"{fn}: option {name} defaults to {default!r}; the catalog's default is {spec['default']!r}")
    allowed = NOT_OPTIONS["*"] | NOT_OPTIONS[loss]
    extra = sorted(set(params) - set(options) - allowed)
    if extra:
        problems.append(f"{fn}: parameters {extra} are neither options of {CATALOG[loss]['options_type']} in the "
                        "catalog nor listed in NOT_OPTIONS")
    assert not problems, "\n".join(problems)


def test_choices_are_the_catalogs():
    # the Python layer validates choices with the catalog's spellings before calling the core
    from infoloss import _distill

    distill = {o["name"]: o for o in CATALOG["distill"]["options"]}
    assert _distill.DIVERGENCES == tuple(distill["divergence"]["choices"])
    uda = {o["name"]: o for o in CATALOG["uda_consistency"]["options"]}
    assert (_distill.SHARPEN, _distill.UDA_NORMALIZE) == (tuple(uda["sharpen"]["choices"]),
                                                           tuple(uda["normalize"]["choices"]))


def test_ignore_index_is_declared_once():
    # the default the class-index losses share lives in the catalog alone
    for loss in CATALOG.values():
        for o in loss["options"]:
            if o["name"] == "ignore_index":
                assert o["default"] == -100 and o["type"] == "int", loss["name"]


def test_catalog_describes_every_option():
    for loss in CATALOG.values():
        assert loss["pytorch"] and loss["grads"], loss["name"]
        for o in loss["options"]:
            assert o["doc"], f"{loss['name']}.{o['name']} has no doc line"
            if o["choices"] is not None:
                assert o["default"] in o["choices"], f"{loss['name']}.{o['name']}"
