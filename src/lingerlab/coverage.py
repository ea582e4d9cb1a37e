"""The book's coverage matrix: which of the paper's claims each world tests, and with what status.

Notebooks glue claim rows (:func:`claim`, :func:`glue_claims`) whose status is a verdict of
``verdict_rule.verdict`` or one of the rules below; the results page reads them back
(:func:`read_claims`) and shows paper claim x world (:func:`matrix_html`).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from ._validation import check_choice

__all__ = [
    "STATUSES",
    "claim",
    "glue_claims",
    "read_claims",
    "matrix",
    "matrix_html",
    "recovery_status",
    "above_null_status",
    "beats_status",
    "count_status",
    "majority_status",
    "from_verdict",
    "RECOVERY_THRESHOLD",
]

#: a verdict's statuses, then ``partly``, ``not measured`` (empty sets), ``not testable`` (no ground truth or
#: a failed gate), ``example`` (one illustration), ``measured`` (no test defined), ``not run here`` (offline)
STATUSES = (
    "holds",
    "does not hold",
    "inconclusive",
    "partly",
    "not measured",
    "not testable",
    "example",
    "measured",
    "not run here",
)
#: Eqs. 1-2 recover a planted set when precision and recall both reach this (fixed before the book's
#: numbers were read; tests/test_worlds_shapes.py uses the same threshold).
RECOVERY_THRESHOLD = 0.9
_FIELDS = ("order", "claim", "paper", "world", "status", "evidence", "page", "anchor")


def claim(
    order: int, claim: str, paper: str, world: str, status: str, evidence: str, page: str, anchor: str = ""
) -> dict[str, Any]:
    """One row of the matrix: the paper's ``claim`` (``paper``: its figure or equation) in ``world``, with
    ``status`` (one of :data:`STATUSES`), ``evidence``, and the ``page`` and ``anchor`` that measured it;
    ``order`` sorts the claims down the matrix."""
    check_choice("status", status, STATUSES)
    for name, value in (("claim", claim), ("paper", paper), ("world", world), ("page", page)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    return {
        "order": int(order),
        "claim": claim,
        "paper": paper,
        "world": world,
        "status": status,
        "evidence": str(evidence),
        "page": page,
        "anchor": str(anchor),
    }


def glue_claims(key: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Glue ``rows`` (from :func:`claim`) under ``key`` as JSON text (hidden) and return them."""
    from .report import glue

    rows = [dict(r) for r in rows]
    for r in rows:
        missing = [f for f in _FIELDS if f not in r]
        if missing:
            raise ValueError(f"a claim row lacks {missing}; build rows with coverage.claim(...)")
    glue(key, json.dumps(rows), display=False)
    return rows


def _glued_text(output: Mapping[str, Any]) -> str | None:
    data = output.get("data", {})
    for mime in ("application/papermill.record/text/plain", "text/plain"):
        if mime in data:
            text = data[mime]
            return "".join(text) if isinstance(text, list) else text
    return None


def read_claims(notebooks: Iterable[str | Path], suffix: str = "_claims") -> pd.DataFrame:
    """Every claim row glued under a key ending in ``suffix`` in the executed ``notebooks``, as one table."""
    import ast

    import nbformat

    rows: list[dict[str, Any]] = []
    for path in map(Path, notebooks):
        if not path.exists():
            raise FileNotFoundError(f"{path}: notebook not found; execute the book first (make execute)")
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
                if name.endswith(suffix):
                    text = _glued_text(out)
                    if text is None:
                        raise ValueError(f"{path}: glued key {name!r} has no text")
                    rows.extend(json.loads(ast.literal_eval(text)))
    return pd.DataFrame(rows, columns=list(_FIELDS))


def _cells(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, world), the last one glued."""
    return rows.drop_duplicates(["claim", "world"], keep="last").set_index(["claim", "world"])


def matrix(rows: pd.DataFrame, worlds: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper claim x world: ``in the paper`` and each world's status ("" where untested), worlds in the
    order ``worlds`` (default: of first appearance)."""
    worlds = list(worlds) if worlds is not None else list(dict.fromkeys(rows["world"]))
    claims = rows.sort_values("order", kind="stable").drop_duplicates("claim")
    out = pd.DataFrame({"in the paper": claims["paper"].to_numpy()}, index=pd.Index(claims["claim"], name="claim"))
    status = _cells(rows)["status"]
    for w in worlds:
        out[w] = [status.get((c, w), "") for c in out.index]
    return out


