"""The fair test again under perturbed numerics: does a verdict survive what another CPU would do?

Another CPU type trains other weights from the same code and seeds (other vector kernels, other
summation orders); which class sits at Eq. 1's or Eq. 3's cut-off, and so a verdict, can move with
them. :func:`rerun` trains a world again in a child process with one numeric setting changed
(:data:`SETTING`: ATen's vector kernels off, which changes the trained bits on every x86-64 CPU;
``benchmarks/perturbed_numerics.py`` measures it) and its own model cache (under the cache root, so
a second run reads it back), and returns its fair test's verdicts; :func:`mark` sets them beside the
verdicts of the run at hand.

    python -m lingerlab.perturbed --world shapes --profile smoke --n-seeds 10 --out verdicts.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ._validation import check_int_range
from .cache import cache_dir
from .fair_test import FairTest

#: the perturbation: ATen's CPU kernels without vector instructions (any x86-64 CPU can run it)
SETTING = {"ATEN_CPU_CAPABILITY": "default"}
_COLUMNS = ("claim", "verdict", "effect", "ci_lo", "ci_hi")


def rerun(world: str, profile: str = "smoke", seed: int = 0, n_seeds: int = 10) -> pd.DataFrame:
    """The fair test of ``world`` (``spec.comparison_arms``, seeds ``seed .. seed + n_seeds - 1``)
    trained and measured again in a child process under :data:`SETTING`, with its models cached apart
    (``<cache root>/perturbed-<setting>``): one row per test, ``claim, verdict, effect, ci_lo, ci_hi``."""
    check_int_range("seed", seed, 0)
    check_int_range("n_seeds", n_seeds, 1)
    tag = "-".join(f"{k}={v}" for k, v in SETTING.items())
    env = {**os.environ, **SETTING, "LINGERLAB_CACHE": str(cache_dir() / f"perturbed-{tag}")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verdicts.json"
        args = ["--world", world, "--profile", profile, "--seed", str(seed), "--n-seeds", str(n_seeds)]
        res = subprocess.run(
            [sys.executable, "-m", "lingerlab.perturbed", *args, "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"the rerun under {tag} failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
        return pd.DataFrame(json.loads(out.read_text()), columns=list(_COLUMNS))


def mark(ft: FairTest, rerun_tests: pd.DataFrame) -> FairTest:
    """``ft`` with the columns ``numerics`` ("stable": the rerun gives the same verdict; "fragile"
    otherwise) and ``numerics_moved`` (e.g. ``"inconclusive under ATEN_CPU_CAPABILITY=default"``) added to
    its tests; a test's ``stability`` becomes "fragile" when either leaving a class out or the rerun
    moves it."""
    tag = ", ".join(f"{k}={v}" for k, v in SETTING.items())
    other = dict(zip(rerun_tests["claim"], rerun_tests["verdict"]))
    t = ft.tests.copy()
    pairs = list(zip(t["claim"], t["verdict"]))
    t["numerics"] = ["stable" if other.get(c) == v else "fragile" for c, v in pairs]
    t["numerics_moved"] = ["" if other.get(c) == v else f"{other.get(c, 'not measured')} under {tag}" for c, v in pairs]
    if "stability" in t:
        t["moved_by"] = ["; ".join(x for x in (m, n) if x) for m, n in zip(t["moved_by"], t["numerics_moved"])]
        t["stability"] = ["fragile" if m else "stable" for m in t["moved_by"]]
    return replace(ft, tests=t)


def _main(argv: list[str] | None = None) -> None:
    from .chapter import chapter
    from .fair_test import fair_test

    ap = argparse.ArgumentParser(prog="python -m lingerlab.perturbed", description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-seeds", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ch = chapter(a.world, a.profile, a.seed, "cpu", n_seeds=a.n_seeds, progress=False)
    spec = ch.world.spec
    ft = fair_test(ch.audit, spec.comparison, ch.seeds)
    Path(a.out).write_text(json.dumps(ft.tests[list(_COLUMNS)].to_dict("records")))


if __name__ == "__main__":
    _main()
