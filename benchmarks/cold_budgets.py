"""Cold-cache wall times of the smoke profile against the issues' CPU budgets.

    python benchmarks/cold_budgets.py                 # every stage, in a fresh temporary cache
    python benchmarks/cold_budgets.py --stages remedies --cache /tmp/c

Stages, in order, sharing one model cache (``--cache``, default: a new temporary folder, so the
first stage that needs a model trains it):

- ``shapes``: the ``shapes`` smoke world (data, M^s) plus M^t and M^b, seed 0; budget 3 min.
- ``remedies``: ``sweeps.remedy_table`` for seeds 0-2 (every remedy, its trainings and measurements;
  the world models of ``shapes`` are cached by the stage before); budget 8 min.
- ``lite0``: the ``lite0`` smoke world plus M^t and M^b, seed 0; budget 4 min.

For each stage: the measured seconds, the budget and their ratio (< 1 holds). Run it on a quiet
machine: the times are wall-clock on whatever else shares the CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BUDGETS = {"shapes": 180.0, "remedies": 480.0, "lite0": 240.0}


def _world_models(name: str) -> None:
    from lingerlab import load_world
    from lingerlab.training import finetune, train_scratch
    w = load_world(name, "smoke", device="cpu", progress=False)
    finetune(w, w.target_train, w.target_val, device="cpu", progress=False, **w.finetune_defaults)
    train_scratch(w.make_scratch, w.target_train, w.target_val, device="cpu", progress=False, **w.scratch_defaults)


def _remedies() -> None:
    from lingerlab import load_world, sweeps
    from lingerlab.audit import Audit
    audit = Audit(load_world("shapes", "smoke", device="cpu", progress=False), device="cpu")
    sweeps.remedy_table(audit, seeds=(0, 1, 2))


STAGES = {"shapes": lambda: _world_models("shapes"), "remedies": _remedies, "lite0": lambda: _world_models("lite0")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    ap.add_argument("--cache", help="model cache folder (default: a new temporary one, i.e. a cold cache)")
    args = ap.parse_args()
    tmp = None if args.cache else tempfile.TemporaryDirectory(prefix="lingerlab-cold-")
    os.environ["LINGERLAB_CACHE"] = args.cache or tmp.name  # type: ignore[union-attr]
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cache {os.environ['LINGERLAB_CACHE']}")
    for name in args.stages:
        t = time.perf_counter()
        STAGES[name]()
        s = time.perf_counter() - t
        print(f"{name}: {s:.0f} s, budget {BUDGETS[name]:.0f} s, ratio {s / BUDGETS[name]:.2f}", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
