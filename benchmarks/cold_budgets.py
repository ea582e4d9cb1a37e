"""Cold-cache wall times of the smoke profile against its CPU budgets.

    python benchmarks/cold_budgets.py                 # the three stages below, in a fresh temporary cache
    python benchmarks/cold_budgets.py --stages remedies --cache /tmp/c
    python benchmarks/cold_budgets.py --stages notebooks   # the whole book, cold
    python benchmarks/cold_budgets.py --stages arch        # notebook 5's Figure 8, cold
    python benchmarks/cold_budgets.py --stages book --cache ~/.cache/lingerlab   # the stored book, in place

Stages, in order, sharing one model cache (``--cache``, default: a new temporary folder, so the
first stage that needs a model trains it):

- ``shapes``: the ``shapes`` smoke world (data, M^s) plus M^t and M^b, seed 0.
- ``remedies``: notebook 5's remedy section, ``remedy_sweep.remedy_table`` and ``remedy_tests`` for
  seeds 0-2 (every remedy of ``default_remedies``, its trainings and measurements, and the tests on
  plain M^t's L composites; the world models of ``shapes`` are cached by the stage before).
- ``lite0``, ``lite1``, ``lite2``: that smoke world (EfficientNet-Lite0/1/2 with its source photos and
  the LFW task) plus M^t and M^b, seed 0.
- ``remedies-lite0`` (only when asked for): the same remedy section in ``lite0`` (EfficientNet-Lite0 on
  the faces task; its M^t and M^s are trained or read in the same cache); in notebook 5 only when its
  ``remedy_worlds`` names ``lite0`` (by default at profile ``full``), not in the smoke book.
- ``arch`` (only when asked for): notebook 5's architecture comparison (``arch_sweep.arch_comparison`` over
  Lite0/1/2 and the shapes CNN at widths 8 and 16, three seeds, every model and measure) in a model
  cache of its own that starts empty.
- ``notebooks`` (only when asked for): every notebook of ``_toc.yml`` executed by
  ``scripts/execute.py`` at profile ``smoke`` into a temporary folder (the stored notebooks are not
  touched), in a model cache of its own that starts empty whatever ``--cache`` says: the first run of
  the whole book, every model trained once.
- ``book`` (only when asked for): the same, in place: the stored notebooks are rewritten, in the cache
  of ``--cache`` (``--cache ~/.cache/lingerlab`` after emptying it: the cold run the book stores,
  leaving the cache ``make test`` reads).

Budgets are multiples of the reference workload measured in the same run (:data:`BUDGETS`); for each
stage the script prints the seconds, the same in reference workloads, the budget and their ratio (< 1
holds). Run it on a quiet machine: the times are wall-clock on whatever else shares the CPU.

The speed of a shared machine drifts from hour to hour (the cold book of nearly the same code took
716 s in the morning of 2026-12-02 and 1020 s in its afternoon). So the script also times a fixed
reference workload before the first stage and after the last (:func:`_reference_ms`: 20 Adam steps of
five ``shapes`` CNNs at width 16, batch 64, ``seed_batching.py``'s sequential variant) and states every
stage in units of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

#: each stage's budget as a multiple of the reference workload (:func:`_reference_ms`) measured in the
#: same run, so that a budget means the same on a fast and a slow machine (at the 216 ms of 2026-12-01,
#: 4000 workloads are 14.4 minutes)
BUDGETS = {
    "shapes": 833,
    "remedies": 2222,
    "remedies-lite0": 2222,
    "lite0": 1111,
    "lite1": 1111,
    "lite2": 1111,
    "arch": 1667,
    "notebooks": 4000,
    "book": 4000,
}
ROOT = Path(__file__).resolve().parents[1]
#: the reference workload of :func:`_reference_ms` as ``seed_batching.py`` measured it on 2026-12-01
#: (its sequential variant, the same workload): 216 ms per step of all five
REFERENCE_MS = 216.0


def _reference_ms(steps: int = 20, k: int = 5) -> float:
    """Milliseconds per optimisation step of all ``k`` copies of ``shapes``' ``SmallResNet(width=16)``
    (batch 64 of 32 px, channels-last, Adam), one after another: a fixed measure of this CPU's speed."""
    import torch
    import torch.nn.functional as F

    from lingerlab.worlds.shapes import SmallResNet

    g = torch.Generator().manual_seed(0)
    xs = torch.rand(k, 64, 3, 32, 32, generator=g)
    ys = torch.randint(0, 2, (k, 64), generator=g)
    torch.manual_seed(0)
    models = [SmallResNet(2, 16).to(memory_format=torch.channels_last) for _ in range(k)]
    opts = [torch.optim.Adam(m.parameters(), 1e-3) for m in models]

    def step() -> None:
        for m, o, x, y in zip(models, opts, xs, ys):
            o.zero_grad()
            F.cross_entropy(m(x.contiguous(memory_format=torch.channels_last)), y).backward()
            o.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 1000


def _world_models(name: str) -> None:
    import torch

    from lingerlab import load_world
    from lingerlab.arms import Zoo

    w = load_world(name, "smoke", device="cpu", progress=False)
    zoo = Zoo(w, device=torch.device("cpu"), progress=False)
    zoo.train(w.recipe("M^t"), 0)
    zoo.train(w.recipe("M^b"), 0)


