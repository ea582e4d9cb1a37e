"""What the notebooks show and glue into the book: the fair test's figures and publishing them."""

from __future__ import annotations

import pytest


def test_findings_display_as_markdown_and_html():
    from lingerlab.publishing import Findings

    f = Findings("- a **bold** claim\n- another")
    assert f._repr_markdown_() == "- a **bold** claim\n- another"
    html = f._repr_html_()
    assert "<li>a <strong>bold</strong> claim</li>" in html and html.count("<li>") == 2
    with pytest.raises(TypeError, match="markdown"):
        Findings(3)


def test_per_class_distraction_is_over_the_seeds_where_the_class_lingers():
    import numpy as np
    import pandas as pd
    from types import SimpleNamespace

    from lingerlab.fair_test_figures import per_class_distraction, plot_fig3a

    rows = []
    for seed in range(5):
        for comp in range(8):
            c = comp % 2  # class 0 lingers in seeds 0-1 only; class 1 never
            in_L = c == 0 and seed < 2
            rows.append(
                {
                    "arm": "ref",
                    "seed": seed,
                    "composite": comp,
                    "source_class": c,
                    "source_name": f"c{c}",
                    "cluster": comp,
                    "in_L": in_L,
                    "distraction": 1.0 if in_L else 0.0,
                    "null": 0.5,
                }
            )
    ft = SimpleNamespace(controls=pd.DataFrame(rows))
    pc = per_class_distraction(ft, ["ref"], n_boot=100).set_index("source_class")
    assert pc.loc[0, "distraction"] == 1.0 and pc.loc[0, "share_L"] == 0.4 and pc.loc[0, "subset"] == "L"
    assert pc.loc[1, "distraction"] == 0.0 and pc.loc[1, "subset"] == "F \\ L"
    ax = plot_fig3a(ft, ["ref"])
    labels = [t.get_text() for t in ax.get_yticklabels()]  # one row per class, top down
    assert labels == ["c0 (L 40%)", "c1 (F \\ L)"]
    assert np.isfinite(ax.get_ylim()).all()


def test_a_class_with_one_source_photo_gets_an_interval_over_seeds():
    """lite0: each class is one photo (its views share a cluster), so there is no spread between
    photos to resample; the interval is then a bootstrap over the seeds' class means."""
    import numpy as np
    import pandas as pd
    from types import SimpleNamespace

    from lingerlab.fair_test_figures import per_class_distraction, plot_fig3a

    rows = []
    for seed in range(5):
        for comp in range(4):
            c = comp % 2  # class 0: four views of one photo; class 1: two photos
            rows.append(
                {
                    "arm": "ref",
                    "seed": seed,
                    "composite": comp,
                    "source_class": c,
                    "source_name": f"c{c}",
                    "cluster": "p0" if c == 0 else f"p{comp}",
                    "in_L": True,
                    "distraction": 0.1 * seed + (0.05 * comp if c else 0.0),
                    "null": 0.2,
                }
            )
    ft = SimpleNamespace(controls=pd.DataFrame(rows))
    pc = per_class_distraction(ft, ["ref"], n_boot=500).set_index("source_class")
    assert pc.loc[0, "interval_over"] == "seeds" and pc.loc[1, "interval_over"] == "source photos"
    assert np.isclose(pc.loc[0, "distraction"], 0.2)  # mean of 0.0, 0.1, ..., 0.4
    assert 0.0 <= pc.loc[0, "ci_lo"] < 0.2 < pc.loc[0, "ci_hi"] <= 0.4
    assert np.isfinite(pc[["ci_lo", "ci_hi"]].to_numpy()).all()
    ax = plot_fig3a(ft, ["ref"])
    assert np.isfinite(ax.get_ylim()).all()


def test_fig3a_fits_the_page_whatever_the_names_and_subsets():
    """The legend grows with the arms' names and with F \\ L being present in each arm; the figure must
    still be shown at full size (publish refuses it otherwise), with one legend entry for the hollow dots."""
    import pandas as pd
    from types import SimpleNamespace

    from lingerlab.fair_test_figures import plot_fig3a
    from lingerlab.publishing import PAGE_WIDTH_IN, shown_scale, small_text

    arms = ["M^t (zoom-out, a long recipe name)", "M^b (same data, another long name)"]
    rows = []
    for arm in arms:
        for seed in range(3):
            for comp in range(6):
                c = comp % 3  # class 2 lingers in no seed: hollow in both arms
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "composite": comp,
                        "source_class": c,
                        "source_name": f"German short-haired pointer {c}",
                        "cluster": comp,
                        "in_L": c != 2,
                        "distraction": 0.3 + 0.1 * c,
                        "null": 0.2,
                    }
                )
    ft = SimpleNamespace(controls=pd.DataFrame(rows))
    ax = plot_fig3a(ft, arms)
    fig = ax.figure
    assert shown_scale(fig, PAGE_WIDTH_IN) == 1.0 and small_text(fig) == []
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("hollow" in t for t in labels) == 1 and len(labels) == len(arms) + 2


