"""The type stubs are current: every public function of ``infoloss`` and ``infoloss.torch`` appears in
``__init__.pyi`` / ``torch.pyi`` with the runtime's parameters (names, kinds, which have defaults, and the default
values), every stub function exists at runtime, and the private extension matches ``_infoloss.pyi``.

``infoloss.torch`` is compared through its source (ast), so this runs without torch."""

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


def stub_classes(path: Path):
    """class name -> its annotated fields, in order (the stubs' NamedTuples)."""
    tree = ast.parse(path.read_text())
    return {
        node.name: [f.target.id for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)]
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


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


def test_init_stub_is_current():
    stubs = stub_functions(PKG / "__init__.pyi")
    classes = stub_classes(PKG / "__init__.pyi")
    public = set(infoloss.__all__)
    declared = set(stubs) | set(classes)
    assert public == declared, (
        f"missing in the stub: {sorted(public - declared)}; not public: {sorted(declared - public)}"
    )
    problems = []
    for name in sorted(public):
        obj = getattr(infoloss, name)
        if name in classes:
            # the result types are NamedTuples: the stub lists the same fields in the same order
            if list(getattr(obj, "_fields", ())) != classes[name]:
                problems.append(f"{name}: stub fields {classes[name]} != runtime {list(getattr(obj, '_fields', ()))}")
            continue
        problems += compare(name, runtime_params(obj), stubs[name])
    assert not problems, "\n".join(problems)


def test_torch_stub_is_current():
    source = ast.parse((PKG / "torch.py").read_text())
    runtime = {n.name: n for n in source.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    all_node = next(
        n for n in source.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
    )
    declared = set(ast.literal_eval(all_node.value))
    assert declared == set(runtime), "infoloss.torch.__all__ and its public functions differ"
    stubs = stub_functions(PKG / "torch.pyi")
    assert set(stubs) == set(runtime)
    problems = []
    for name, fn in runtime.items():
        problems += compare(name, ast_params(fn), stubs[name])
    assert not problems, "\n".join(problems)


def test_extension_stub_is_current():
    stubs = stub_functions(PKG / "_infoloss.pyi")
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
