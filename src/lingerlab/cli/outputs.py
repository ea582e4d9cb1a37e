"""What ``lingerlab audit`` writes: one CSV per stage, ``results.json`` and ``report.html``."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

from .args import Checked
from .run import AuditRun

#: the stages' results, in results.json's order
_STAGE_RESULTS = [
    "parameters_resolved",
    "source_only",
    "lingering",
    "composites",
    "distraction",
    "detection",
    "gates",
    "verdicts",
    "verdict_counts",
    "protocol",
    "findings",
]


def write_outputs(
    run: AuditRun, checked: Checked, data_info: dict[str, Any], wall_s: float, command: str, *, write: bool = True
) -> list[Path]:
    """CSV per stage, ``results.json`` and ``report.html`` in ``--out``; returns the files written.
    ``write=False`` computes everything and writes nothing (under torchrun every process computes the
    report's maps, a collective pass, and only the first writes)."""
    out = checked.out
    tables = {**run.tables, **{name: data_info[name] for name in ("data_summary", "models", "skipped_files")}}
    files = [out / f"{name}.csv" for name in tables]
    if write:
        out.mkdir(parents=True, exist_ok=True)
        for path, table in zip(files, tables.values()):
            table.to_csv(path, index=False)
    html_path, json_path = out / "report.html", out / "results.json"
    files += [html_path, json_path]
    versions = _versions()
    results = {
        "command": command,
        "lingerlab_version": versions.get("lingerlab", "unknown"),
        "versions": versions,
        "status": "ok",
        "wall_s": wall_s,
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(checked.args).items()},
        "models": run.models_info,
        **checked.choices,
        "data": data_info["json"],
        "baseline": run.baseline,
        "baseline_seeds": run.seeds if run.baseline == "scratch" else None,
        "target_val_acc": {
            "M^t": run.audit.accuracy("M^t"),
            "M^b": (
                run.results.get("baseline_val_acc")
                if run.baseline == "scratch"
                else [run.audit.accuracy("M^b")]
                if run.has_baseline
                else None
            ),
        },
        **{k: run.results.get(k) for k in _STAGE_RESULTS},
        "warnings": run.warnings,
        "notes": run.notes,
        "files": [p.name for p in files],
    }
    results = _jsonable(results)
    from ..report_html import audit_page

    page = audit_page(run, checked, data_info, results)
    if write:
        html_path.write_text(page, encoding="utf-8")
        json_path.write_text(json.dumps(results, indent=2, allow_nan=False), encoding="utf-8")
    run.results_json = results
    return files


def data_inventory(checked: Checked, world: Any) -> dict[str, Any]:
    """What was found in the folders: per split, classes, files found, images used, skipped files."""
    import pandas as pd

    skipped = list(world.spec.provenance.get("skipped_files", []))
    td = checked.target_dir
    found_t = sum(sum(f.values()) for f in td["files"].values())
    found_s = sum(checked.source_folders.values())
    n_t, source_dir = len(world.target_classes), str(Path(checked.args.source_dir))
    rows = [
        ("target train (D^t: Eq. 1, M^b's training set)", td["root"], n_t, len(world.target_train)),
        ("target val (accuracy, composites' patches, Eq. 5 negatives)", td["root"], n_t, len(world.target_val)),
        (
            "source images D^c (Eq. 3, composites' backgrounds)",
            source_dir,
            len(set(world.source_data.targets)),
            len(world.source_data),
        ),
    ]
    per_class = [
        {"split": split, "class": name, "images": sum(1 for y in ds.targets if y == c)}
        for split, ds in (("train", world.target_train), ("val", world.target_val))
        for c, name in enumerate(world.target_classes)
    ]
    return {
        "data_summary": pd.DataFrame(rows, columns=["data", "folder", "classes", "images"]),
        "target_per_class": pd.DataFrame(per_class),
        "skipped_files": pd.DataFrame({"file": skipped}),
        "models": pd.DataFrame([{"role": role, **info} for role, info in checked.models_info.items()]),
        "json": {
            "target_dir": td["root"],
            "target_layout": td["layout"],
            "target_classes": world.target_classes,
            "n_target_train": len(world.target_train),
            "n_target_val": len(world.target_val),
            "n_source_images": len(world.source_data),
            "n_source_folders": len(checked.source_folders),
            "n_source_classes": len(world.source_classes),
            "image_files_found": found_t + found_s,
            "skipped_files": skipped,
            "n_skipped": len(skipped),
            "n_skipped_target": sum(1 for p in skipped if p.startswith(td["root"])),
            "image_size": world.profile.image_size,
        },
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("lingerlab", "torch", "torchvision", "timm", "numpy", "pandas", "scipy", "matplotlib", "pillow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if x is None or isinstance(x, (str, int)):
        return x
    try:
        import pandas as pd

        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return str(x)