def test_book_notation_typesets_the_symbols_once():
    from lingerlab.publishing import book_notation

    assert book_notation("M^t (zoom-out) vs M^b") == "$M^t$ (zoom-out) vs $M^b$"
    assert book_notation("mean p_c(M^st), change") == "mean $p_c$($M^{st}$), change"
    assert book_notation("D^c images of M^s") == "$D^c$ images of $M^s$"
    assert book_notation("$M^t$ error on L") == "$M^t$ error on L"  # already typeset
    assert book_notation("HM^t2 and a lone $") == "HM^t2 and a lone $"  # neither a symbol nor balanced math
    assert book_notation(r"costs \$5 for M^t") == r"costs \$5 for M^t"  # an escaped dollar: left alone


def test_publish_puts_every_text_in_the_books_notation(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lingerlab.publishing import BOOK_WIDTH_IN, publish

    monkeypatch.setenv("LINGERLAB_FIGURES", str(tmp_path))
    fig, ax = plt.subplots(figsize=(BOOK_WIDTH_IN, 3))
    ax.plot([0, 1], [0, 1], label="M^t")
    ax.legend(fontsize=10)
    ax.set_title("M^t against M^b", fontsize=10)
    ax.set_yticks([0, 1], ["M^t (zoom-out)", "M^b (same data)"], fontsize=10)
    texts = [ax.title, ax.get_legend().get_texts()[0]]
    publish(fig, "notation")
    assert [t.get_text() for t in texts] == ["$M^t$ against $M^b$", "$M^t$"]
    fig.canvas.draw()  # tick labels come back from the axis formatter on every draw
    assert [t.get_text() for t in ax.get_yticklabels()] == ["$M^t$ (zoom-out)", "$M^b$ (same data)"]


def test_publish_checks_type_size_saves_and_closes(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lingerlab.publishing import BOOK_WIDTH_IN, MIN_FONT_PT, PAGE_WIDTH_IN, publish, shown_scale, small_text

    monkeypatch.setenv("LINGERLAB_FIGURES", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("too small", fontsize=MIN_FONT_PT - 1)
    assert small_text(fig) == [f"'too small' ({MIN_FONT_PT - 1:g} pt)"]
    with pytest.raises(ValueError, match="too small"):
        publish(fig, "tiny")
    assert not (tmp_path / "tiny.png").exists()  # nothing written for an illegible figure
    ax.set_title("legible", fontsize=MIN_FONT_PT)
    assert small_text(fig) == []
    fig.set_size_inches(2 * PAGE_WIDTH_IN, 3)  # twice the page: shown at half size, so half the type
    assert 0.45 < shown_scale(fig) < 0.7  # the tight bbox crops the empty margin
    assert "'legible'" in " ".join(small_text(fig)) and small_text(fig, page_width_in=None) == []
    fig.set_size_inches(BOOK_WIDTH_IN, 3)
    path = publish(fig, "ok", key="fig_ok")
    assert path == tmp_path / "ok.png" and path.stat().st_size > 1000
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not show it twice


def _fig3a_controls(arms):
    """A small fair test's controls: class 2 lingers in no seed (hollow), classes 0 and 1 in every seed."""
    import numpy as np
    import pandas as pd
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    rows = [
        {
            "arm": arm,
            "seed": seed,
            "composite": comp,
            "source_class": comp % 3,
            "source_name": f"class {comp % 3}",
            "cluster": comp,
            "in_L": comp % 3 != 2,
            "distraction": float(rng.uniform()),
            "null": 0.2 + 0.05 * (comp % 3),
        }
        for arm in arms
        for seed in range(3)
        for comp in range(9)
    ]
    return SimpleNamespace(controls=pd.DataFrame(rows))


def _points(ax):
    """Every point of the scatter collections on ``ax``, as sorted rounded (x, y) pairs."""
    import numpy as np
    from matplotlib.collections import PathCollection

    xy = [np.asarray(c.get_offsets(), float).reshape(-1, 2) for c in ax.collections if isinstance(c, PathCollection)]
    return sorted(map(tuple, np.round(np.concatenate(xy or [np.empty((0, 2))]), 9).tolist()))


def _segments(ax):
    """The end points of every error bar on ``ax``, as sorted rounded ((x0, y0), (x1, y1)) pairs."""
    import numpy as np
    from matplotlib.collections import LineCollection

    segs = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    return sorted(tuple(map(tuple, np.round(np.asarray(s, float), 9).tolist())) for s in segs)


def test_fig3a_dots_are_seaborns_strip_and_its_intervals_the_computed_ones():
    import matplotlib
    import numpy as np
    from matplotlib.colors import to_rgba

    matplotlib.use("Agg")
    from lingerlab.fair_test_figures import per_class_distraction, plot_fig3a

    arms = ["M^t (zoom-out)", "M^b (same data)"]
    ft = _fig3a_controls(arms)
    pc = per_class_distraction(ft, arms)
    style = dict(matplotlib.rcParams)
    ax = plot_fig3a(ft, arms)
    assert dict(matplotlib.rcParams) == style  # seaborn's style stays within the figure
    first = pc[pc.arm == arms[0]].sort_values(["share_L", "distraction"], ascending=False)
    order = {c: i for i, c in enumerate(first["source_class"])}  # top down: most often in L, then most distracted
    y = pc["source_class"].map(order) - 0.4 + 0.4 * (pc["arm"].map(arms.index) + 0.5)  # dodged per arm
    # the strip plot's dots (one per class and arm) and the null's ticks (as many), nothing else
    dots = list(zip(pc["distraction"], y)) + list(zip(pc["null"], y))
    assert _points(ax) == sorted(tuple(np.round(p, 9)) for p in dots)
    # the intervals, exactly the bootstrap's, one per dot
    assert _segments(ax) == sorted(((lo, yy), (hi, yy)) for lo, hi, yy in np.round(np.c_[pc.ci_lo, pc.ci_hi, y], 9))
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    dot = {  # each point's collection and index, by its place
        tuple(np.round(q, 9)): (c, k) for c in ax.collections for k, q in enumerate(np.asarray(c.get_offsets(), float))
    }
    for arm, subset, x, yy in zip(pc["arm"], pc["subset"], pc["distraction"], y):
        c, k = dot[(round(x, 9), round(yy, 9))]
        colour = to_rgba(("tab:red", "tab:orange")[arms.index(arm)])
        assert np.allclose(c.get_edgecolors()[k], colour)
        assert np.allclose(c.get_facecolors()[k], to_rgba("white") if subset == "F \\ L" else colour)


def test_headline_dots_are_seaborns_strip_and_its_intervals_the_tables():
    import matplotlib
    import numpy as np
    import pandas as pd
    from types import SimpleNamespace

    matplotlib.use("Agg")
    from lingerlab.fair_test_figures import plot_headline

    arms = ["M^t", "M^b", "M^r"]
    rows = [
        {
            "subset": s,
            "arm": a,
            "measure": m,
            "mean": 0.1 * k + j,
            "ci_lo": 0.1 * k + j - 0.05,
            "ci_hi": 0.1 * k + j + 0.2,
        }
        for s in ("L", "F \\ L")
        for k, a in enumerate(arms)
        for j, m in enumerate(("distraction", "distraction_null", "excess_error"))
    ]
    rows = [r if r["subset"] == "L" else {**r, "mean": 9.0} for r in rows]  # only L is shown
    tests = {"w": SimpleNamespace(table=pd.DataFrame(rows))}
    measures = [("distraction", "Eq. 4 on L"), ("excess_error", "excess error")]
    fig = plot_headline(tests, {"w": arms}, measures)
    assert len(fig.axes) == 2
    for ax, (measure, label), j in zip(fig.axes, measures, (0, 2)):
        assert ax.get_title() == f"w: {label}" and [t.get_text() for t in ax.get_xticklabels()] == arms
        means = [(k, 0.1 * k + j) for k in range(3)]
        assert _points(ax) == [tuple(np.round(p, 9)) for p in means]  # the strip plot's dots, one per arm
        bars = [((k, m - 0.05), (k, m + 0.2)) for k, m in means]
        if measure == "distraction":  # the null's interval beside each arm
            bars += [((k + 0.25, 0.1 * k + 0.95), (k + 0.25, 0.1 * k + 1.2)) for k in range(3)]
        assert _segments(ax) == sorted(tuple(tuple(np.round(e, 9)) for e in b) for b in bars)
        assert ax.get_xlabel() == "" and not ax.spines["top"].get_visible()
