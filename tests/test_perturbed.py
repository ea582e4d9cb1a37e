"""perturbed: the fair test's verdicts set beside a rerun under perturbed numerics."""

from __future__ import annotations

import pandas as pd
import pytest

from lingerlab.fair_test import FairTest
from lingerlab.perturbed import SETTING, mark, rerun


def _ft(verdicts: dict[str, str], moved: dict[str, str] | None = None) -> FairTest:
    tests = pd.DataFrame({"claim": list(verdicts), "verdict": list(verdicts.values())})
    if moved is not None:
        tests["moved_by"] = [moved.get(c, "") for c in verdicts]
        tests["stability"] = ["fragile" if moved.get(c) else "stable" for c in verdicts]
    empty = pd.DataFrame()
    return FairTest(controls=empty, table=empty, tests=tests, reference="ref", baselines=("b",))


def test_mark_flags_a_verdict_the_rerun_moves():
    ft = _ft({"a": "holds", "b": "inconclusive", "c": "does not hold"}, moved={"c": "without x: inconclusive"})
    other = pd.DataFrame(
        {
            "claim": ["a", "b", "c"],
            "verdict": ["holds", "not testable", "does not hold"],
            "gate": ["", "contrast size (L)", ""],
        }
    )
    t = mark(ft, other).tests.set_index("claim")
    assert list(t["numerics"]) == ["stable", "fragile", "stable"]
    tag = next(iter(SETTING))
    assert t.loc["b", "numerics_moved"].startswith("not testable (contrast size (L)) under " + tag)
    # the stability of a test is fragile when either check moves it, and says what moved it
    assert list(t["stability"]) == ["stable", "fragile", "fragile"]
    assert t.loc["c", "moved_by"] == "without x: inconclusive" and tag in t.loc["b", "moved_by"]
    # a claim the rerun did not measure is fragile, not silently stable
    t2 = mark(_ft({"d": "holds"}), other).tests
    assert t2["numerics"].tolist() == ["fragile"] and "not measured" in t2["numerics_moved"].iloc[0]
    # a rerun that trained the same bits perturbed nothing: said, not counted as stable
    other.attrs["source_fingerprint"] = "abc"
    with pytest.raises(ValueError, match="perturbs nothing"):
        mark(ft, other, "abc")
    assert mark(ft, other, "def").tests["numerics"].tolist() == ["stable", "fragile", "stable"]


def test_rerun_reports_a_failed_child(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="failed"):
        rerun("no-such-world", n_seeds=1)
    with pytest.raises(ValueError, match="n_seeds"):
        rerun("shapes", n_seeds=0)
