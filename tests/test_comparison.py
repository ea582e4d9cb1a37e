"""The fair test: paired controls, seed-level tests, the verdicts and their words, on a tiny hand-built world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lingerlab.audit import Audit
from lingerlab.controls import control_sets, controls
from lingerlab.fair_test import CONTRAST_MEASURES, FAMILY_MEASURES, fair_test, subset_per_seed, summarize

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


def test_controls_check_arms_seeds_and_reference(audit):
    with pytest.raises(ValueError, match="arms"):
        controls(audit, ["M^t", "nope"], seeds=(0,))
    with pytest.raises(ValueError, match="seeds"):
        controls(audit, ["M^t"], seeds=(0, 0))
    with pytest.raises(ValueError, match="reference"):
        controls(audit, ["M^b"], seeds=(0,))


def test_shared_pool_uses_classes_with_images():
    """Without planted truth the shared control takes the highest-v classes outside F that have
    source images; in a world where none has images there is none (the control is not available)."""
    from types import SimpleNamespace

    from lingerlab.controls import _shared_pool

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


def test_without_a_shared_class_err_shared_is_nan_and_not_a_test(audit, monkeypatch):
    """A world with no source class outside F that has images (lite0 at 224 px): the shared control is
    left out with a warning, its error is NaN, every other control is the same as with it, and the
    fair test reports err_shared as NaN and tests nothing on it."""
    arms = ("M^t", "M^b (competent)")
    with_shared = controls(audit, arms, seeds=(0, 1), classes=[2, 3, 4])
    monkeypatch.setattr("lingerlab.controls._shared_pool", lambda a: [])
    with pytest.warns(RuntimeWarning, match="shared-class control is not available"):
        sets = control_sets(audit, classes=[2, 3, 4])
    assert set(sets) == {"source_only", "neutral"}
    with pytest.warns(RuntimeWarning, match="not available"):
        ctl = controls(audit, arms, seeds=(0, 1), classes=[2, 3, 4])
    assert ctl["correct_shared"].isna().all() and with_shared["correct_shared"].notna().all()
    others = [c for c in ctl.columns if c != "correct_shared"]
    pd.testing.assert_frame_equal(ctl[others], with_shared[others])
    ft = summarize(ctl, n_boot=200)
    shared = ft.table[ft.table["measure"] == "err_shared"]
    assert len(shared) and shared["mean"].isna().all()
    assert "err_shared" not in set(ft.tests["measure"])


# ------------------------------------------------------------------ the fair test
from lingerlab.verdict_rule import VERDICTS  # noqa: E402


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
    assert set(ft.verdicts().columns) == {
        "claim",
        "verdict",
        "effect [95% CI]",
        "margin",
        "stability",
        "p (one-sided)",
        "p (Holm)",
    }
    assert set(t["stability"]) <= {"stable", "fragile"}
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


def _error_controls(rate_of, n_seeds: int = 10, rng_seed: int = 1) -> pd.DataFrame:
    """Controls of two arms over ``n_seeds`` seeds and 6 classes (0-2 in L): ``rate_of(arm, class)`` is
    the chance that the arm is wrong on a composite of that class."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for arm in ("ref", "base"):
        for seed in range(n_seeds):
            for comp in range(60):
                c = comp % 6
                wrong = rng.random() < rate_of(arm, c)
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "composite": comp,
                        "source_class": c,
                        "source_name": f"class {c}",
                        "cluster": comp,
                        "in_L": c < 3,
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
    return ctl


