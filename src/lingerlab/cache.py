"""A small on-disk cache for stage outputs and checkpoints, keyed by a hash of their inputs AND code.

Entries are written atomically (temporary file in the same folder, fsync, then ``os.replace``), so
an interrupted run never leaves a half-written entry behind: the next call simply recomputes it.
The cache lives in ``$LINGERLAB_CACHE`` or, by default, ``~/.cache/lingerlab``.

An entry file is one header line, ``lingerlab-cache/2 <sha256 of the rest>``, then a ``torch.save``
of the value in a safe form (:func:`_encode`: tensors, lists, dicts and plain scalars only), read back
with ``torch.load(..., weights_only=True)``: loading an entry never runs code from the file. An
entry with another header (an older lingerlab's pickle), a wrong checksum (truncated, overwritten)
or that does not load is reported with a warning and recomputed, never unpickled with code.

The cache follows the code by itself: :func:`cached` keys every entry also by :func:`code_hash`
of the module that defined ``compute`` (that module plus every ``lingerlab`` module it imports,
transitively, docstrings and comments ignored), so editing the code that computes a result
invalidates it without a version number bumped by hand. :func:`fingerprint` hashes data, and
callables by their code and captured values; it never falls back to ``repr`` (which may hold a
memory address): an object it does not know raises ``TypeError``.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import importlib
import io
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch

from .codehash import _code_targets, code_hash  # noqa: F401
from .fingerprints import fingerprint  # noqa: F401

__all__ = [
    "cache_dir",
    "code_hash",
    "fingerprint",
    "cached",
    "StageCache",
    "CacheEntryError",
    "atomic_write_bytes",
    "save",
    "load",
]

T = TypeVar("T")


def cache_dir() -> Path:
    """The cache root: ``$LINGERLAB_CACHE`` if set, else ``~/.cache/lingerlab``."""
    root = os.environ.get("LINGERLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lingerlab")
    return Path(root)


# --------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------

_STALE_TMP_S = 3600.0  # a temporary file this old is left over from a killed write, not a live one


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over ``path``;
    on any error (KeyboardInterrupt included) the temporary file is removed. Temporary files of
    ``path`` left by a killed process (older than an hour) are removed by the next write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - old.stat().st_mtime > _STALE_TMP_S:
                old.unlink()
        except OSError:  # removed meanwhile by another writer
            pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_FORMAT = b"lingerlab-cache/2"  # an entry's header; another one (e.g. a pickle) is a miss, never read

# dataclasses an entry may hold, by qualified name (named, not imported: the code hash of every
# module that uses the cache stays independent of these modules)
_DATACLASSES = frozenset({"lingerlab.composites.Composites"})

_SCALARS = (type(None), bool, int, float, str, bytes)


class CacheEntryError(ValueError):
    """A cache entry that cannot be read: another format, corrupt, or not written by :func:`save`."""


def _encode(obj: Any) -> Any:
    """``obj`` as tensors, lists, str-keyed dicts and scalars, which ``weights_only`` loading accepts.

    Other types become tagged tuples ``(tag, ...)`` (a tuple itself is tagged ``"tuple"``, so every
    tuple in the result is a tag): numpy arrays and scalars (as tensors), pandas DataFrames and
    Series (column by column), ``pd.NA``, and the dataclasses of ``_DATACLASSES``. Anything else
    raises ``TypeError``.
    """
    t = type(obj)
    if t in _SCALARS or t is torch.Tensor or t is torch.nn.Parameter:
        return obj
    if t is list:
        return [_encode(v) for v in obj]
    if t is tuple:
        return ("tuple", [_encode(v) for v in obj])
    if t is dict or t is collections.OrderedDict:  # an OrderedDict: a state dict, with its _metadata
        if all(type(k) in _SCALARS for k in obj):
            return _map_values(obj, _encode)
        if t is dict:
            return ("dict", [[_encode(k), _encode(v)] for k, v in obj.items()])
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in "biufc":
        return ("ndarray" if t is np.ndarray else "numpy", torch.from_numpy(np.array(obj, order="C")))
    if obj is pd.NA:
        return ("NA",)
    if t is pd.DataFrame:
        return (
            "DataFrame",
            _encode_index(obj.index),
            _encode_index(obj.columns),
            [_encode_values(obj.iloc[:, i]) for i in range(obj.shape[1])],
            _encode(obj.attrs),
        )
    if t is pd.Series:
        return ("Series", _encode_index(obj.index), _encode_values(obj), _encode(obj.name), _encode(obj.attrs))
    name = f"{t.__module__}.{t.__qualname__}"
    if dataclasses.is_dataclass(obj) and name in _DATACLASSES:
        return ("dataclass", name, {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    raise TypeError(
        f"a cache entry cannot hold an object of type {name}: store tensors, numpy arrays, "
        "DataFrames, lists, tuples, dicts and scalars (or add a dataclass to cache._DATACLASSES)"
    )


def _map_values(mapping: dict, fn: Callable[[Any], Any]) -> dict:
    """``mapping`` (a dict or an OrderedDict) with ``fn`` applied to its values; keeps ``_metadata``."""
    out = type(mapping)((k, fn(v)) for k, v in mapping.items())
    if hasattr(mapping, "_metadata"):
        out._metadata = mapping._metadata  # type: ignore[attr-defined]
    return out


def _encode_values(values: pd.Series | pd.Index) -> list[Any]:
    """``[dtype name, values]``: a numeric numpy column as an array, any other as a list."""
    numeric = isinstance(values.dtype, np.dtype) and values.dtype.kind in "biufc"
    return [str(values.dtype), _encode(values.to_numpy() if numeric else values.tolist())]


def _encode_index(index: pd.Index) -> Any:
    if isinstance(index, pd.MultiIndex):
        raise TypeError("a cache entry cannot hold a DataFrame with a MultiIndex")
    if type(index) is pd.RangeIndex:
        return ("range", index.start, index.stop, index.step, _encode(index.name))
    return ("index", _encode_values(index), _encode(index.name))


def _decode_values(enc: list[Any]) -> Any:
    dtype, values = enc[0], _decode(enc[1])
    return values if isinstance(values, np.ndarray) else pd.array(values, dtype=dtype)


def _decode_index(enc: tuple) -> pd.Index:
    if enc[0] == "range":
        return pd.RangeIndex(enc[1], enc[2], enc[3], name=_decode(enc[4]))
    return pd.Index(_decode_values(enc[1]), name=_decode(enc[2]))


def _decode(obj: Any) -> Any:
    """The inverse of :func:`_encode`."""
    t = type(obj)
    if t is list:
        return [_decode(v) for v in obj]
    if t is dict or t is collections.OrderedDict:
        return _map_values(obj, _decode)
    if t is not tuple:
        return obj
    tag = obj[0]
    if tag == "tuple":
        return tuple(_decode(v) for v in obj[1])
    if tag == "dict":
        return {_decode(k): _decode(v) for k, v in obj[1]}
    if tag == "ndarray":
        return obj[1].numpy()
    if tag == "numpy":
        return obj[1].numpy()[()]
    if tag == "NA":
        return pd.NA
    if tag == "DataFrame":
        _, index, columns, data, attrs = obj
        frame = pd.DataFrame({i: _decode_values(v) for i, v in enumerate(data)}, index=_decode_index(index))
        frame.columns = _decode_index(columns)
        frame.attrs = _decode(attrs)
        return frame
    if tag == "Series":
        _, index, values, name, attrs = obj
        series = pd.Series(_decode_values(values), index=_decode_index(index), name=_decode(name))
        series.attrs = _decode(attrs)
        return series
    if tag == "dataclass" and obj[1] in _DATACLASSES:
        module, _, qualname = obj[1].rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        values = {k: _decode(v) for k, v in obj[2].items()}
        inst = cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.init})
        for f in dataclasses.fields(cls):
            if not f.init:
                setattr(inst, f.name, values[f.name])
        return inst
    raise CacheEntryError(f"unknown tag {tag!r} in the entry")


def save(obj: Any, path: Path) -> None:
    """Store ``obj`` at ``path`` atomically, in the safe format :func:`load` reads (see :func:`_encode`)."""
    buf = io.BytesIO()
    torch.save(_encode(obj), buf)
    payload = buf.getvalue()
    atomic_write_bytes(Path(path), _FORMAT + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load(path: Path) -> Any:
    """Load an entry written by :func:`save` (on the CPU), with ``weights_only=True``.

    Raises :class:`CacheEntryError` for a file of another format, whose checksum does not match or
    that holds objects a weights_only load refuses (and whatever else ``torch.load`` raises for one
    it cannot read); nothing in the file is ever run.
    """
    data = Path(path).read_bytes()
    header, newline, payload = data.partition(b"\n")
    fmt, _, digest = header.partition(b" ")
    if not newline or fmt != _FORMAT:
        raise CacheEntryError("is not in this cache's format (written by an older lingerlab, or not an entry)")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CacheEntryError("is corrupt (its checksum does not match: truncated or overwritten)")
    try:
        value = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CacheEntryError("holds objects that a weights_only load refuses") from e
    return _decode(value)


def _entry_path(stage: str, key: str, code: str, root: Path | None) -> Path:
    return (root or cache_dir()) / stage / f"{key}-{code}.pt"


def _load_or_compute(path: Path, compute: Callable[[], T]) -> T:
    if path.exists():
        try:
            return load(path)
        except Exception as e:  # old format, corrupt, or unloadable (e.g. another torch version)
            reason = (
                str(e)
                if isinstance(e, CacheEntryError)
                else f"cannot be loaded ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
            )
            warnings.warn(f"cache entry {path} {reason}; it will be recomputed", RuntimeWarning, stacklevel=3)
    result = compute()  # raises before anything is written
    save(result, path)
    return result


def cached(
    stage: str,
    key: str,
    compute: Callable[[], T],
    *,
    root: Path | None = None,
    enabled: bool = True,
    code: Sequence[Any] = (),
) -> T:
    """Return the cached result of ``stage`` under ``key``, computing and storing it on a miss.

    The entry is keyed also by :func:`code_hash` of the module that defined ``compute`` (for a
    ``functools.partial`` its ``.func``; for code outside ``lingerlab`` the ``lingerlab`` modules it
    references) and of the extra ``code`` targets, so editing that code recomputes it. An unreadable
    entry is treated as a miss and rewritten; a ``compute`` that raises writes nothing.
    """
    if not enabled:
        return compute()
    digest = code_hash(*_code_targets(compute), *code)
    return _load_or_compute(_entry_path(stage, key, digest, root), compute)


class StageCache:
    """Cached pipeline stages under one ``scope`` (e.g. a world fingerprint).

    ``get(stage, parts, compute)`` returns ``compute()``'s result, stored on disk under
    ``key(stage, parts)`` and the code of ``compute``'s module (see :func:`cached`), memoised in
    memory per key; ``computed[stage]`` counts the misses this object computed. With
    ``enabled=False`` nothing is read or written on disk (the in-memory memo still applies).
    """

    def __init__(self, scope: Any, *, enabled: bool = True, root: Path | None = None) -> None:
        fingerprint(scope)  # fail now, not at the first stage, if the scope cannot be hashed
        self.scope = scope
        self.enabled = bool(enabled)
        self.root = Path(root) if root is not None else None
        self.computed: collections.Counter[str] = collections.Counter()
        self._memo: dict[tuple[str, str, str], Any] = {}

    def __repr__(self) -> str:
        return f"StageCache(scope={self.scope!r}, enabled={self.enabled}, root={self.root})"

    def key(self, stage: str, parts: Any) -> str:
        """The data key of ``stage`` for ``parts``: ``fingerprint(stage, scope, parts)``, 24 hex characters."""
        return fingerprint(stage, self.scope, parts, length=24)

    def get(self, stage: str, parts: Any, compute: Callable[[], T], *, code: Sequence[Any] = ()) -> T:
        """The result of ``stage`` for ``parts``: from memory, else from disk, else ``compute()``."""
        key = self.key(stage, parts)
        digest = code_hash(*_code_targets(compute), *code)
        memo_key = (stage, key, digest)
        if memo_key in self._memo:
            return self._memo[memo_key]

        def counted() -> T:
            result = compute()
            self.computed[stage] += 1
            return result

        result = _load_or_compute(_entry_path(stage, key, digest, self.root), counted) if self.enabled else counted()
        self._memo[memo_key] = result
        return result
