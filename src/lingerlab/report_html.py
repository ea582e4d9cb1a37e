"""The audit report: one self-contained HTML page (:mod:`lingerlab.html_page`) with the figures of
:mod:`lingerlab.report_figures`. ``lingerlab audit`` (:mod:`lingerlab.cli`) fills it with :func:`audit_page`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .fair_test_text import measure_table
from .html_page import Section, esc, img, markdown_html, render_page, table_html
from .report_figures import (
    composites_figure,
    counts_figure,
    distraction_figure,
    lingering_figure,
    roc_curve,
    roc_figure,
)

__all__ = ["audit_page", "SECTION_IDS"]

WORST = 3  # classes shown with their composites and maps
#: the fair test's measures shown per subset in the verdicts section
_MEASURES_SHOWN = [
    "target_acc",
    "err_source_only",
    "err_neutral",
    "excess_error",
    "flip_rate",
    "hijack_rate",
    "distraction",
    "distraction_null",
    "distraction_excess",
]

#: the numbers of the interference flag at p_lo shown in the detection section
_FLAG_MEASURES = [
    "flag_rate_clean",
    "flag_rate_composites",
    "error_composites",
    "error_flagged",
    "error_unflagged",
    "errors_caught",
    "error_clean",
]

SECTION_IDS = ("models-and-data", "source-only", "lingering", "composites", "distraction", "detection", "verdicts")


def audit_page(run: Any, checked: Any, data_info: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """The report of one ``lingerlab audit`` run (``run``: its ``cli.AuditRun``; ``checked``: the validated
    arguments; ``data_info``: what the folders held; ``results``: the content of results.json)."""
    a, w = run.audit, run.world
    cfg = a.config
    secs: list[Section] = []

    def warn(section: Section, key: str) -> None:
        section.add(*[f'<p class="warn">{esc(t)}</p>' for t in run.notes.get(key, [])])

    def section(id_: str, title: str, notes: str | None = None) -> Section:
        """A new section of the page, opening with the run's notes on ``notes`` when given."""
        secs.append(Section(id_, title))
        if notes:
            warn(secs[-1], notes)
        return secs[-1]

    # -- models and data
    s = section("models-and-data", "Models and data found")
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

    # -- source-only
    s = section("source-only", "Source-only classes F (Eqs. 1-2)")
    t = run.tables["counts"]
    s.p(
        f"v(c) counts the training images whose top-{cfg.k} source classes under M^s include c (Eq. 1). "
        f"F = {{c : v(c) <= v_lo = {cfg.v_lo:g}}} (Eq. 2): {len(run.F)} of {len(t)} source classes, "
        f"{len(run.F_images)} of them with images in --source-dir."
    )
    warn(s, "source-only")
    s.add(img(counts_figure(t["v"].tolist(), t["in_F"].tolist(), cfg.v_lo, list(t["name"])), "v(c) per class"))
    s.add("<h3>F with v(c)</h3>", table_html(run.tables["source_only"][["class", "name", "v", "n_images"]]))

    # -- lingering
    s = section("lingering", "Lingering classes L (Eq. 3)")
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

    # -- composites
    s = section("composites", "Composites and maps for the worst classes (Sec. 4)", "composites")
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

    # -- distraction
    s = section("distraction", "Distraction per class (Eq. 4)", "distraction")
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

    # -- detection
    s = section("detection", "The interference flag (Eq. 5) on your data", "detection")
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
        flags = pd.DataFrame([{"measure": k, "value": d[k]} for k in _FLAG_MEASURES])
        s.add("<h3>The flag at p_lo</h3>", table_html(flags))

    # -- verdicts: the book's fair test over L
    ft = run.ft
    s = section("verdicts", "Verdicts: the fair test over L", "verdicts")
    s.p(f"Protocol: {run.protocol['kind']}. {run.protocol['text']} {run.protocol['family']}")
    s.p(
        "Verdict rule (verdict_rule.verdict), in this order: not testable when a gate fails (the gate is named); holds "
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