_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700", "partly": "#9a6700"}


def matrix_html(rows: pd.DataFrame, worlds: Sequence[str] | None = None, href: str = "{page}.html#{anchor}") -> str:
    """:func:`matrix` as HTML: each status links to its section (``href`` formats ``page`` and ``anchor``)
    with the evidence as its tooltip."""
    m = matrix(rows, worlds)
    worlds = list(m.columns[1:])
    by_cell = _cells(rows)
    head = "".join(f"<th>{html.escape(w)}</th>" for w in ["claim of the paper", "in the paper", *worlds])
    body = []
    for c, r in m.iterrows():
        cells = [f"<td>{html.escape(str(c))}</td>", f"<td>{html.escape(r['in the paper'])}</td>"]
        for w in worlds:
            if (c, w) not in by_cell.index:
                cells.append("<td></td>")
                continue
            h = by_cell.loc[(c, w)]
            link = href.format(page=h["page"], anchor=h["anchor"]).rstrip("#")
            colour = _COLOURS.get(h["status"], "#57606a")
            cells.append(
                f'<td><a href="{html.escape(link)}" title="{html.escape(h["evidence"])}">'
                f'<strong style="color:{colour}">{html.escape(h["status"])}</strong></a></td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="table coverage-matrix"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def recovery_status(
    precision: float,
    recall: float,
    chance_precision: float,
    chance_recall: float,
    threshold: float = RECOVERY_THRESHOLD,
) -> str:
    """Eqs. 1-2 against a planted truth: ``holds`` when precision and recall reach ``threshold``, ``does not
    hold`` when either is at or below chance, else ``partly``."""
    if any(math.isnan(float(v)) for v in (precision, recall)):
        return "inconclusive"
    if precision >= threshold and recall >= threshold:
        return "holds"
    if precision <= chance_precision or recall <= chance_recall:
        return "does not hold"
    return "partly"


def above_null_status(value_lo: float, value_hi: float, null: float) -> str:
    """``holds`` when the 95% interval lies above ``null``, ``does not hold`` when at or below it, else
    ``inconclusive``."""
    if any(math.isnan(float(v)) for v in (value_lo, value_hi, null)):
        return "inconclusive"
    if value_lo > null:
        return "holds"
    if value_hi <= null:
        return "does not hold"
    return "inconclusive"


def count_status(count: int, null_count: int) -> str:
    """A count against its null model's (e.g. |L|, Eq. 3): ``holds`` when larger, else ``does not hold``."""
    return "holds" if int(count) > int(null_count) else "does not hold"


def from_verdict(verdict: str) -> str:
    """A verdict (also the remedy tests' ``lowers it`` / ``does not lower it``) as a status."""
    words = {"lowers it": "holds", "does not lower it": "does not hold"}
    status = words.get(verdict, verdict)
    check_choice("verdict", status, STATUSES)
    return status


def beats_status(lo: float, hi: float, other_lo: float, other_hi: float) -> str:
    """``holds`` when this 95% interval lies above the other's, ``does not hold`` when below, else
    ``inconclusive``."""
    if lo > other_hi:
        return "holds"
    if hi < other_lo:
        return "does not hold"
    return "inconclusive"


def majority_status(verdicts: Iterable[str]) -> str:
    """Several verdicts on one claim: ``holds`` or ``does not hold`` when every measured one is that,
    ``partly`` when some hold, else ``inconclusive``; ``not testable`` when none is measured and one was."""
    given = list(verdicts)
    v = [x for x in given if x not in ("not measured", "not testable")]
    if not v:
        return "not testable" if "not testable" in given else "inconclusive"
    if all(x == "holds" for x in v):
        return "holds"
    if all(x == "does not hold" for x in v):
        return "does not hold"
    if any(x == "holds" for x in v):
        return "partly"
    return "inconclusive"
