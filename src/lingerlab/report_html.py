"""The audit report: one self-contained HTML page built with the standard library.

Figures are matplotlib (``matplotlib.figure.Figure`` on the Agg canvas: no pyplot state, no
display) embedded as base64 PNG ``<img>`` tags, tables are pandas ``to_html`` with escaping, and
the page carries its own CSS: no script, no stylesheet, no font or image is fetched from anywhere.
``lingerlab audit`` (:mod:`lingerlab.cli`) fills it; the figure helpers here take plain numbers.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from string import Template
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Section",
    "esc",
    "table_html",
    "markdown_html",
    "figure_uri",
    "img",
    "render_page",
    "new_figure",
    "counts_figure",
    "lingering_figure",
    "composites_figure",
    "distraction_figure",
    "roc_figure",
    "roc_curve",
    "audit_page",
    "SECTION_IDS",
]

WORST = 3  # classes shown with their composites and maps
#: the fair test's measures shown per subset in the verdicts section
_MEASURES_SHOWN = (
    "target_acc",
    "err_source_only",
    "err_neutral",
    "excess_error",
    "flip_rate",
    "hijack_rate",
    "distraction",
    "distraction_null",
    "distraction_excess",
)

SECTION_IDS = ("models-and-data", "source-only", "lingering", "composites", "distraction", "detection", "verdicts")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 1.2em 3em; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 1em 0 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d8dde6; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
nav { background: #f3f5f9; padding: 0.5em 0.8em; border-radius: 6px; }
nav a { margin-right: 1.1em; color: #1f4e9c; text-decoration: none; }
table.data { border-collapse: collapse; font-size: 0.86em; margin: 0.5em 0 1em; }
table.data th, table.data td { border: 1px solid #d8dde6; padding: 0.2em 0.5em; text-align: left;
                                font-variant-numeric: tabular-nums; vertical-align: top; }
table.data th { background: #eef1f6; }
.note { color: #4a5365; font-size: 0.92em; }
.warn { background: #fff6e0; border-left: 4px solid #e0a100; padding: 0.4em 0.7em; margin: 0.6em 0; }
.headline { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0; }
.headline div { background: #f3f5f9; border-radius: 6px; padding: 0.5em 0.9em; min-width: 9em; }
.headline b { display: block; font-size: 1.35em; }
img.fig { max-width: 100%; height: auto; border: 1px solid #e4e7ee; margin: 0.4em 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.88em; }
pre { background: #f6f7fa; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
.scroll { max-height: 26em; overflow-y: auto; overflow-x: auto; }
"""

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<h1>$title</h1>
<p class="note">$subtitle</p>
<nav>$nav</nav>
$summary
$sections
<hr>
<p class="note">$footer</p>
</body>
</html>
""")


def esc(text: Any) -> str:
    """``text`` as HTML text (``&``, ``<``, ``>`` and quotes escaped)."""
    return html.escape(str(text), quote=True)


@dataclass
class Section:
    """One ``<section id=...>`` of the page: a heading and HTML parts (already escaped)."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> "Section":
        self.parts.extend(parts)
        return self

    def p(self, text: str, cls: str | None = None) -> "Section":
        """A paragraph of plain text (escaped)."""
        return self.add(f"<p{f' class={cls!r}' if cls else ''}>{esc(text)}</p>")

    def render(self) -> str:
        return f'<section id="{esc(self.id)}">\n<h2>{esc(self.title)}</h2>\n' + "\n".join(self.parts) + "\n</section>"


