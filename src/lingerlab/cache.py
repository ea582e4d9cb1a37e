"""An on-disk cache of stage outputs keyed by a hash of their inputs and of their code.

Entries live in ``$LINGERLAB_CACHE`` (default ``~/.cache/lingerlab``) and are written atomically. An
entry is a header line ``lingerlab-cache/2 <sha256 of the rest>`` then a ``torch.save`` of the value
in a safe form (:func:`_encode`), read with ``weights_only=True``: loading never runs code. An entry
of another format, with a wrong checksum or that does not load is reported by name and recomputed.
:func:`cached` keys every entry also by the :func:`code_hash` of the code that computes it.
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

from .codehash import _code_targets, code_hash
from .fingerprints import fingerprint

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


_STALE_TMP_S = 3600.0  # a temporary file this old is left over from a killed write, not a live one


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part:
    a temporary file in the same folder, fsynced, renamed over ``path`` (removed on any error); stale
    temporary files of ``path`` (older than an hour) are removed."""
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
    """``obj`` as tensors, lists, str-keyed dicts and scalars, which ``weights_only`` loading accepts;
    numpy values, pandas frames and series, ``pd.NA``, tuples and the ``_DATACLASSES`` become tagged
    tuples ``(tag, ...)``; anything else raises ``TypeError``."""
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
    if tag == "numpy":  # a NumPy scalar, stored as a 0-d tensor
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
        fields = dataclasses.fields(cls)
        inst = cls(**{f.name: values[f.name] for f in fields if f.init})
        for f in fields:
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
    """Load an entry written by :func:`save` onto the CPU with ``weights_only=True`` (nothing in it
    runs); :class:`CacheEntryError` for another format, a wrong checksum or refused objects."""
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


def _entry(stage: str, key: str, compute: Callable[[], Any], code: Sequence[Any], root: Path | None) -> Path:
    """The file of ``stage``'s entry for ``key`` and the code behind ``compute`` and ``code``."""
    return (root or cache_dir()) / stage / f"{key}-{code_hash(*_code_targets(compute), *code)}.pt"


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
    """The result of ``stage`` under ``key``, computed and stored on a miss; keyed also by the
    :func:`code_hash` of ``compute``'s code and of the extra ``code`` targets. An unreadable entry is
    a miss; a ``compute`` that raises writes nothing."""
    if not enabled:
        return compute()
    return _load_or_compute(_entry(stage, key, compute, code, root), compute)


class StageCache:
    """Cached pipeline stages under one ``scope`` (e.g. a world fingerprint), as :func:`cached` on
    disk (unless ``enabled=False``) and memoised in memory; ``computed[stage]`` counts the misses."""

    def __init__(self, scope: Any, *, enabled: bool = True, root: Path | None = None) -> None:
        fingerprint(scope)  # fail now, not at the first stage, if the scope cannot be hashed
        self.scope = scope
        self.enabled = bool(enabled)
        self.root = Path(root) if root is not None else None
        self.computed: collections.Counter[str] = collections.Counter()
        self._memo: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"StageCache(scope={self.scope!r}, enabled={self.enabled}, root={self.root})"

    def key(self, stage: str, parts: Any) -> str:
        """The data key of ``stage`` for ``parts``: ``fingerprint(stage, scope, parts)``, 24 hex characters."""
        return fingerprint(stage, self.scope, parts, length=24)

    def get(self, stage: str, parts: Any, compute: Callable[[], T], *, code: Sequence[Any] = ()) -> T:
        """The result of ``stage`` for ``parts``: from memory, else from disk, else ``compute()``."""
        path = _entry(stage, self.key(stage, parts), compute, code, self.root)
        memo_key = (stage, path.name)  # the data key and the code hash
        if memo_key in self._memo:
            return self._memo[memo_key]

        def counted() -> T:
            result = compute()
            self.computed[stage] += 1
            return result

        self._memo[memo_key] = _load_or_compute(path, counted) if self.enabled else counted()
        return self._memo[memo_key]
