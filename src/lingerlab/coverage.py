"""The book's coverage matrix: which of the paper's claims each world tests, and with what status.

Each notebook states its claims as rows (:func:`claim`) with a status from one of the rules below
and glues them (:func:`glue_claims`); the results page reads the
rows back from the executed notebooks (:func:`read_claims`) and shows them as one matrix (paper
claim x world, :func:`matrix_html`), each status linking to the section that measured it.

Statuses. A claim tested across seeds takes the verdict of ``verdict_rule.verdict`` (``holds``, ``does not
hold``, ``inconclusive`` or ``not testable``, the last when a precondition of ``gates`` fails). A claim measured
without a test across seeds takes one of
the rules :func:`recovery_status`, :func:`above_null_status`, :func:`beats_status`,
:func:`majority_status`; ``example`` marks a single illustration, ``measured`` a sweep with no test
defined, ``not testable`` a claim the world has no ground truth for, ``not measured`` a test whose
sets are empty, ``not run here`` a world the offline book cannot run.
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
#: Eqs. 1-2 recover a planted set when precision and recall both reach this (fixed with the world's
#: tests before the book's numbers were read; tests/test_worlds_shapes.py uses the same threshold).
RECOVERY_THRESHOLD = 0.9
_FIELDS = ("order", "claim", "paper", "world", "status", "evidence", "page", "anchor")


def claim(
    order: int, claim: str, paper: str, world: str, status: str, evidence: str, page: str, anchor: str = ""
) -> dict[str, Any]:
    """One row of the matrix: the paper's ``claim`` (``paper``: its figure or equation), measured in
    ``world`` with ``status`` (one of :data:`STATUSES`), ``evidence`` (the numbers behind it, from code),
    and where: ``page`` (a notebook's file name without suffix) and ``anchor`` (a section id on it).
    ``order`` sorts the claims down the matrix (rows with one ``claim`` must share it)."""
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
    """Every claim row glued (under a key ending in ``suffix``) in the stored outputs of
    ``notebooks`` (executed ``.ipynb`` files), as one table in :func:`claim`'s columns."""
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
    """One row per (claim, world), the last one glued where a notebook states a cell twice."""
    return rows.drop_duplicates(["claim", "world"], keep="last").set_index(["claim", "world"])


def matrix(rows: pd.DataFrame, worlds: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper claim x world: where the claim is in the paper (column ``in the paper``) and its status in
    each world ("" where a world does not test it).
    ``worlds``: the column order (default: in order of first appearance)."""
    worlds = list(worlds) if worlds is not None else list(dict.fromkeys(rows["world"]))
    claims = rows.sort_values("order", kind="stable").drop_duplicates("claim")
    out = pd.DataFrame({"in the paper": claims["paper"].to_numpy()}, index=pd.Index(claims["claim"], name="claim"))
    status = _cells(rows)["status"]
    for w in worlds:
        out[w] = [status.get((c, w), "") for c in out.index]
    return out


_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700", "partly": "#9a6700"}


def matrix_html(rows: pd.DataFrame, worlds: Sequence[str] | None = None, href: str = "{page}.html#{anchor}") -> str:
    """:func:`matrix` as an HTML table in which every status links to the section that measured it
    (``href`` formats ``page`` and ``anchor``) and carries the evidence as its tooltip."""
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
    """Eqs. 1-2 against a planted truth: ``holds`` when precision and recall both reach ``threshold``;
    ``does not hold`` when either is at or below its chance level (a random set of the same size);
    otherwise ``partly``."""
    if any(math.isnan(float(v)) for v in (precision, recall)):
        return "inconclusive"
    if precision >= threshold and recall >= threshold:
        return "holds"
    if precision <= chance_precision or recall <= chance_recall:
        return "does not hold"
    return "partly"


def above_null_status(value_lo: float, value_hi: float, null: float) -> str:
    """A measure against its null or chance level: ``holds`` when its 95% interval lies above the null,
    ``does not hold`` when it lies at or below it, otherwise ``inconclusive``."""
    if any(math.isnan(float(v)) for v in (value_lo, value_hi, null)):
        return "inconclusive"
    if value_lo > null:
        return "holds"
    if value_hi <= null:
        return "does not hold"
    return "inconclusive"


def count_status(count: int, null_count: int) -> str:
    """A count against the same count under a null model (e.g. |L| against the control's |L|, Eq. 3):
    ``holds`` when it is larger, ``does not hold`` otherwise."""
    return "holds" if int(count) > int(null_count) else "does not hold"


def from_verdict(verdict: str) -> str:
    """A verdict of ``verdict_rule.verdict`` in any of the book's wordings (``lowers it`` / ``does not lower
    it`` of the remedy tests) as a status."""
    words = {"lowers it": "holds", "does not lower it": "does not hold"}
    status = words.get(verdict, verdict)
    check_choice("verdict", status, STATUSES)
    return status


def beats_status(lo: float, hi: float, other_lo: float, other_hi: float) -> str:
    """One score against another, each with its 95% interval: ``holds`` when the intervals are apart
    with this one above, ``does not hold`` when apart with this one below, otherwise ``inconclusive``."""
    if lo > other_hi:
        return "holds"
    if hi < other_lo:
        return "does not hold"
    return "inconclusive"


def majority_status(verdicts: Iterable[str]) -> str:
    """Several verdicts of ``verdict_rule.verdict`` on one claim (one per architecture, say): ``holds`` or
    ``does not hold`` when every measured verdict is that, ``partly`` when some but not all hold,
    otherwise ``inconclusive``. Verdicts "not measured" and "not testable" are left out; when nothing
    else is left, the claim is ``not testable`` if any verdict was."""
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
