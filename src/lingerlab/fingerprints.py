"""Stable hashes of data, models and callables for cache keys: :func:`fingerprint`."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import struct
import textwrap
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from .codehash import _in_pkg, _parse, _referenced_modules, code_hash

__all__ = ["fingerprint"]

_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)


def _qualname(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    return f"{getattr(obj, '__module__', None) or ''}:{name}"


@functools.lru_cache(maxsize=None)
def _code_digest(code: types.CodeType) -> str:
    """Bytecode identity of a code object without line numbers: ``co_code``, names, constants (recursively)."""
    h = hashlib.sha256(b"co")
    h.update(code.co_code)
    h.update("\0".join(code.co_names + code.co_varnames + code.co_freevars + code.co_cellvars).encode())
    h.update(struct.pack("<4q", code.co_argcount, code.co_kwonlyargcount, code.co_posonlyargcount, code.co_flags))
    for c in code.co_consts:
        h.update(_code_digest(c).encode() if isinstance(c, types.CodeType) else _const_digest(c))
    return h.hexdigest()


def _const_digest(c: Any) -> bytes:
    if c is Ellipsis:
        return b"<...>"
    if isinstance(c, (tuple, frozenset)):
        parts = [_const_digest(x) for x in c]
        return b"(" + b",".join(sorted(parts) if isinstance(c, frozenset) else parts) + b")"
    return bytes.fromhex(fingerprint(c, length=64))


def _source_digest(obj: Any) -> str | None:
    """The hash of ``obj``'s source without docstrings, None when its source cannot be read."""
    try:
        return _parse(textwrap.dedent(inspect.getsource(obj)))[1]
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None


def _function_source_digest(fn: types.FunctionType) -> str:
    """A function's source digest, else its bytecode; a lambda adds its bytecode (several lambdas
    may share one source line)."""
    digest = _source_digest(fn)
    if digest is None:
        return "co:" + _code_digest(fn.__code__)
    if fn.__name__ == "<lambda>":
        digest += ":" + _code_digest(fn.__code__)
    return "ast:" + digest


@functools.lru_cache(maxsize=None)
def _class_digest(cls: type) -> str:
    """A class outside ``lingerlab``: its source digest, else the bytecode of its functions."""
    digest = _source_digest(cls)
    if digest is not None:
        return "ast:" + digest
    h = hashlib.sha256(b"cls")
    for name, value in sorted(vars(cls).items()):
        func = getattr(value, "__func__", value)
        h.update(name.encode() + b"\0")
        if inspect.isfunction(func):
            h.update(_code_digest(func.__code__).encode())
    return "members:" + h.hexdigest()


