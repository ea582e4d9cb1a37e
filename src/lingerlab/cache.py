"""A small on-disk cache for stage outputs and checkpoints, keyed by a hash of their inputs.

Entries are written atomically (temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a half-written entry behind: the next call simply recomputes it.
The cache lives in ``$LINGERLAB_CACHE`` or, by default, ``~/.cache/lingerlab``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def cache_dir() -> Path:
    """The cache root: ``$LINGERLAB_CACHE`` if set, else ``~/.cache/lingerlab``."""
    root = os.environ.get("LINGERLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lingerlab")
    return Path(root)


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, torch.nn.Module):
        _feed(h, obj.state_dict())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, (set, frozenset)):
        _feed(h, sorted(obj, key=repr))
    else:
        h.update(json.dumps(obj, sort_keys=True, default=repr).encode())


def fingerprint(*parts: Any, length: int = 16) -> str:
    """A stable hex hash of tensors, arrays, modules (their weights), dicts, lists and scalars."""
    h = hashlib.sha256()
    for p in parts:
        _feed(h, p)
    return h.hexdigest()[:length]


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


def cached(stage: str, key: str, compute: Callable[[], Any], *, root: Path | None = None,
           enabled: bool = True) -> Any:
    """Return the cached result of ``stage`` under ``key``, computing and storing it on a miss.

    An unreadable entry (e.g. from another torch version) is treated as a miss and rewritten.
    """
    if not enabled:
        return compute()
    path = (root or cache_dir()) / stage / f"{key}.pt"
    if path.exists():
        try:
            return load(path)
        except Exception:  # corrupt or incompatible: recompute
            pass
    result = compute()
    save(result, path)
    return result