def _fmt(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "\u2013"
        ax = abs(x)
        if ax == 0:
            return "0"
        if ax < 1e-3 or ax >= 1e5:
            return f"{x:.3g}"
        return f"{x:.4g}" if ax >= 1 else f"{x:.3f}"
    return str(x)


def table_html(df: pd.DataFrame, *, max_rows: int | None = 200, scroll: bool = False) -> str:
    """``df`` as an escaped HTML table (numbers to about 3 significant digits, NaN as a dash);
    longer tables are cut to ``max_rows`` rows with a note (the CSV next to the report has them all)."""
    if df is None or len(df) == 0:
        return '<p class="note">(no rows)</p>'
    cut = max_rows is not None and len(df) > max_rows
    shown = (df.head(max_rows) if cut else df).copy()
    for col in shown.columns:
        if (
            shown[col].dtype == object
            or pd.api.types.is_numeric_dtype(shown[col])
            or pd.api.types.is_bool_dtype(shown[col])
        ):
            shown[col] = [
                _fmt(v) if not (v is None or (isinstance(v, float) and math.isnan(v))) else "\u2013" for v in shown[col]
            ]
    out = shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="\u2013")
    if cut:
        out += f'<p class="note">first {max_rows} of {len(df)} rows (all of them are in the CSV file)</p>'
    return f'<div class="scroll">{out}</div>' if scroll else out


