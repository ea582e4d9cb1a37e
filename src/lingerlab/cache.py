"""A small on-disk cache for stage outputs and checkpoints, keyed by a hash of their inputs AND code.

Entries are written atomically (temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a half-written entry behind: the next call simply recomputes it.
The cache lives in ``$LINGERLAB_CACHE`` or, by default, ``~/.cache/lingerlab``.

The cache follows the code by itself: :func:`cached` keys every entry also by :func:`code_hash`
of the module that defined ``compute`` (that module plus every ``lingerlab`` module it imports,
transitively, docstrings and comments ignored), so editing the code that computes a result
invalidates it without a version number bumped by hand. :func:`fingerprint` hashes data, and
callables by their code and captured values; it never falls back to ``repr`` (which may hold a
memory address): an object it does not know raises ``TypeError``.
"""
from __future__ import annotations

import collections
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch

from .codehash import _code_targets, code_hash  # noqa: F401
from .fingerprints import fingerprint  # noqa: F401

__all__ = ["cache_dir", "code_hash", "fingerprint", "cached", "StageCache", "atomic_write_bytes", "save", "load"]

T = TypeVar("T")



def cache_dir() -> Path:
    """The cache root: ``$LINGERLAB_CACHE`` if set, else ``~/.cache/lingerlab``."""
    root = os.environ.get("LINGERLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lingerlab")
    return Path(root)


# --------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
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


def save(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path) -> Any:
    """Load an entry written by :func:`save` (on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _entry_path(stage: str, key: str, code: str, root: Path | None) -> Path:
    return (root or cache_dir()) / stage / f"{key}-{code}.pt"


def _load_or_compute(path: Path, compute: Callable[[], T]) -> T:
    if path.exists():
        try:
            return load(path)
        except Exception:  # corrupt or incompatible (e.g. another torch version): recompute
            pass
    result = compute()  # raises before anything is written
    save(result, path)
    return result


def cached(stage: str, key: str, compute: Callable[[], T], *, root: Path | None = None,
           enabled: bool = True, code: Sequence[Any] = ()) -> T:
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

        result = (_load_or_compute(_entry_path(stage, key, digest, self.root), counted) if self.enabled
                  else counted())
        self._memo[memo_key] = result
        return result
