"""The fair test again under perturbed numerics: does a verdict survive what another CPU would do?

:func:`rerun` trains a world again on the CPU in a child process under :data:`SETTING` (which changes
the trained bits on an x86-64 CPU with vector units; ``benchmarks/perturbed_numerics.py`` measures it)
with its own model cache; :func:`mark` sets its verdicts beside those of the run at hand (a run on
a GPU is thus compared with a CPU run, a larger perturbation than the one named).

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
_COLUMNS = ("claim", "verdict", "gate", "effect", "ci_lo", "ci_hi")


def rerun(
    world: str, profile: str = "smoke", seed: int = 0, n_seeds: int = 10, timeout_s: float = 7200
) -> pd.DataFrame:
    """The fair test of ``world`` (seeds ``seed .. seed + n_seeds - 1``) rerun on the CPU in a child process
    under :data:`SETTING`, its models cached under ``<cache root>/perturbed-<setting>``: one row per test
    (``claim, verdict, gate, effect, ci_lo, ci_hi``); ``attrs["source_fingerprint"]``: the child's M^s."""
    check_int_range("seed", seed, 0)
    check_int_range("n_seeds", n_seeds, 1)
    tag = "-".join(f"{k}={v}" for k, v in SETTING.items())
    env = {**os.environ, **SETTING, "LINGERLAB_CACHE": str(cache_dir() / f"perturbed-{tag}")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verdicts.json"
        args = ["--world", world, "--profile", profile, "--seed", str(seed), "--n-seeds", str(n_seeds)]
        try:
            res = subprocess.run(
                [sys.executable, "-m", "lingerlab.perturbed", *args, "--out", str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"the rerun under {tag} took over {timeout_s:g} s and was stopped") from e
        if res.returncode != 0:
            raise RuntimeError(f"the rerun under {tag} failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
        got = json.loads(out.read_text())
    table = pd.DataFrame(got["tests"], columns=list(_COLUMNS))
    table.attrs["source_fingerprint"] = got["source_fingerprint"]
    return table


def mark(ft: FairTest, rerun_tests: pd.DataFrame, source_fingerprint: str | None = None) -> FairTest:
    """``ft`` with ``numerics`` ("stable" where the rerun gives the same verdict, else "fragile") and
    ``numerics_moved`` added to its tests, and ``stability`` "fragile" where a left-out class or the
    rerun moves it. ValueError when the rerun's M^s equals ``source_fingerprint`` (nothing perturbed)."""
    theirs = rerun_tests.attrs.get("source_fingerprint")
    if source_fingerprint is not None and theirs == source_fingerprint:
        raise ValueError(
            f"the rerun under {SETTING} trained the same M^s bits as this run: the setting perturbs nothing "
            "here (is it set already, or is this CPU without vector kernels?)"
        )
    tag = ", ".join(f"{k}={v}" for k, v in SETTING.items())
    other = dict(zip(rerun_tests["claim"], rerun_tests["verdict"]))
    gate = dict(zip(rerun_tests["claim"], rerun_tests["gate"] if "gate" in rerun_tests else [""] * len(rerun_tests)))
    t = ft.tests.copy()
    pairs = list(zip(t["claim"], t["verdict"]))
    t["numerics"] = ["stable" if other.get(c) == v else "fragile" for c, v in pairs]
    t["numerics_moved"] = [
        ""
        if other.get(c) == v
        else f"{other.get(c, 'not measured')}{f' ({gate[c]})' if gate.get(c) else ''} under {tag}"
        for c, v in pairs
    ]
    if "stability" in t:
        t["moved_by"] = ["; ".join(x for x in (m, n) if x) for m, n in zip(t["moved_by"], t["numerics_moved"])]
        t["stability"] = ["fragile" if m else "stable" for m in t["moved_by"]]
    return replace(ft, tests=t)


def _main(argv: list[str] | None = None) -> None:
    from .chapter import chapter
    from .fair_test import fair_test
    from .identities import weights_fingerprint

    ap = argparse.ArgumentParser(prog="python -m lingerlab.perturbed", description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-seeds", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ch = chapter(a.world, a.profile, a.seed, "cpu", n_seeds=a.n_seeds, progress=False)
    ft = fair_test(ch.audit, ch.world.spec.comparison, ch.seeds, stability=False)
    got = {
        "tests": ft.tests[list(_COLUMNS)].to_dict("records"),
        "source_fingerprint": weights_fingerprint(ch.world.source_model),
    }
    Path(a.out).write_text(json.dumps(got))


if __name__ == "__main__":
    _main()