def markdown_html(text: str) -> str:
    """The small Markdown of ``comparison.findings`` as escaped HTML: paragraphs, bullets (lines
    starting with a dash), bold (double asterisks) and code (backquotes)."""

    def inline(line: str) -> str:
        out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(line))
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)

    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if lines and all(ln.lstrip().startswith("- ") for ln in lines):
            parts.append("<ul>" + "".join(f"<li>{inline(ln.lstrip()[2:])}</li>" for ln in lines) + "</ul>")
        elif lines:
            parts.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(parts)


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot: nothing global is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure_uri(fig: Any, dpi: int = 100) -> str:
    """A figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(fig: Any, alt: str) -> str:
    """An ``<img>`` tag holding ``fig`` (embedded PNG)."""
    return f'<img class="fig" alt="{esc(alt)}" src="{figure_uri(fig)}">'


def render_page(title: str, subtitle: str, summary_html: str, sections: Sequence[Section], footer: str) -> str:
    """The whole page: title, a navigation bar to each section, the summary and the sections."""
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    return _PAGE.substitute(
        title=esc(title),
        subtitle=esc(subtitle),
        css=_CSS,
        nav=nav,
        summary=summary_html,
        sections="\n".join(s.render() for s in sections),
        footer=esc(footer),
    )


# ------------------------------------------------------------------------------------------ figures


def counts_figure(v: Sequence[int], in_F: Sequence[bool], v_lo: float, names: Sequence[str]):
    """Eq. 1's v(c) for every source class, sorted, with Eq. 2's threshold and F in red."""
    v = np.asarray(v, dtype=float)
    in_F = np.asarray(in_F, dtype=bool)
    order = np.argsort(-v, kind="stable")
    fig = new_figure(9, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    colours = np.where(in_F[order], "#c0392b", "#4c72b0")
    ax.bar(np.arange(len(v)), v[order], color=colours, width=1.0 if len(v) > 60 else 0.8)
    zero = np.flatnonzero(in_F[order] & (v[order] == 0))
    if len(zero):  # v(c) = 0 draws no bar: mark those classes of F on the axis
        ax.scatter(
            zero,
            np.zeros(len(zero)),
            marker="^",
            color="#c0392b",
            s=18,
            zorder=3,
            clip_on=False,
            label="v(c) = 0 (in F)",
        )
    ax.axhline(v_lo, color="#333", lw=1, ls="--", label=f"v_lo = {v_lo:g}")
    if len(v) <= 40:
        ax.set_xticks(np.arange(len(v)))
        ax.set_xticklabels([str(names[i])[:14] for i in order], rotation=70, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"source classes, sorted by v(c) (red: F, {int(in_F.sum())} of {len(v)})")
    ax.set_ylabel("v(c)")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def lingering_figure(table: pd.DataFrame, p_lo: float, max_classes: int = 30):
    """Mean p_c over D^c under M^s, M^st and the scratch-backbone control, per class of F (top by p_st)."""
    t = table.dropna(subset=["p_st"]).sort_values("p_st", ascending=False).head(max_classes)
    fig = new_figure(max(5.0, 0.32 * len(t) + 2), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    if len(t) == 0:
        ax.text(0.5, 0.5, "no class of F has images in the source folder", ha="center", va="center")
        ax.set_axis_off()
        return fig
    cols = [("p_source", "M^s", "#7f7f7f"), ("p_st", "M^st = B(M^t) + H(M^s)", "#c0392b")]
    if "p_scratch_st" in t and t["p_scratch_st"].notna().any():
        cols.append(("p_scratch_st", "B(M^b) + H(M^s) (scratch backbone)", "#4c72b0"))
    w = 0.8 / len(cols)
    x = np.arange(len(t))
    for j, (col, label, colour) in enumerate(cols):
        ax.bar(x + (j - (len(cols) - 1) / 2) * w, t[col].to_numpy(dtype=float), width=w, label=label, color=colour)
    ax.axhline(p_lo, color="#333", lw=1, ls="--", label=f"p_lo = {p_lo:g}")
    ax.set_xticks(x)
    ax.set_xticklabels([str(n)[:14] for n in t["name"]], rotation=70, fontsize=7)
    ax.set_ylabel("mean p_c over D^c")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def composites_figure(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]):
    """One row per worst class: the composite and its maps. Each row: ``image`` [3, H, W], ``mask``
    [H, W], ``maps`` (one [H, W] per column after the first) and ``title``."""
    from .plotting import show_cam, show_image

    n = max(1, len(rows))
    fig = new_figure(2.0 * len(columns), 2.1 * n)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i, row in enumerate(rows):
        show_image(axes[i][0], row["image"], f"{columns[0]}\n{row['title']}" if i == 0 else row["title"])
        for j, cam in enumerate(row["maps"], start=1):
            show_cam(axes[i][j], row["image"], cam, columns[j] if i == 0 else None, mask=row["mask"])
    for i in range(len(rows), n):
        for ax in axes[i]:
            ax.set_axis_off()
    for ax in fig.axes:
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig


def distraction_figure(by_class: pd.DataFrame, max_classes: int = 20):
    """Per class: mean distraction (Eq. 4) with its interval, and the shuffled-pair null, per model."""
    models = list(dict.fromkeys(by_class["model"]))
    ref = by_class[by_class["model"] == models[0]].sort_values("excess", ascending=False).head(max_classes)
    classes = list(ref["source_class"])
    fig = new_figure(max(5.0, 0.4 * len(classes) + 2), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["#c0392b", "#4c72b0", "#55a868"]
    w = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        sub = by_class[by_class["model"] == m].set_index("source_class").reindex(classes)
        x = np.arange(len(classes)) + (j - (len(models) - 1) / 2) * w
        d = sub["distraction"].to_numpy(dtype=float)
        lo = d - sub["ci_lo"].to_numpy(dtype=float)
        hi = sub["ci_hi"].to_numpy(dtype=float) - d
        ax.errorbar(
            x,
            d,
            yerr=np.nan_to_num(np.vstack([lo, hi]), nan=0.0),
            fmt="o",
            color=colours[j % 3],
            label=f"{m}: distraction (95% interval)",
            ms=4,
            capsize=2,
        )
        ax.scatter(
            x,
            sub["null"].to_numpy(dtype=float),
            marker="_",
            s=120,
            color=colours[j % 3],
            label=f"{m}: shuffled-pair null",
        )
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels([str(n)[:14] for n in ref["source_name"]], rotation=70, fontsize=7)
    ax.set_ylabel("Eq. 4 IoU")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def roc_curve(negatives: Iterable[float], positives: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of a score (higher = positive) over every threshold, from (0, 0) to (1, 1)."""
    neg, pos = np.asarray(list(negatives), dtype=float), np.asarray(list(positives), dtype=float)
    thr = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.concatenate([[0.0], [(neg >= t).mean() for t in thr]])
    tpr = np.concatenate([[0.0], [(pos >= t).mean() for t in thr]])
    return fpr, tpr


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]):
    """ROC curves ``name -> (fpr, tpr, auroc)``."""
    fig = new_figure(4.2, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})", drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":")
    ax.set_xlabel("false-positive rate (clean target images)")
    ax.set_ylabel("true-positive rate (composites)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


# ------------------------------------------------------------------------------------ the audit page


def audit_page(run: Any, checked: Any, data_info: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """The report of one ``lingerlab audit`` run: ``run`` is its ``cli.AuditRun`` (tables, figures'
    data, notes), ``checked`` the validated arguments, ``data_info`` what the folders held and
    ``results`` the content of results.json."""
    a, w = run.audit, run.world
    cfg = a.config
    secs: list[Section] = []

    def warn(section: Section, key: str) -> None:
        section.add(*[f'<p class="warn">{esc(t)}</p>' for t in run.notes.get(key, [])])

    # -- models and data
    s = Section("models-and-data", "Models and data found")
    s.add("<h3>Models</h3>", table_html(data_info["models"]))
    if "baseline_recipe" in run.tables:
        s.add(
            f"<h3>Scratch baseline recipe (trained with seeds {esc(run.seeds)})</h3>",
            table_html(run.tables["baseline_recipe"]),
        )
    s.add(
        "<h3>Data</h3>",
        table_html(data_info["data_summary"]),
        f'<p class="note">target layout: {esc(checked.target_dir["layout"])}; images are converted to RGB, '
        f"resized and centre-cropped to {w.profile.image_size} px.</p>",
        table_html(data_info["target_per_class"]),
    )
    sk = data_info["skipped_files"]
    s.add(
        f"<h3>Skipped files ({len(sk)})</h3>",
        table_html(sk) if len(sk) else '<p class="note">none: every image file decoded.</p>',
    )
    if run.warnings:
        s.add("<h3>Warnings while loading</h3>", "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in run.warnings) + "</ul>")
    secs.append(s)

    # -- source-only
    s = Section("source-only", "Source-only classes F (Eqs. 1-2)")
    t = run.tables["counts"]
    s.p(
        f"v(c) counts the training images whose top-{cfg.k} source classes under M^s include c (Eq. 1). "
        f"F = {{c : v(c) <= v_lo = {cfg.v_lo:g}}} (Eq. 2): {len(run.F)} of {len(t)} source classes, "
        f"{len(run.F_images)} of them with images in --source-dir."
    )
    warn(s, "source-only")
    s.add(img(counts_figure(t["v"].tolist(), t["in_F"].tolist(), cfg.v_lo, list(t["name"])), "v(c) per class"))
    s.add("<h3>F with v(c)</h3>", table_html(run.tables["source_only"][["class", "name", "v", "n_images"]]))
    secs.append(s)

    # -- lingering
    s = Section("lingering", "Lingering classes L (Eq. 3)")
    lt = run.tables["lingering"]
    s.p(
        f"For each class c of F with images, the mean p_c over D^c under M^s, under M^st = B(M^t) + H(M^s) and "
        f"(where M^b exists) under B(M^b) + H(M^s), a scratch backbone that never saw the source data. "
        f"L = {{c in F : mean p_c under M^st > p_lo = {cfg.p_lo:g}}}: {len(run.L)} classes"
        + (
            f" ({', '.join(w.source_classes[c] for c in run.L[:10])}{' ...' if len(run.L) > 10 else ''})."
            if run.L
            else "."
        )
    )
    warn(s, "lingering")
    if len(lt):
        s.add(img(lingering_figure(lt, cfg.p_lo), "mean p_c per class"))
    s.add(
        table_html(
            lt[["class", "name", "v", "n_images", "p_source", "p_st", "p_st_source_bn", "p_scratch_st", "lingering"]]
        )
    )
    s.p(
        "p_st_source_bn: M^st with M^s's BatchNorm statistics put back (a memory masked by shifted statistics, "
        "not lost). Classes without images cannot be tested and are never in L.",
        "note",
    )
    secs.append(s)

    # -- composites
    s = Section("composites", "Composites and maps for the worst classes (Sec. 4)")
    warn(s, "composites")
    if run.comp is not None and "distraction_by_class" in run.tables:
        bc = run.tables["distraction_by_class"]
        mt = bc[bc["model"] == "M^t"].copy()
        mt["order"] = mt["excess"].fillna(-np.inf)
        worst = mt.sort_values("order", ascending=False).head(WORST)
        dt = run.tables["distraction"]
        dmt = dt[dt["model"] == "M^t"].set_index("composite")
        picks = []
        for c in worst["source_class"]:
            sub = dmt[dmt["source_class"] == c]["distraction"].fillna(-np.inf)
            picks.append(int(sub.idxmax()))
        comp = run.comp.subset(picks)
        cs = a.composite_classes(run.comp)
        idx = run.torch.as_tensor(picks)
        m_s = a.maps("M^s", run.comp, cs)[idx]
        m_t = a.maps("M^t", run.comp, run.comp.target_label)[idx]
        if run.has_baseline:
            m_3 = a.maps("M^b", run.comp, run.comp.target_label, 0)[idx]
            third = "A(x, M^b, c_t)"
        else:
            m_3 = a.maps(a.st_model(0), comp, cs[idx])
            third = "A(x, M^st, c_s)"
        rows = [
            {
                "image": comp.images[i].cpu(),
                "mask": comp.masks[i].cpu(),
                "maps": [m_s[i], m_t[i], m_3[i]],
                "title": f"{w.source_classes[int(cs[p])][:16]} + {w.target_classes[int(comp.target_label[i])][:10]}",
            }
            for i, p in enumerate(picks)
        ]
        s.p(
            f"{len(run.comp)} composites: a target validation image at scale {cfg.scale:g} pasted on each image of D^c, "  # noqa: E501
            f"c in F. Shown: the {len(picks)} classes with the highest distraction of M^t above its null, each with its "  # noqa: E501
            f"most distracting composite and three Grad-CAM maps (layer {w.spec.cam_layer or 'default'}): M^s for the "
            f"source class, M^t for the target class, and {third}. White outline: the pasted patch."
        )
        s.add(
            img(
                composites_figure(rows, ["composite", "A(x, M^s, c_s)", "A(x, M^t, c_t)", third]), "composites and maps"
            )
        )
    secs.append(s)

    # -- distraction
    s = Section("distraction", "Distraction per class (Eq. 4)")
    warn(s, "distraction")
    if "distraction_by_class" in run.tables:
        s.p(
            f"Eq. 4: IoU of the top {100 * (1 - cfg.q):.0f}% background pixels of A(x, M, c_t) and A(x, M^s, c_s). "
            f"null: the same IoU for shuffled pairs ({cfg.n_null} per composite), the chance level. Intervals: 95% "
            "bootstrap over composites"
            + (f" (M^b: per-composite means over its {len(run.seeds)} seeds)." if run.baseline == "scratch" else ".")
        )
        s.add("<h3>All composites</h3>", table_html(run.overall))
        s.add(img(distraction_figure(run.tables["distraction_by_class"]), "distraction per class"))
        s.add("<h3>Per class</h3>", table_html(run.tables["distraction_by_class"], scroll=True))
    secs.append(s)

    # -- detection
    s = Section("detection", "The interference flag (Eq. 5) on your data")
    warn(s, "detection")
    if "detection" in run.results:
        d = run.results["detection"]
        lo, hi = d["eq5_auroc_ci"]
        s.p(
            f"Eq. 5 flags x when max over c in L of p_c(M^st(x)) > p_lo. Negatives: {d['n_clean']} clean target "
            f"validation images; positives: {d['n_composites']} composites. Eq. 5's AUROC: {d['eq5_auroc']:.3f} "
            f"(95% bootstrap interval {lo:.3f} to {hi:.3f}), against the out-of-distribution detectors of pytorch-ood on M^t (MaxSoftmax, MaxLogit, "  # noqa: E501
            f"EnergyBased; Mahalanobis, KNN, ViM and ReAct fitted on M^t's training images). Every score is "
            f"an outlier score: higher means more suspicious."
        )
        s.add(table_html(run.tables["detection"]))
        s.add(
            img(
                roc_figure(
                    {
                        k: (*roc_curve(n, p), float(run.tables["detection"].set_index("score").loc[k, "auroc"]))
                        for k, (n, p) in run.scores.items()
                    }
                ),
                "ROC curves",
            )
        )
        flags = pd.DataFrame(
            [
                {"measure": k, "value": d[k]}
                for k in (
                    "flag_rate_clean",
                    "flag_rate_composites",
                    "error_composites",
                    "error_flagged",
                    "error_unflagged",
                    "errors_caught",
                    "error_clean",
                )
            ]
        )
        s.add("<h3>The flag at p_lo</h3>", table_html(flags))
    secs.append(s)

    # -- verdicts: the book's fair test over L
    from .comparison import measure_table

    ft = run.ft
    s = Section("verdicts", "Verdicts: the fair test over L")
    warn(s, "verdicts")
    s.p(f"Protocol: {run.protocol['kind']}. {run.protocol['text']} {run.protocol['family']}")
    s.p(
        "Verdict rule (stats.verdict), in this order: not testable when a gate fails (the gate is named); holds "
        "when the effect points the paper's way and its Holm-adjusted one-sided p is below 0.05; does not hold "
        "when its 90% interval lies inside the margin or the Holm-adjusted p against the paper's direction is "
        "below 0.05; else inconclusive, with the smallest effect detectable at 80% power. Effects: reference "
        "minus baseline on the composites of L (between arms), or L minus F \\ L within M^t; 95% intervals "
        "from a hierarchical bootstrap (seeds, then classes). Classes whose object the overlay hides are left out.",
        "note",
    )
    s.add("<h3>Gates</h3>", table_html(ft.gates.table, scroll=True))
    s.add("<h3>Tests</h3>", table_html(ft.verdicts(), scroll=True))
    if len(ft.table):
        measured = set(ft.table.loc[ft.table["mean"].notna(), "measure"])
        measures = [m for m in _MEASURES_SHOWN if m in measured]
        s.add(
            "<h3>Measures on L, F \\ L and F (mean over seeds [95% interval])</h3>",
            table_html(measure_table(ft, measures).reset_index(), scroll=True),
        )
    s.add("<h3>Findings</h3>", markdown_html(run.findings))
    secs.append(s)

    # -- summary
    det = results.get("detection") or {}
    cards = [
        ("source classes", len(w.source_classes)),
        ("|F| (Eq. 2)", len(run.F)),
        ("|L| (Eq. 3)", len(run.L)),
        ("composites", 0 if run.comp is None else len(run.comp)),
        ("M^t target accuracy", f"{results['target_val_acc']['M^t']:.3f}"),
        ("Eq. 5 AUROC", f"{det['eq5_auroc']:.3f}" if det else "\u2013"),
    ]
    n_tests, n_hold = len(ft.tests), int((ft.tests["verdict"] == "holds").sum())
    cards.append(("tests that hold (fair test)", f"{n_hold} of {n_tests}"))
    summary = '<div class="headline">' + "".join(f"<div><b>{esc(v)}</b>{esc(k)}</div>" for k, v in cards) + "</div>"
    vt = ft.verdicts()
    summary += (
        "<ul>" + "".join(f"<li><b>{esc(v)}</b>: {esc(c)}</li>" for c, v in zip(vt["claim"], vt["verdict"])) + "</ul>"
    )
    summary += (
        f'<p class="note">parameters: k = {cfg.k}, v_lo = {cfg.v_lo:g}, p_lo = {cfg.p_lo:g}, scale = '
        f"{cfg.scale:g}, q = {cfg.q:g}, seed = {checked.args.seed}, profile = {checked.args.profile}, device = "
        f"{a.device}; command: <code>{esc(results['command'])}</code></p>"
    )
    return render_page(
        "lingerlab audit report",
        f"M^t = {checked.target.text} against M^s = {checked.source.text}; baseline: {run.baseline}",
        summary,
        secs,
        f"lingerlab {results['lingerlab_version']}, torch {results['versions'].get('torch', '?')}; "
        f"{results['wall_s']:.1f} s; results.json and one CSV per stage are next to this file.",
    )
