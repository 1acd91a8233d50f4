"""Types: the public API is annotated inline (``py.typed``, no ``.pyi`` beside the pure-Python modules to drift from
them): every public function of ``infoloss`` and ``infoloss.torch`` annotates every parameter and its result. The
compiled extension's stub ``_infoloss.pyi`` matches the extension (names, kinds, which have defaults, and the default
values), and every stub function exists at runtime.

``infoloss.torch`` is read through its source (ast), so this runs without torch."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import infoloss
import infoloss._infoloss as _C

PKG = Path(infoloss.__file__).resolve().parent
KINDS = {
    "posonly": inspect.Parameter.POSITIONAL_ONLY,
    "args": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "vararg": inspect.Parameter.VAR_POSITIONAL,
    "kwonly": inspect.Parameter.KEYWORD_ONLY,
    "kwarg": inspect.Parameter.VAR_KEYWORD,
}
NO_DEFAULT = object()
UNKNOWN = object()  # `...` in a stub, or a non-literal default


def _default(node):
    if node is None:
        return NO_DEFAULT
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return UNKNOWN
    try:
        return ast.literal_eval(node)
    except ValueError:
        return UNKNOWN


def ast_params(fn: ast.FunctionDef):
    """[(name, kind, default)] of a function definition."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (p, d) in enumerate(zip(positional, defaults)):
        kind = KINDS["posonly"] if i < len(a.posonlyargs) else KINDS["args"]
        out.append((p.arg, kind, _default(d)))
    if a.vararg:
        out.append((a.vararg.arg, KINDS["vararg"], NO_DEFAULT))
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((p.arg, KINDS["kwonly"], _default(d)))
    if a.kwarg:
        out.append((a.kwarg.arg, KINDS["kwarg"], NO_DEFAULT))
    return out


def runtime_params(f):
    return [
        (p.name, p.kind, NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(f).parameters.values()
    ]


def stub_functions(path: Path):
    """name -> list of definitions (several for @overload)."""
    tree = ast.parse(path.read_text())
    defs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs.setdefault(node.name, []).append(node)
    return defs


def compare(name, runtime, stubs):
    problems = []
    for stub in stubs:
        sp = ast_params(stub)
        if [(n, k) for n, k, _ in sp] != [(n, k) for n, k, _ in runtime]:
            problems.append(f"{name}: stub parameters {[(n, k.name) for n, k, _ in sp]} "
                            f"!= runtime {[(n, k.name) for n, k, _ in runtime]}")
            continue
        for (n, _, sd), (_, _, rd) in zip(sp, runtime):
            if (sd is NO_DEFAULT) != (rd is NO_DEFAULT):
                # an overload may make a defaulted argument required (Literal[True] = no default)
                if not (len(stubs) > 1 and sd is NO_DEFAULT):
                    problems.append(f"{name}: parameter {n} default presence differs")
            elif sd is not UNKNOWN and rd is not UNKNOWN and sd is not NO_DEFAULT and sd != rd:
                problems.append(f"{name}: parameter {n} default {sd!r} in the stub, {rd!r} at runtime")
    return problems


def _unannotated(name, params, returns):
    """What a function ``name`` leaves unannotated: ``params`` are ``(name, annotation or None)``."""
    problems = [f"{name}: parameter {p} has no annotation" for p, ann in params if ann is None]
    if returns is None:
        problems.append(f"{name}: no return annotation")
    return problems


def test_numpy_api_is_annotated():
    problems = []
    for name in sorted(infoloss.__all__):
        obj = getattr(infoloss, name)
        if not inspect.isfunction(obj):
            assert isinstance(obj, type) and getattr(obj, "_fields", None), f"{name}: neither a function nor a NamedTuple"
            continue
        sig = inspect.signature(obj)
        empty = inspect.Parameter.empty
        params = [(p.name, None if p.annotation is empty else p.annotation) for p in sig.parameters.values()]
        problems += _unannotated(name, params, None if sig.return_annotation is empty else sig.return_annotation)
    assert not problems, "\n".join(problems)


def test_torch_api_is_annotated():
    source = ast.parse((PKG / "torch.py").read_text())
    runtime = {n.name: n for n in source.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    all_node = next(
        n for n in source.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
    )
    declared = set(ast.literal_eval(all_node.value))
    assert declared == set(runtime), "infoloss.torch.__all__ and its public functions differ"
    problems = []
    for name, fn in runtime.items():
        a = fn.args
        args = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x is not None]
        problems += _unannotated(name, [(p.arg, p.annotation) for p in args], fn.returns)
    assert not problems, "\n".join(problems)


def test_no_stub_shadows_the_inline_annotations():
    # a type checker reads a .pyi instead of the .py beside it: a stale copy would hide the real signatures
    assert sorted(p.name for p in PKG.glob("*.pyi")) == ["_infoloss.pyi"]


def _extension_stubs():
    """name -> [definition] of ``_infoloss.pyi``; a name annotated with a Protocol class (``cross_entropy: _Loss``)
    stands for that class's ``__call__`` without ``self``."""
    tree = ast.parse((PKG / "_infoloss.pyi").read_text())
    defs = stub_functions(PKG / "_infoloss.pyi")
    # classes without `__call__` are the handles the extension's functions return (`_CacheWriter`, ...)
    calls = {n.name: [f for f in n.body if isinstance(f, ast.FunctionDef) and f.name == "__call__"] for n in tree.body
             if isinstance(n, ast.ClassDef)}
    protocols = {name: fs[0] for name, fs in calls.items() if fs}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Name) and node.annotation.id in protocols:
            call = protocols[node.annotation.id]
            fn = ast.FunctionDef(name=node.target.id, args=ast.arguments(
                posonlyargs=[], args=call.args.args[1:], vararg=call.args.vararg, kwonlyargs=call.args.kwonlyargs,
                kw_defaults=call.args.kw_defaults, kwarg=call.args.kwarg, defaults=call.args.defaults,
            ), body=[], decorator_list=[], returns=call.returns)
            defs.setdefault(node.target.id, []).append(fn)
    return defs


def test_extension_stub_is_current():
    stubs = _extension_stubs()
    public = {n for n in dir(_C) if callable(getattr(_C, n)) and not n.startswith("__")}
    assert public == set(stubs), (sorted(public - set(stubs)), sorted(set(stubs) - public))
    problems = []
    for name in sorted(public):
        try:
            runtime = runtime_params(getattr(_C, name))
        except (ValueError, TypeError):  # pragma: no cover - a builtin without a text signature
            pytest.fail(f"{name} has no signature")
        problems += compare(name, runtime, stubs[name])
    assert not problems, "\n".join(problems)


def test_py_typed_marker_is_shipped():
    assert (PKG / "py.typed").exists()
