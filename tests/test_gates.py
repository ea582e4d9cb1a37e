"""gates: each precondition of the paper's test passes and fails where it should, and a claim whose
gate fails is "not testable", never "inconclusive"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lingerlab import gates
from lingerlab.fair_test import summarize


def _controls(neutral_acc: dict[str, float], n_L: int = 3, n_classes: int = 6, seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for arm in ("ref", "base"):
        for seed in range(seeds):
            for comp in range(10 * n_classes):
                c = comp % n_classes
                wrong = rng.random() < (0.6 if (arm == "ref" and c < n_L) else 0.1)
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "composite": comp,
                        "source_class": c,
                        "source_name": str(c),
                        "cluster": comp,
                        "in_L": c < n_L,
                        "target_label": 0,
                        "correct_source_only": not wrong,
                        "correct_neutral": rng.random() < neutral_acc[arm],
                        "correct_shared": True,
                        "flip": wrong,
                        "distraction": 0.3 if arm == "ref" and c < n_L else 0.2,
                        "null": 0.2,
                    }
                )
    ctl = pd.DataFrame(rows)
    ctl.attrs.update(
        reference="ref",
        fine_tuned={"ref": True, "base": False},
        target_acc={(a, s): (0.95 if a == "ref" else 0.9) for a in ("ref", "base") for s in range(seeds)},
    )
    return ctl


def _survival(n_classes: int = 6, hidden: tuple[int, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame({"source_class": range(n_classes), "survives": [c not in hidden for c in range(n_classes)]})


def _faith(faithful: dict[str, list[bool]], ms: bool = True) -> pd.DataFrame:
    rows = [{"model": "M^s", "seed": 0, "gain": 1.0, "faithful": ms}]
    rows += [
        {"model": m, "seed": s, "gain": 1.0 if f else -0.1, "faithful": f}
        for m, fs in faithful.items()
        for s, f in enumerate(fs)
    ]
    return pd.DataFrame(rows)


def test_every_gate_passes_on_a_clean_design_and_the_planted_effect_holds():
    ctl = _controls({"ref": 1.0, "base": 1.0})
    g = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}), "ref", ["base"])
    assert g.table["passed"].all() and g.hidden == ()
    assert set(g.table["gate"]) == set(gates.GATES)
    ft = summarize(ctl, gates=g)
    assert (ft.tests["gate"] == "").all()
    t = ft.tests.set_index("claim")
    assert t.loc["err_source_only on L: ref > base", "verdict"] == "holds"


def test_hidden_classes_leave_every_test_and_all_hidden_makes_everything_not_testable():
    ctl = _controls({"ref": 1.0, "base": 1.0})
    faith = _faith({"ref": [True] * 5, "base": [True] * 5})
    g = gates.evaluate(ctl, _survival(hidden=(0, 4)), faith, "ref", ["base"])
    ft = summarize(ctl, gates=g)
    assert g.hidden == (0, 4) and not {0, 4} & set(ft.controls["source_class"])
    counts = g.table.loc[g.table["gate"] == "contrast size", "value"].tolist()
    assert counts == ["surviving classes in L per seed [2, 2, 2, 2, 2]", "in F \\ L per seed [2, 2, 2, 2, 2]"]
    g_all = gates.evaluate(ctl, _survival(hidden=tuple(range(6))), faith, "ref", ["base"])
    assert not g_all.passed("object survival", "F")
    assert g_all.failed("between arms", "err_source_only", "ref", "base") == "object survival (F)"


def test_incompetent_arm_blocks_only_the_error_claims():
    ctl = _controls({"ref": 1.0, "base": 0.5})
    g = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}), "ref", ["base"])
    assert not g.passed("competence on pasted targets", "base") and g.passed("competence on pasted targets", "ref")
    ft = summarize(ctl, gates=g)
    t = ft.tests.set_index("claim")
    for m in ("err_source_only", "excess_error", "flip_rate"):
        assert t.loc[f"{m} on L: ref > base", "verdict"] == "not testable"
        assert t.loc[f"{m} on L: ref > base", "gate"] == "competence on pasted targets (base)"
    assert t.loc["distraction_excess on L: ref > base", "verdict"] != "not testable"
    assert t.loc["excess_error of ref: L > F \\ L", "verdict"] != "not testable"  # needs only the reference
    assert "not testable: competence on pasted targets (base)" in set(ft.verdicts()["verdict"])


def test_unfaithful_maps_block_eq4_for_that_model_and_m_s_blocks_all_eq4():
    ctl = _controls({"ref": 1.0, "base": 1.0})
    g = gates.evaluate(
        ctl,
        _survival(),
        _faith({"ref": [True, True, True, False, False], "base": [False, False, True, False, True]}),
        "ref",
        ["base"],
    )
    assert g.passed("attribution faithfulness", "ref") and not g.passed("attribution faithfulness", "base")
    assert g.failed("between arms", "distraction_excess", "ref", "base") == "attribution faithfulness (base)"
    assert g.failed("within model", "distraction_excess", "ref", "ref") is None
    g2 = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}, ms=False), "ref", ["base"])
    assert g2.failed("within model", "distraction_excess", "ref", "ref") == "attribution faithfulness (ref)"
    assert g2.failed("between arms", "err_source_only", "ref", "base") is None


def test_contrast_size_blocks_the_within_model_contrast_when_f_minus_l_is_empty():
    ctl = _controls({"ref": 1.0, "base": 1.0}, n_L=6)  # every class lingers: F \ L is empty
    g = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}), "ref", ["base"])
    assert g.passed("contrast size", "L") and not g.passed("contrast size", "L and F \\ L")
    ft = summarize(ctl, gates=g)
    within = ft.tests[ft.tests["kind"] == "within model"]
    assert (within["verdict"] == "not testable").all()
    assert (within["gate"] == "contrast size (L and F \\ L)").all()
    with pytest.raises(ValueError, match="no gate"):
        g.passed("contrast size", "nope")


def test_transfer_helps_is_stated_not_blocking():
    ctl = _controls({"ref": 1.0, "base": 1.0})
    ctl.attrs["target_acc"] = {(a, s): (0.8 if a == "ref" else 0.9) for a in ("ref", "base") for s in range(5)}
    g = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}), "ref", ["base"])
    assert not g.passed("transfer helps", "base")
    assert g.failed("between arms", "err_source_only", "ref", "base") is None
    from lingerlab.fair_test_text import describe

    assert "clean accuracy ref 0.800 vs base 0.900" in describe(summarize(ctl, gates=g))


def test_every_failed_gate_is_named():
    ctl = _controls({"ref": 0.5, "base": 0.5}, n_L=6)  # neither arm competent, F \ L empty
    g = gates.evaluate(ctl, _survival(), _faith({"ref": [True] * 5, "base": [True] * 5}), "ref", ["base"])
    assert g.failed("between arms", "flip_rate", "ref", "base") == (
        "competence on pasted targets (ref); competence on pasted targets (base)"
    )
    assert g.failed("within model", "excess_error", "ref", "ref") == (
        "contrast size (L and F \\ L); competence on pasted targets (ref)"
    )