class _Hasher:
    """Streams a type-tagged, length-prefixed encoding of an object into sha256 digests."""

    def __init__(self) -> None:
        self.active: dict[int, int] = {}  # id -> depth of the objects being hashed (cycles)
        self.path: list[str] = []

    @staticmethod
    def _w(h: Any, tag: bytes, data: bytes = b"") -> None:
        h.update(tag + struct.pack("<Q", len(data)) + data)

    def _sub(self, obj: Any) -> bytes:
        h = hashlib.sha256()
        self.feed(h, obj)
        return h.digest()

    def _at(self, h: Any, seg: str, obj: Any, *, instance: bool = False) -> None:
        self.path.append(seg)
        self.feed(h, obj, instance=instance)
        self.path.pop()

    def _fail(self, obj: Any) -> TypeError:
        where = "".join(self.path)
        return TypeError(
            f"cannot fingerprint an object of type {type(obj).__qualname__} "
            f"(module {type(obj).__module__}{', at parts' + where if where else ''}): "
            f"give it a cache_key attribute or pass plain data"
        )

    def feed(self, h: Any, obj: Any, *, instance: bool = False) -> None:  # noqa: C901 - one flat dispatch
        w = self._w
        if obj is None:
            return w(h, b"N")
        if isinstance(obj, (bool, np.bool_)):
            return w(h, b"B", b"1" if obj else b"0")
        if isinstance(obj, enum.Enum):
            return w(h, b"E", f"{_qualname(type(obj))}.{obj.name}".encode())
        if isinstance(obj, (int, np.integer)):
            return w(h, b"I", str(int(obj)).encode())
        if isinstance(obj, (float, np.floating)):
            return w(h, b"F", float(obj).hex().encode())
        if isinstance(obj, (complex, np.complexfloating)):
            c = complex(obj)
            return w(h, b"C", f"{c.real.hex()},{c.imag.hex()}".encode())
        if isinstance(obj, str):
            return w(h, b"S", obj.encode("utf-8", "surrogatepass"))
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return w(h, b"Y", bytes(obj))
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
            w(h, b"T", f"{tuple(t.shape)}{t.dtype}".encode())
            return w(h, b"t", t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                w(h, b"O", f"{obj.shape}".encode())
                return self._at(h, ".tolist()", obj.tolist())
            w(h, b"A", f"{obj.shape}{obj.dtype.str}".encode())
            return w(h, b"a", np.ascontiguousarray(obj).tobytes())
        if isinstance(obj, (torch.dtype, torch.device)):
            return w(h, b"D", f"{type(obj).__name__}:{obj}".encode())
        if isinstance(obj, np.dtype):
            return w(h, b"d", obj.str.encode() if not obj.fields else str(obj.descr).encode())
        if isinstance(obj, PurePath):
            return w(h, b"P", str(obj).encode("utf-8", "surrogatepass"))
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            return w(h, b"M", f"{name}:{code_hash(name) if _in_pkg(name) else ''}".encode())

        key = id(obj)
        if key in self.active:  # a cycle (a recursive closure, a self-referencing list): a back-reference
            return w(h, b"<", str(len(self.active) - self.active[key]).encode())
        self.active[key] = len(self.active)
        try:
            self._feed_compound(h, obj, instance)
        finally:
            del self.active[key]

    def _feed_compound(self, h: Any, obj: Any, instance: bool) -> None:  # noqa: C901
        w = self._w
        if isinstance(obj, Mapping):
            items = sorted(((self._sub(k), k) for k in obj), key=lambda kv: kv[0])
            w(h, b"{", str(len(items)).encode())
            for kd, k in items:
                w(h, b"k", kd)
                self._at(h, f"[{k!r}]" if isinstance(k, (str, int)) else "[...]", obj[k])
            return
        if isinstance(obj, (list, tuple)):
            w(h, b"[", str(len(obj)).encode())
            for i, v in enumerate(obj):
                self._at(h, f"[{i}]", v)
            return
        if isinstance(obj, (set, frozenset)):
            self.path.append("{...}")
            digests = sorted(self._sub(v) for v in obj)
            self.path.pop()
            w(h, b"s", str(len(digests)).encode())
            for d in digests:
                w(h, b"e", d)
            return
        if not isinstance(obj, type):
            ck = getattr(obj, "cache_key", None)
            if inspect.ismethod(ck) and ck.__self__ is obj:  # a method (Recipe.cache_key): its value
                ck = ck()
            if ck is not None:
                w(h, b"K", type(obj).__qualname__.encode())
                if _in_pkg(type(obj).__module__):  # a lingerlab class: its code too (no version numbers)
                    w(h, b"k", code_hash(type(obj).__module__).encode())
                return self._at(h, ".cache_key", ck)
        if isinstance(obj, torch.nn.Module):
            w(h, b"W")
            return self._at(h, ".state_dict()", obj.state_dict())
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            w(h, b"R", _qualname(type(obj)).encode())
            fields = dataclasses.fields(obj)
            w(h, b"r", str(len(fields)).encode())
            for f in fields:
                w(h, b"n", f.name.encode())
                self._at(h, f".{f.name}", getattr(obj, f.name))
            return
        if isinstance(obj, functools.partial):
            w(h, b"p")
            self._at(h, ".func", obj.func)
            self._at(h, ".args", obj.args)
            return self._at(h, ".keywords", obj.keywords or {})
        if inspect.isfunction(obj):
            return self._feed_function(h, obj)
        if inspect.ismethod(obj):
            w(h, b"m")
            self._at(h, ".__func__", obj.__func__)
            return self._at(h, ".__self__", obj.__self__, instance=True)
        if isinstance(obj, (classmethod, staticmethod)):
            w(h, b"x", type(obj).__name__.encode())
            return self._at(h, ".__func__", obj.__func__)
        if inspect.isclass(obj):
            return self._feed_class(h, obj)
        if isinstance(obj, _BUILTIN_CALLABLES):
            owner = getattr(obj, "__objclass__", None)
            where = _qualname(owner) if owner is not None else getattr(obj, "__module__", None) or ""
            w(h, b"b", f"{where}:{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}".encode())
            slf = getattr(obj, "__self__", None)
            if slf is not None and not isinstance(slf, types.ModuleType):
                self._at(h, ".__self__", slf, instance=True)
            return
        if isinstance(obj, np.ufunc):
            return w(h, b"u", obj.__name__.encode())
        if callable(obj) or instance:
            state = _instance_state(obj)
            if state is None:
                raise self._fail(obj)
            w(h, b"i")
            self._feed_class(h, type(obj))
            return self._at(h, ".__dict__", state)
        raise self._fail(obj)

    def _feed_function(self, h: Any, fn: types.FunctionType) -> None:
        mod = fn.__module__
        self._w(h, b"f", f"{mod}:{fn.__qualname__}".encode())
        if _in_pkg(mod):
            self._w(h, b"c", code_hash(mod).encode())
        else:
            self._w(h, b"c", _function_source_digest(fn).encode())
            refs = _referenced_modules(fn)
            if refs:
                self._w(h, b"r", code_hash(*sorted(refs)).encode())
        self._at(h, ".__defaults__", fn.__defaults__ or ())
        self._at(h, ".__kwdefaults__", fn.__kwdefaults__ or {})
        cells: list[Any] = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(("cell", cell.cell_contents))
            except ValueError:  # not yet assigned
                cells.append(("empty",))
        self._at(h, ".__closure__", cells)

    def _feed_class(self, h: Any, cls: type) -> None:
        mod = getattr(cls, "__module__", "") or ""
        self._w(h, b"c", _qualname(cls).encode())
        self._w(h, b"c", (code_hash(mod) if _in_pkg(mod) else _class_digest(cls)).encode())


def _instance_state(obj: Any) -> dict[str, Any] | None:
    """An instance's attributes (``__dict__`` and slots), or None when it has neither."""
    d = getattr(obj, "__dict__", None)
    state: dict[str, Any] | None = dict(d) if isinstance(d, dict) else None
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for s in [slots] if isinstance(slots, str) else slots:
            if s not in ("__dict__", "__weakref__") and hasattr(obj, s):
                state = {} if state is None else state
                state[s] = getattr(obj, s)
    return state


def fingerprint(*parts: Any, length: int = 16) -> str:
    """A stable hex hash of ``parts``: scalars, arrays, tensors, models (their weights), containers,
    dataclasses, objects with a ``cache_key`` and callables (their code and captured values). No
    ``repr`` fallback (it may hold a memory address): an unknown type raises ``TypeError``."""
    hasher = _Hasher()
    h = hashlib.sha256()
    for i, p in enumerate(parts):
        hasher._at(h, f"[{i}]", p)
    return h.hexdigest()[:length]
