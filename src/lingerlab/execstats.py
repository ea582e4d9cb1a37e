"""Execution statistics of the stored notebooks: what ``scripts/execute.py`` records in a notebook's
metadata when it runs it, and the book's page generated from that metadata.

Papermill stores each run's ``start_time`` and ``duration`` under ``metadata.papermill``;
``execute.py`` adds ``metadata.lingerlab`` (:func:`run_metadata`): whether the model cache was cold
(the notebook added entries to it: it trained or computed something) or warm (it added none), the
entry counts before and after, the profile and device asked for, and the machine (:func:`machine`).
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .cache import cache_dir

__all__ = ["cache_entries", "machine", "run_metadata", "table", "page", "NOT_RECORDED"]

NOT_RECORDED = "not recorded"


def cache_entries(root: Path | None = None) -> int:
    """How many entries (``*.pt`` files) the model cache holds (:func:`lingerlab.cache.cache_dir` by default)."""
    root = cache_dir() if root is None else Path(root)
    return sum(1 for _ in root.rglob("*.pt")) if root.is_dir() else 0


def _cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo`` on Linux, else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _device_name(device: str) -> str:
    """The device a run with ``device`` (auto, cpu, cuda, cuda:N, mps) used: the CUDA device's name, or
    the device as given."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device).index or 0)
    return device


def machine(device: str = "auto") -> dict[str, Any]:
    """The machine a run executes on: CPU model, cores, platform, Python, torch and its threads, device."""
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": _device_name(device),
    }


def run_metadata(entries_before: int, entries_after: int, *, profile: str, device: str) -> dict[str, Any]:
    """The ``lingerlab`` metadata of one run: cold if the notebook added cache entries, else warm."""
    return {
        "cache": "cold" if entries_after > entries_before else "warm",
        "cache_entries": {"before": entries_before, "after": entries_after},
        "profile": profile,
        "device": device,
        "machine": machine(device),
    }


def _started(stamp: str | None) -> str:
    if not stamp:
        return NOT_RECORDED
    return datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _row(path: Path) -> dict[str, Any]:
    meta = json.loads(Path(path).read_text()).get("metadata", {})
    pm, run = meta.get("papermill") or {}, meta.get("lingerlab") or {}
    entries, box = run.get("cache_entries") or {}, run.get("machine") or {}
    duration = pm.get("duration")
    return {
        "notebook": Path(path).stem,
        "wall time (s)": round(float(duration), 1) if duration is not None else math.nan,
        "cache": run.get("cache", NOT_RECORDED),
        "cache entries": (f"{entries['before']} → {entries['after']}" if entries else NOT_RECORDED),
        "started (UTC)": _started(pm.get("start_time")),
        "profile": run.get("profile", NOT_RECORDED),
        "device": box.get("device", NOT_RECORDED),
        "machine": (
            f"{box['cpu']}, {box['cores']} cores, torch {box['torch']} ({box['torch_threads']} threads)"
            if box
            else NOT_RECORDED
        ),
    }


def table(notebooks: Iterable[Path]) -> pd.DataFrame:
    """One row per notebook, from its stored metadata; a value the run did not record reads
    ``"not recorded"`` (a wall time: NaN)."""
    return pd.DataFrame(
        [_row(p) for p in notebooks],
        columns=[
            "notebook",
            "wall time (s)",
            "cache",
            "cache entries",
            "started (UTC)",
            "profile",
            "device",
            "machine",
        ],
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return NOT_RECORDED if math.isnan(value) else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def page(notebooks: Iterable[Path]) -> str:
    """The book's execution-statistics page (MyST markdown) for ``notebooks``."""
    df = table(notebooks)
    timed = df["wall time (s)"].dropna()
    counts = df["cache"].value_counts()
    lines = [
        "# Execution statistics",
        "",
        "This page is generated by `scripts/execute.py` from the stored notebooks' metadata",
        "(`lingerlab.execstats.page`); it is not edited by hand. The wall time and start of each notebook",
        "are papermill's; the model cache and the machine are what `execute.py` recorded when it ran the",
        "notebook. The cache is *cold* when the notebook added entries to the model cache",
        "(`$LINGERLAB_CACHE` or `~/.cache/lingerlab`), that is, trained or computed something, and *warm*",
        "when it added none; *cache entries* counts them before and after the notebook ran.",
        "",
        "| " + " | ".join(df.columns) + " |",
        "|" + "|".join("---:" if c == "wall time (s)" else "---" for c in df.columns) + "|",
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)),
        "",
        f"Total: {timed.sum():.1f} s ({timed.sum() / 60:.1f} min) for {len(timed)} of {len(df)} notebooks;"
        f" cache cold in {counts.get('cold', 0)}, warm in {counts.get('warm', 0)},"
        f" not recorded in {counts.get(NOT_RECORDED, 0)}.",
        "",
    ]
    return "\n".join(lines)
