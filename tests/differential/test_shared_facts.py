"""One source for the facts both backends share. The core exports its counter
keys, hook stages, plan fields with their defaults and nesting depth; they must
equal ``constants.py`` and ``reference.py``. Every public signature of
``reference.py`` must equal its line in ``_core.pyi``. On drift the failure
prints what to paste."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from exec_router import constants, reference

from ..backends import NATIVE

pytestmark = pytest.mark.skipif(NATIVE is None, reason="exec_router._core is not built")

STUB = Path(reference.__file__).with_name("_core.pyi")


def reference_plan_fields() -> tuple[tuple[str, Any], ...]:
    """``(name, default)`` of each reference plan field; a factory stands for its default."""
    return tuple(
        (f.name, f.default_factory if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(reference.ExecutionPlan)
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("COUNTER_KEYS", constants.COUNTER_KEYS),
        ("HOOK_STAGES", constants.HOOK_STAGES),
        ("MAX_DEPTH", constants.MAX_DEPTH),
        ("PLAN_FIELDS", reference_plan_fields()),
    ],
)
def test_the_core_exports_the_shared_facts(name: str, expected: Any) -> None:
    exported = getattr(NATIVE, name)
    assert exported == expected, (
        f"_core.{name} and the Python side differ. The core says:\n"
        f"    {name} = {exported!r}\n"
        f"the Python side says:\n    {name} = {expected!r}"
    )


def stub_signatures() -> dict[str, ast.FunctionDef]:
    """``Class.method`` -> its definition in ``_core.pyi``."""
    tree = ast.parse(STUB.read_text())
    out = {}
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef):
            for node in cls.body:
                if isinstance(node, ast.FunctionDef):
                    out[f"{cls.name}.{node.name}"] = node
    return out


def stub_params(node: ast.FunctionDef) -> list[tuple[str, str, str | None]]:
    """``(name, kind, default source)`` of each parameter, ``self``/``cls`` left out."""
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults))
    defaults += list(a.defaults)
    out = [
        (p.arg, "POSITIONAL_OR_KEYWORD", None if d is None else ast.unparse(d))
        for p, d in zip(positional, defaults, strict=True)
    ]
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", None))
    out += [
        (p.arg, "KEYWORD_ONLY", None if d is None else ast.unparse(d))
        for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
    ]
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD", None))
    return [p for p in out if p[0] not in ("self", "cls")]


def reference_params(fn: Any) -> list[tuple[str, str, str | None]]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.default is inspect.Parameter.empty:
            default = None
        elif repr(p.default) == "<factory>":  # a dataclass default_factory
            default = "..."
        else:
            default = repr(p.default)
        kind = p.kind.name if p.kind is not p.POSITIONAL_ONLY else "POSITIONAL_OR_KEYWORD"
        out.append((p.name, kind, default))
    return out


def paste(name: str, params: list[tuple[str, str, str | None]]) -> str:
    """The stub's parameter list for ``params``, as it should read."""
    parts, star = ["self"], False
    for pname, kind, default in params:
        if kind == "KEYWORD_ONLY" and not star:
            parts.append("*")
            star = True
        prefix = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(kind, "")
        parts.append(f"{prefix}{pname}" + ("" if default is None else f"={default}"))
    return f"def {name.split('.')[-1]}({', '.join(parts)}) -> ..."


def public_methods() -> list[tuple[str, Any]]:
    out = []
    for cls in (reference.ExecutionRouter, reference.ExecutionPlan, reference.WorkingOrder):
        for name, member in vars(cls).items():
            if name == "__init__":
                out.append((f"{cls.__name__}.__new__", member))
            elif not name.startswith("_") or name == "_observe_registry":
                fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if inspect.isfunction(fn):
                    out.append((f"{cls.__name__}.{name}", fn))
    return out


@pytest.mark.parametrize(
    ("name", "fn"), public_methods(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_public_signature_matches_the_stub(name: str, fn: Any) -> None:
    stubs = stub_signatures()
    want = reference_params(fn)
    assert name in stubs, f"_core.pyi lacks {name}; paste:\n    {paste(name, want)}"
    got = stub_params(stubs[name])
    assert got == want, (
        f"{name}: _core.pyi and reference.py differ.\n"
        f"  _core.pyi:    {paste(name, got)}\n"
        f"  reference.py: {paste(name, want)}\n"
        "Paste the reference.py line (with its annotations) into the stub, or fix reference.py."
    )
