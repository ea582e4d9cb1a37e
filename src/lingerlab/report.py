"""Small helpers the notebooks share: device choice, figure files, glued numbers for the book."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ._validation import check_choice

__all__ = ["resolve_device", "figures_dir", "savefig", "glue"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) → CUDA when available, else CPU; anything else is checked and passed to
    ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_choice("device", device.split(":")[0], ("auto", "cpu", "cuda", "mps"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(device)


def figures_dir() -> Path:
    """Where notebooks save figures: ``$LINGERLAB_FIGURES`` or ``./figures``."""
    return Path(os.environ.get("LINGERLAB_FIGURES", "figures"))


def savefig(fig: Any, name: str, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``<figures_dir>/<name>.png`` (and keep showing it inline)."""
    path = figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def glue(name: str, value: Any, display: bool = True) -> None:
    """Glue a value for the book (myst-nb), or just show it where myst-nb is not installed (Colab)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - outside the book environment
        if display:
            print(f"{name}: {value}")
        return
    _glue(name, value, display=display)
