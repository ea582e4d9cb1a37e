"""coverage: the rows of the results page's matrix, their rules, and the round trip through a notebook."""

from __future__ import annotations

import json

import nbformat
import pytest

from lingerlab import coverage as cov


def _row(world="shapes", status="holds", order=1, claim="c1"):
    return cov.claim(order, claim, "Eq. 1", world, status, "precision 1.000", "02_source_only_features", "nb02-x")


def test_claim_checks_its_fields():
    with pytest.raises(ValueError, match="status"):
        _row(status="maybe")
    with pytest.raises(ValueError, match="world"):
        cov.claim(1, "c", "Eq. 1", "", "holds", "", "page")
    assert _row()["status"] == "holds"


def test_rules_at_their_endpoints():
    t = cov.RECOVERY_THRESHOLD
    assert cov.recovery_status(t, t, 0.5, 0.5) == "holds"
    assert cov.recovery_status(1.0, 0.5, 0.7, 0.5) == "does not hold"  # recall at chance
    assert cov.recovery_status(0.8, 0.8, 0.5, 0.5) == "partly"
    assert cov.recovery_status(float("nan"), 1.0, 0.5, 0.5) == "inconclusive"
    assert cov.above_null_status(0.51, 0.7, 0.5) == "holds"
    assert cov.above_null_status(0.3, 0.5, 0.5) == "does not hold"  # an interval ending on the null
    assert cov.above_null_status(0.4, 0.6, 0.5) == "inconclusive"
    assert cov.beats_status(0.7, 0.8, 0.5, 0.69) == "holds"
    assert cov.beats_status(0.5, 0.6, 0.61, 0.7) == "does not hold"
    assert cov.beats_status(0.5, 0.7, 0.6, 0.8) == "inconclusive"
    assert cov.count_status(3, 0) == "holds" and cov.count_status(2, 2) == "does not hold"
    assert cov.majority_status(["holds", "holds", "not measured"]) == "holds"
    assert cov.majority_status(["does not hold"] * 2) == "does not hold"
    assert cov.majority_status(["holds", "inconclusive"]) == "partly"
    assert cov.majority_status(["inconclusive", "does not hold"]) == "inconclusive"
    assert cov.majority_status([]) == "inconclusive"
    assert cov.majority_status(["not testable", "not testable", "not measured"]) == "not testable"
    assert cov.majority_status(["not testable", "holds"]) == "holds"  # untestable architectures are left out
    assert cov.from_verdict("lowers it") == "holds" and cov.from_verdict("does not lower it") == "does not hold"
    with pytest.raises(ValueError):
        cov.from_verdict("perhaps")


def test_rows_round_trip_through_a_stored_notebook(tmp_path):
    rows = [_row(), _row(world="lite0", status="not testable"), _row(claim="c0", order=0, status="example")]
    cov.glue_claims("nb02_claims", rows)  # checks the rows (no myst-nb kernel here: nothing to store)
    with pytest.raises(ValueError, match="coverage.claim"):
        cov.glue_claims("x_claims", [{"claim": "c"}])
    text = repr(json.dumps(rows))  # what myst-nb's glue stores: the text/plain repr of the str
    out = nbformat.v4.new_output(
        "display_data",
        data={"application/papermill.record/text/plain": text},
        metadata={"scrapbook": {"name": "nb02_claims", "mime_prefix": "application/papermill.record/"}},
    )
    other = nbformat.v4.new_output(
        "display_data", data={"text/plain": "'x'"}, metadata={"scrapbook": {"name": "nb02_F"}}
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=[out, other])])
    path = tmp_path / "02.ipynb"
    nbformat.write(nb, path)
    back = cov.read_claims([path])
    assert back.to_dict("records") == rows
    with pytest.raises(FileNotFoundError, match="make execute"):
        cov.read_claims([tmp_path / "missing.ipynb"])
    m = cov.matrix(back, ["shapes", "lite0", "paper"])  # a world may be called "paper"
    assert list(m.index) == ["c0", "c1"] and list(m.columns) == ["in the paper", "shapes", "lite0", "paper"]
    assert m.loc["c1", "in the paper"] == "Eq. 1" and m.loc["c1", "paper"] == ""
    assert m.loc["c1", "shapes"] == "holds" and m.loc["c1", "lite0"] == "not testable" and m.loc["c0", "lite0"] == ""
    html = cov.matrix_html(back, ["shapes", "lite0"])
    assert html.count("<tr>") == 3 and 'href="02_source_only_features.html#nb02-x"' in html
    assert 'title="precision 1.000"' in html
