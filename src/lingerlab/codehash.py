"""The identity of code for cache keys: :func:`code_hash` hashes ``lingerlab`` modules and the
``lingerlab`` modules they import, transitively, by their syntax trees without docstrings."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import types
from pathlib import Path
from typing import Any, Iterable


__all__ = ["code_hash"]

_PKG = __name__.rpartition(".")[0] or __name__  # "lingerlab"
_PKG_DIR = Path(__file__).resolve().parent  # where its modules live (no import needed)


def _in_pkg(name: str | None) -> bool:
    return isinstance(name, str) and (name == _PKG or name.startswith(_PKG + "."))


@functools.lru_cache(maxsize=None)
def _module_file(name: str) -> tuple[Path, bool] | None:
    """``(source file, is package)`` of the ``lingerlab`` module ``name``, or None if there is none."""
    if not _in_pkg(name):
        return None
    parts = name.split(".")[1:]
    base = _PKG_DIR.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


def _parse(source: str, filename: str = "<unknown>") -> tuple[ast.AST, str]:
    """``source``'s syntax tree without module, class and function docstrings, and its hash
    (formatting, comments and docstrings change neither)."""
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:]
    return tree, hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def _resolve_imports(name: str, is_pkg: bool, tree: ast.AST) -> set[str]:
    """The ``lingerlab`` modules that module ``name`` imports (anywhere in its body, functions included)."""
    out: set[str] = set()
    package = name.split(".") if is_pkg else name.split(".")[:-1]

    def add(mod: str, names: Iterable[str] = ()) -> None:
        if not _in_pkg(mod):
            return
        rest = [n for n in names if n != "*"]
        subs = [f"{mod}.{n}" for n in rest if _module_file(f"{mod}.{n}") is not None]
        out.update(subs)
        if len(subs) < len(rest) or not rest:  # a name that is no submodule comes from mod itself
            found = mod
            while found and _module_file(found) is None:  # e.g. a missing optional module: its package
                found = found.rpartition(".")[0]
            if found:
                out.add(found)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            up = node.level - 1  # packages above this module's own
            if node.level and up > len(package) - 1:
                continue  # above the top-level package
            parts = package[: len(package) - up] if node.level else []
            add(".".join(parts + ([node.module] if node.module else [])), [a.name for a in node.names])
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _in_pkg(node.value)
            and node.value != _PKG
            and _module_file(node.value) is not None
        ):
            out.add(node.value)  # importlib.import_module("lingerlab.worlds.shapes") registries
    out.discard(name)
    return out


@functools.lru_cache(maxsize=None)
def _module_info(name: str) -> tuple[str, frozenset[str]]:
    """``(AST digest, imported lingerlab modules)`` of one module (memoised for the process)."""
    found = _module_file(name)
    if found is None:
        raise ValueError(f"no module named {name!r} in the {_PKG} package ({_PKG_DIR})")
    path, is_pkg = found
    tree, digest = _parse(path.read_text(encoding="utf-8"), str(path))
    return digest, frozenset(_resolve_imports(name, is_pkg, tree))


@functools.lru_cache(maxsize=None)
def _closure(name: str) -> frozenset[str]:
    """``name`` and every ``lingerlab`` module it imports, transitively."""
    seen = {name}
    todo = [name]
    while todo:
        for dep in _module_info(todo.pop())[1]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return frozenset(seen)


def _target_module(target: Any) -> str | None:
    """The module name a ``code_hash`` target stands for (None: no module)."""
    if isinstance(target, types.ModuleType):
        return target.__name__
    if isinstance(target, str):
        return target
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # bound methods, classmethod/staticmethod objects
    if not (callable(target) or inspect.ismethoddescriptor(target)):
        raise TypeError(
            f"code_hash targets are modules, module names or functions/classes; got {type(target).__qualname__}"
        )
    mod = getattr(target, "__module__", None)
    if not isinstance(mod, str) and not inspect.isclass(target):
        mod = getattr(type(target), "__module__", None)  # a callable instance: its class's module
    return mod if isinstance(mod, str) else None


def code_hash(*targets: Any) -> str:
    """Hash (16 hex characters) of the ``lingerlab`` code behind ``targets``: modules, dotted module
    names or functions/classes/methods (their module), each with the closure of the ``lingerlab``
    modules it imports. Code outside ``lingerlab`` adds nothing. Memoised per process."""
    names: set[str] = set()
    for t in targets:
        mod = _target_module(t)
        if _in_pkg(mod):
            names |= _closure(mod)  # type: ignore[arg-type]
    return _hash_modules(frozenset(names))


@functools.lru_cache(maxsize=None)
def _hash_modules(names: frozenset[str]) -> str:
    h = hashlib.sha256(b"code-v1")
    for n in sorted(names):
        h.update(f"{n}\0{_module_info(n)[0]}\0".encode())
    return h.hexdigest()[:16]


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _code_objects(c)


def _referenced_modules(fn: Any, _seen: set[int] | None = None) -> set[str]:
    """``lingerlab`` modules a function outside ``lingerlab`` reaches through its global names and
    closure, following plain functions of its own module (a script's ``lambda: features.f(...)``
    is keyed by ``features``' code)."""
    seen = set() if _seen is None else _seen
    fn = getattr(fn, "__func__", fn)
    if not inspect.isfunction(fn):
        call = getattr(type(fn), "__call__", None)
        if not inspect.isfunction(call):
            return set()
        fn = call
    if id(fn) in seen:
        return set()
    seen.add(id(fn))
    out: set[str] = set()
    g = fn.__globals__
    values: list[Any] = [g[n] for code in _code_objects(fn.__code__) for n in code.co_names if n in g]
    for cell in fn.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    for v in values:
        if isinstance(v, types.ModuleType):
            mod = v.__name__
        elif inspect.isfunction(v) or inspect.isclass(v) or inspect.ismethod(v):
            mod = getattr(v, "__module__", None)
            if not _in_pkg(mod) and inspect.isfunction(v) and v.__globals__ is g:
                out |= _referenced_modules(v, seen)
        else:
            mod = getattr(type(v), "__module__", None)
        if _in_pkg(mod):
            out.add(mod)  # type: ignore[arg-type]
    return out


def _code_targets(compute: Any) -> list[Any]:
    """What ``compute``'s code identity is made of: its defining module (for a ``functools.partial``
    its ``.func``'s) and, outside ``lingerlab``, the ``lingerlab`` modules it references."""
    while isinstance(compute, functools.partial):
        compute = compute.func
    mod = _target_module(compute)
    targets: list[Any] = [mod] if mod else []
    if not _in_pkg(mod):
        targets.extend(sorted(_referenced_modules(compute)))
    return targets
