"""comparison: paired controls, seed-level tests and the verdict, on a tiny hand-built world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lingerlab.audit import Audit
from lingerlab.comparison import (
    MEASURES,
    by_class,
    compare,
    control_sets,
    controls,
    model_level_test,
    per_seed,
    verdict,
)

from test_audit import make_tiny_world


@pytest.fixture()
def audit(tmp_path, monkeypatch) -> Audit:
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    return Audit(make_tiny_world(), device="cpu", match_tol=0.5)


def test_control_sets_are_paired(audit):
    sets = control_sets(audit, classes=[2, 3])
    so, ne, sh = sets["source_only"], sets["neutral"], sets["shared"]
    m = so.masks[:, None].expand_as(so.images)
    for other in (ne, sh):  # same patch, same place; only the background differs
        assert torch.equal(other.images[m], so.images[m]) and torch.equal(other.masks, so.masks)
        assert not torch.equal(other.images[~m], so.images[~m])
    shared_cls = audit.source_labels()[sh.source_index]
    assert set(shared_cls.tolist()) <= set(audit.world.planted_shared)


def test_compare_and_verdict(audit):
    arms = {
        "M^t": "M^t",
        "M^b (same data)": "M^b (same data)",
        "M^b (competent)": "M^b (competent)",
        "M^b (matched acc)": "M^b (matched acc)",
        "remedy": lambda seed: audit.target_model(seed, lr=0.02),
    }
    table = compare(audit, arms, seeds=(0, 1), classes=[2, 3, 4])
    assert len(table) == len(arms) * len(MEASURES)
    assert set(table["measure"]) == set(MEASURES)
    row = table.set_index(["arm", "measure"])
    for arm in arms:
        assert len(row.loc[(arm, "err_source_only"), "values"]) == 2
        exc = row.loc[(arm, "excess_error"), "mean"]
        assert exc == pytest.approx(row.loc[(arm, "err_source_only"), "mean"] - row.loc[(arm, "err_neutral"), "mean"])
        lo, hi = row.loc[(arm, "err_source_only"), ["ci_lo", "ci_hi"]]
        assert np.isnan(lo) or lo <= row.loc[(arm, "err_source_only"), "mean"] <= hi
    assert np.isnan(row.loc[("M^t", "distraction"), "p_welch"])
    assert row.loc[("remedy", "distraction"), "p_perm"] <= 1
    v = verdict(table)
    assert set(v["baseline"]) == set(arms) - {"M^t"}
    assert (v["holds"] == (np.where(v["worse_if"] == "higher", 1, -1) * v["diff"] > 0)).all()
    # the per-composite view and the per-class view agree with the table
    ctl = controls(audit, arms, seeds=(0, 1), classes=[2, 3, 4])
    ps = per_seed(ctl)
    assert ps.loc[ps["arm"] == "M^t", "err_source_only"].mean() == pytest.approx(
        row.loc[("M^t", "err_source_only"), "mean"]
    )
    bc = by_class(ctl)
    assert set(bc["source_class"]) == {2, 3, 4}
    with pytest.raises(ValueError, match="arms"):
        compare(audit, ["M^t", "nope"], seeds=(0,))
    with pytest.raises(ValueError, match="seeds"):
        compare(audit, ["M^t"], seeds=(0, 0))
    with pytest.raises(ValueError, match="reference"):
        compare(audit, ["M^b"], seeds=(0,))


def test_model_level_test_exact():
    out = model_level_test([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert out["diff"] == 3.0
    assert out["p_perm"] == pytest.approx(2 / 20)  # only the two extreme splits are as extreme
    assert 0 < out["p_welch"] < 0.05
    same = model_level_test([1.0, 1.0], [1.0, 1.0])
    assert same["p_perm"] == 1.0 and np.isnan(same["p_welch"])


def test_verdict_orientation():
    rows = []
    for arm, acc, err in (("M^t", 0.99, 0.40), ("M^b", 0.95, 0.10)):
        for m, val in (("target_acc", acc), ("err_source_only", err)):
            rows.append(
                {
                    "arm": arm,
                    "measure": m,
                    "mean": val,
                    "values": (val, val),
                    "p_welch": 0.01,
                    "p_perm": 0.3,
                    "p_composite": 0.02,
                }
            )
    v = verdict(pd.DataFrame(rows), reference="M^t").set_index("measure")
    assert bool(v.loc["err_source_only", "holds"]) and bool(v.loc["err_source_only", "significant"])
    assert not bool(v.loc["target_acc", "holds"])  # M^t is *more* accurate on clean data
    assert v.loc["err_source_only", "summary"].startswith("holds in every seed")
    with pytest.raises(ValueError, match="reference"):
        verdict(pd.DataFrame(rows), reference="M^x")


def test_shared_pool_uses_classes_with_images():
    """Without planted truth the shared control takes the highest-v classes outside F that have
    source images; in a world where none has images there is none (the control is not available)."""
    from types import SimpleNamespace

    from lingerlab.comparison import _shared_pool

    v = torch.tensor([50, 40, 30, 20, 10, 0, 0])
    stub = SimpleNamespace(
        world=SimpleNamespace(planted_shared=None),
        counts=lambda: v,
        source_only=lambda: torch.tensor([5, 6]),
        source_labels=lambda: torch.tensor([1, 1, 3, 5, 6, 4]),
    )
    assert _shared_pool(stub) == [1, 3, 4]  # class 0 and 2 have no images; 5, 6 are in F
    stub.source_labels = lambda: torch.tensor([5, 6])
    assert _shared_pool(stub) == []
    planted = SimpleNamespace(world=SimpleNamespace(planted_shared=frozenset({3, 1})))
    assert _shared_pool(planted) == [1, 3]


def test_without_a_shared_class_err_shared_is_nan_and_not_a_verdict(audit, monkeypatch):
    """A world with no source class outside F that has images (lite0 at 224 px): the shared control is
    left out with a warning, its error is NaN, every other measure is the same as with it, and the
    verdict says "not measured" rather than "reversed"."""
    from lingerlab import comparison

    arms = ("M^t", "M^b (competent)")
    with_shared = compare(audit, arms, seeds=(0, 1), classes=[2, 3, 4]).set_index(["arm", "measure"])
    monkeypatch.setattr(comparison, "_shared_pool", lambda a: [])
    with pytest.warns(RuntimeWarning, match="shared-class control is not available"):
        sets = control_sets(audit, classes=[2, 3, 4])
    assert set(sets) == {"source_only", "neutral"}
    with pytest.warns(RuntimeWarning, match="not available"):
        table = compare(audit, arms, seeds=(0, 1), classes=[2, 3, 4]).set_index(["arm", "measure"])
    assert table.loc[("M^t", "err_shared"), ["mean", "ci_lo", "min", "diff_vs_ref"]].isna().all()
    assert table.loc[("M^b (competent)", "err_shared"), ["mean", "p_welch", "p_perm", "p_composite"]].isna().all()
    others = [m for m in MEASURES if m != "err_shared"]
    pd.testing.assert_frame_equal(
        table.loc[(slice(None), others), ["mean", "p_welch"]],
        with_shared.loc[(slice(None), others), ["mean", "p_welch"]],
    )
    v = verdict(table.reset_index()).set_index("measure")
    assert v.loc["err_shared", "summary"].startswith("not measured")
    assert not v.loc["err_shared", "holds"] and not v.loc["err_shared", "significant"]


# ------------------------------------------------------------------ the fair test
from lingerlab.comparison import FAMILY_MEASURES, CONTRAST_MEASURES, fair_test, subset_per_seed, summarize  # noqa: E402
from lingerlab.stats import VERDICTS  # noqa: E402


def test_fair_test_scores_L_and_its_contrast(audit):
    arms = {"M^t": "M^t", "M^b (same data)": "M^b (same data)", "M^b (competent)": "M^b (competent)"}
    ft = fair_test(audit, arms, seeds=(0, 1, 2), n_boot=500)
    ctl = ft.controls
    assert ft.reference == "M^t" and ft.baselines == ("M^b (same data)", "M^b (competent)")
    # in_L is M^t's L of that seed, for every arm (scratch arms are scored on the reference's composites)
    for s in (0, 1, 2):
        L = set(audit.lingering_classes(s))
        for arm in arms:
            rows = ctl[(ctl.arm == arm) & (ctl.seed == s)]
            assert set(rows.loc[rows.in_L, "source_class"]) == L & set(rows["source_class"])
    # L and F \ L partition F: the F mean is the composite-weighted mean of the two
    ps = subset_per_seed(ctl).set_index(["arm", "seed", "subset"])
    for s in (0, 1, 2):
        nl, nr = ps.loc[("M^t", s, "L"), "n_composites"], ps.loc[("M^t", s, "F \\ L"), "n_composites"]
        assert nl + nr == ps.loc[("M^t", s, "F"), "n_composites"]
        if nl and nr:
            mix = (
                nl * ps.loc[("M^t", s, "L"), "err_source_only"] + nr * ps.loc[("M^t", s, "F \\ L"), "err_source_only"]
            ) / (nl + nr)
            assert mix == pytest.approx(ps.loc[("M^t", s, "F"), "err_source_only"])
    t = ft.tests
    assert len(t) == len(ft.baselines) * len(FAMILY_MEASURES) + len(CONTRAST_MEASURES)
    assert set(t["verdict"]) <= set(VERDICTS)
    ok = t["p_perm"].notna()
    assert (t.loc[ok, "p_holm"] >= t.loc[ok, "p_perm"] - 1e-12).all()  # Holm never lowers a p
    # an effect is the reference mean minus the baseline mean over seeds
    r = t[(t.kind == "between arms") & (t.measure == "err_source_only")].iloc[0]
    assert r.effect == pytest.approx(
        ft.value("M^t", "err_source_only") - ft.value(r.baseline, "err_source_only"), nan_ok=True
    )
    assert set(ft.verdicts().columns) == {"claim", "verdict", "effect [95% CI]", "margin", "p (one-sided)", "p (Holm)"}
    # the gates ran on the same composites and every untestable claim names its gate
    assert ft.gates is not None and set(ft.gates.table["gate"]) <= set(__import__("lingerlab").gates.GATES)
    assert (t.loc[t.verdict == "not testable", "gate"] != "").all() and (
        t.loc[t.verdict != "not testable", "gate"] == ""
    ).all()
    # leaving classes out removes them from every test
    gone = int(ctl["source_class"].iloc[0])
    ft2 = summarize(ctl, exclude=[gone], n_boot=200)
    assert gone not in set(ft2.controls["source_class"]) and ft2.excluded == (gone,)
    with pytest.raises(ValueError, match="baselines"):
        summarize(ctl, baselines=["nope"])


def test_summarize_finds_a_planted_effect_and_a_planted_null():
    """Synthetic controls: the reference is wrong on L composites far more often than the baseline."""
    rng = np.random.default_rng(0)
    rows = []
    for arm in ("ref", "base"):
        for seed in range(5):
            for comp in range(60):
                c = comp % 6
                in_L = c < 3
                wrong = rng.random() < (0.6 if (arm == "ref" and in_L) else 0.1)
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "composite": comp,
                        "source_class": c,
                        "source_name": str(c),
                        "cluster": comp,
                        "in_L": in_L,
                        "target_label": 0,
                        "correct_source_only": not wrong,
                        "correct_neutral": True,
                        "correct_shared": True,
                        "flip": wrong,
                        "distraction": 0.2,
                        "null": 0.2,
                    }
                )
    ctl = pd.DataFrame(rows)
    ctl.attrs.update(reference="ref", fine_tuned={"ref": True, "base": False}, target_acc={})
    ft = summarize(ctl, n_boot=2000)
    t = ft.tests.set_index("claim")
    assert t.loc["err_source_only on L: ref > base", "verdict"] == "holds"
    assert t.loc["excess_error of ref: L > F \\ L", "verdict"] == "holds"
    assert t.loc["err_source_only on L: ref > base", "p_perm"] == pytest.approx(1 / 252)  # exact one-sided, 5 + 5 seeds
    # distraction equals its null everywhere: no effect, never "holds"
    assert t.loc["distraction_excess on L: ref > base", "verdict"] != "holds"

    # the intro's sentence and the coverage rows carry the rule's verdicts and the numbers
    from lingerlab.comparison import COVERAGE_CLAIMS, claims, headline, smallest_p

    line = headline(ft, "toy", measure="err_source_only")
    assert line.startswith("`toy`: ref is wrong more often on L composites than base: **holds**")
    assert f"{ft.value('ref', 'distraction'):.3f}" in line and "5 + 5 seeds" in line
    # no effect on Eq. 4 and a tight interval: the symmetric rule says "does not hold" (equivalence)
    assert t.loc["distraction_excess on L: ref > base", "verdict"] == "does not hold"
    with pytest.raises(ValueError, match="measure"):
        headline(ft, "toy", measure="nope")
    rows = claims(ft, "toy", anchor="a")
    assert len(rows) == len(COVERAGE_CLAIMS) and {r["world"] for r in rows} == {"toy"}
    by_order = {r["order"]: r for r in rows}
    assert by_order[6]["status"] == "holds" and "[" in by_order[6]["evidence"]
    assert smallest_p(5, 5) == pytest.approx(2 / 252)  # the two-sided floor
    assert smallest_p(5, 5, "greater") == pytest.approx(1 / 252)  # the one-sided floor the planted effect reached
    assert smallest_p(10, 10, "greater") == pytest.approx(1 / 184_756)
    assert smallest_p(3, 3) == pytest.approx(0.1) and smallest_p(np.int64(4), 4) == pytest.approx(2 / 70)


def test_recipe_table_and_describe(audit):
    from lingerlab.comparison import describe, recipe_table

    arms = {"M^t": "M^t", "M^b (same data)": "M^b (same data)", "M^b (competent)": "M^b (competent)"}
    t = recipe_table(audit, arms, seeds=(0, 1))
    assert list(t["arm"]) == list(arms) and (t["seeds"] == 2).all()
    roles = dict(zip(t["arm"], t["role"]))
    assert roles["M^t"].startswith("reference") and "paper's own M^b" in roles["M^b (same data)"]
    assert list(t["training images"])[:2] == [20, 20]  # the same data, in the open
    acc = [audit.accuracy("M^t", s) for s in (0, 1)]
    assert t.loc[0, "target acc (mean)"] == pytest.approx(float(np.mean(acc)), abs=5e-4)
    with pytest.raises(ValueError, match="callable"):
        recipe_table(audit, {"M^t": "M^t", "x": lambda s: audit.model("M^t", s)}, seeds=(0,))
    ft = fair_test(audit, arms, seeds=(0, 1), n_boot=200)
    text = describe(ft)
    assert "clean accuracy M^t" in text  # the transfer-helps gate beside every between-arm verdict
    assert text.startswith(f"Of {len(ft.tests)} tests:") and text.count("\n- ") == len(ft.tests)
    for v in ft.tests["verdict"]:
        assert f"**{v}**" in text