def _remedies(world: str = "shapes") -> None:
    """Notebook 5's remedy section in ``world``: the table and the tests on L composites, seeds 0-2;
    prints each remedy's paired change against plain fine-tuning (mean over the seeds)."""
    from lingerlab import load_world
    from lingerlab.audit import Audit
    from lingerlab.remedy_summary import summarize_remedies
    from lingerlab.remedy_sweep import remedy_table, remedy_tests

    audit = Audit(load_world(world, "smoke", device="cpu", progress=False), device="cpu")
    built: dict = {}
    table = remedy_table(audit, seeds=(0, 1, 2), memo=built)
    remedy_tests(audit, seeds=(0, 1, 2), memo=built)
    s = summarize_remedies(table)
    for r in s.itertuples():
        print(
            f"  {world} {r.remedy}: "
            + (
                f"target acc {r.target_acc:.3f} ({r.d_target_acc:+.3f}), composite acc "
                f"{r.composite_acc:.3f} ({r.d_composite_acc:+.3f}), |L| {r.n_lingering:.1f}"
                if r.feasible
                else "not feasible here"
            ),
            flush=True,
        )


def _notebooks() -> None:
    """All notebooks, cold, in a subprocess per notebook (papermill), as ``make execute`` runs them."""
    with tempfile.TemporaryDirectory(prefix="lingerlab-book-") as tmp:
        env = {**os.environ, "LINGERLAB_CACHE": str(Path(tmp) / "cache"), "PYTHONHASHSEED": "0"}
        timings = Path(tmp) / "timings.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "execute.py"),
                "--profile",
                "smoke",
                "--output-dir",
                str(Path(tmp) / "out"),
                "--timings",
                str(timings),
            ],
            env=env,
            check=True,
            cwd=ROOT,
        )
        per = json.loads(timings.read_text())
        print("  per notebook: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in per.items()), flush=True)


def _book() -> None:
    """All notebooks, in place (the stored notebooks are rewritten, as ``make execute`` does), in the
    model cache of ``--cache``: with an empty one, the cold run whose outputs the book stores."""
    timings = ROOT / "_build" / "book-timings.json"
    timings.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, str(ROOT / "scripts" / "execute.py"), "--profile", "smoke", "--timings", str(timings)]
    subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True, cwd=ROOT)
    per = json.loads(timings.read_text())
    print("  per notebook: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in per.items()), flush=True)


def _arch() -> None:
    """Notebook 5's Figure 8 call, cold: the same specs and seeds, in an empty cache of its own."""
    from lingerlab.arch_sweep import arch_comparison, figure8_specs
    from lingerlab.profiles import get_profile

    with tempfile.TemporaryDirectory(prefix="lingerlab-arch-") as tmp:
        old = os.environ["LINGERLAB_CACHE"]
        os.environ["LINGERLAB_CACHE"] = tmp
        try:
            for specs in figure8_specs(get_profile("shapes", "smoke").width).values():
                t = time.perf_counter()
                res = arch_comparison(specs, profile="smoke", seeds=(0, 1, 2), audit_kwargs={"device": "cpu"})
                print(
                    f"  {', '.join(specs)}: {time.perf_counter() - t:.0f} s; |L| "
                    + ", ".join(f"{r.label} {r.n_L:.1f}" for r in res.table.itertuples()),
                    flush=True,
                )
        finally:
            os.environ["LINGERLAB_CACHE"] = old


STAGES = {
    "shapes": lambda: _world_models("shapes"),
    "remedies": _remedies,
    "remedies-lite0": lambda: _remedies("lite0"),
    "lite0": lambda: _world_models("lite0"),
    "lite1": lambda: _world_models("lite1"),
    "lite2": lambda: _world_models("lite2"),
    "arch": _arch,
    "notebooks": _notebooks,
    "book": _book,
}
DEFAULT_STAGES = ["shapes", "remedies", "lite0", "lite1", "lite2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", choices=list(STAGES), default=DEFAULT_STAGES)
    ap.add_argument("--cache", help="model cache folder (default: a new temporary one, i.e. a cold cache)")
    args = ap.parse_args()
    tmp = None if args.cache else tempfile.TemporaryDirectory(prefix="lingerlab-cold-")
    os.environ["LINGERLAB_CACHE"] = args.cache or tmp.name  # type: ignore[union-attr]
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cache {os.environ['LINGERLAB_CACHE']}")
    before = _reference_ms()
    print(f"reference workload: {before:.0f} ms (2026-12-01: {REFERENCE_MS:.0f} ms)", flush=True)
    measured = {}
    for name in args.stages:
        t = time.perf_counter()
        STAGES[name]()
        measured[name] = time.perf_counter() - t
        print(f"{name}: {measured[name]:.0f} s", flush=True)
    after = _reference_ms()
    ref_s = (before + after) / 2 / 1000
    print(
        f"reference workload: {before:.0f} ms before, {after:.0f} ms after the stages (mean {ref_s * 1000:.0f} ms; "
        f"2026-12-01: {REFERENCE_MS:.0f} ms)"
    )
    for name, s in measured.items():
        print(
            f"{name}: {s:.0f} s = {s / ref_s:.0f} reference workloads; budget {BUDGETS[name]}, "
            f"ratio {s / ref_s / BUDGETS[name]:.2f}"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