def test_summarize_finds_a_planted_effect_and_a_planted_null():
    """Synthetic controls: the reference is wrong on L composites far more often than the baseline."""
    ctl = _error_controls(lambda arm, c: 0.6 if arm == "ref" and c < 3 else 0.1, n_seeds=5, rng_seed=0)
    ft = summarize(ctl, n_boot=2000)
    t = ft.tests.set_index("claim")
    assert t.loc["err_source_only on L: ref > base", "verdict"] == "holds"
    assert t.loc["excess_error of ref: L > F \\ L", "verdict"] == "holds"
    assert t.loc["err_source_only on L: ref > base", "p_perm"] == pytest.approx(1 / 252)  # exact one-sided, 5 + 5 seeds
    # distraction equals its null everywhere: no effect, never "holds"
    assert t.loc["distraction_excess on L: ref > base", "verdict"] != "holds"

    # the intro's sentence and the coverage rows carry the rule's verdicts and the numbers
    from lingerlab.fair_test_text import COVERAGE_CLAIMS, claims, headline
    from lingerlab.permutation import smallest_p

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

    # power of the central claim: its minimum detectable effect against the margin, from the family's row
    from lingerlab.fair_test_text import power_text

    row = t.loc["distraction_excess on L: ref > base"]
    text = power_text(ft)
    assert f"{row['mde']:.3f}" in text and f"margin {row['margin']:g}" in text
    both = row["mde"] <= row["margin"] and 1.645 * row["se"] < row["margin"]
    assert ("either 'holds' or 'does not hold' is reachable" in text) == both
    assert f"{1.645 * row['se']:.3f}" in text
    assert "no between-arm test of nope" in power_text(ft, "nope")


def test_leaving_one_class_out_marks_a_verdict_one_class_carries():
    from lingerlab.fair_test import with_stability

    claim = "err_source_only on L: ref > base"
    # the reference errs more on every class of L: the verdict holds without any one of them
    broad = with_stability(summarize(_error_controls(lambda a, c: 0.6 if a == "ref" and c < 3 else 0.1), n_boot=500))
    t = broad.tests.set_index("claim")
    assert t.loc[claim, "verdict"] == "holds" and t.loc[claim, "stability"] == "stable" and not t.loc[claim, "moved_by"]
    # only class 0 carries the effect: without it the verdict changes, and the class is named
    one = with_stability(summarize(_error_controls(lambda a, c: 0.9 if a == "ref" and c == 0 else 0.1), n_boot=500))
    t = one.tests.set_index("claim")
    assert t.loc[claim, "stability"] == "fragile" and "without class 0:" in t.loc[claim, "moved_by"]
    assert "class 1" not in t.loc[claim, "moved_by"]
    from lingerlab.fair_test_text import describe

    assert "fragile: 1 of 6 classes left out move it: without class 0" in describe(one)


def test_recipe_table_and_describe(audit):
    from lingerlab.arm_roles import recipe_table
    from lingerlab.fair_test_text import describe

    arms = {"M^t": "M^t", "M^b (same data)": "M^b (same data)", "M^b (competent)": "M^b (competent)"}
    t = recipe_table(audit, arms, seeds=(0, 1))
    assert list(t["arm"]) == list(arms) and (t["seeds"] == 2).all()
    roles = dict(zip(t["arm"], t["role"]))
    assert roles["M^t"].startswith("reference") and "paper's own M^b" in roles["M^b (same data)"]
    assert list(t["training images"])[:2] == [20, 20]  # the same data, in the open
    conv = [c for c in t.columns if c.startswith("converged")]
    assert len(conv) == 1 and all(v.split(":")[0] in ("yes", "no") for v in t[conv[0]])
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


def test_hijacks_need_a_flip_and_the_other_arm_right():
    from lingerlab.controls import with_hijacks

    rows = []
    # composite 0: ref flips, base right -> a hijack of ref; composite 1: ref flips, base wrong -> no
    # hijack; composite 2: base flips, ref right -> a hijack of base; composite 3: nobody flips
    table = {
        ("ref", 0): (False, True),
        ("ref", 1): (False, True),
        ("ref", 2): (True, True),
        ("ref", 3): (True, True),
        ("base", 0): (True, True),
        ("base", 1): (False, False),
        ("base", 2): (False, True),
        ("base", 3): (True, True),
    }
    for (arm, comp), (right, right_neutral) in table.items():
        rows.append(
            {
                "arm": arm,
                "seed": 0,
                "composite": comp,
                "correct_source_only": right,
                "correct_neutral": right_neutral,
                "flip": right_neutral and not right,
            }
        )
    out = with_hijacks(pd.DataFrame(rows), "ref", "base").set_index(["arm", "composite"])["hijack"]
    assert out[("ref", 0)] and not out[("ref", 1)] and not out[("ref", 2)] and not out[("ref", 3)]
    assert out[("base", 2)] and not out[("base", 0)] and not out[("base", 1)]
