"""Notebook 5's figures drawn from small made-up tables: what they show and where seaborn draws it."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

PANELS = ("n_lingering", "distraction", "excess_error", "flip_rate")


def _size_table() -> pd.DataFrame:
    """A size sweep over four sizes and three seeds: L is empty at 16 images in every seed (NaN
    measures) and at 32 images in seed 0 only."""
    rng = np.random.default_rng(1)
    rows = []
    for n in (8, 16, 32, 64):
        for seed in range(3):
            empty = n == 16 or (n == 32 and seed == 0)
            rows.append(
                {
                    "n_train": n,
                    "seed": seed,
                    "n_lingering": 0.0 if empty else float(rng.integers(1, 6)),
                    **{c: np.nan if empty else float(rng.uniform()) for c in PANELS[1:]},
                    "distraction_null": np.nan if empty else 0.1 + 0.01 * seed,
                }
            )
    return pd.DataFrame(rows)


def _bars(ax) -> list[tuple[float, float, float]]:
    """Each vertical error bar of ``ax`` as (x, bottom, top), sorted."""
    from matplotlib.collections import LineCollection

    segs = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    return sorted((float(s[0][0]), float(min(s[0][1], s[1][1])), float(max(s[0][1], s[1][1]))) for s in segs)


@pytest.fixture
def lineplot_calls(monkeypatch):
    """The columns seaborn's ``lineplot`` is asked to draw (it still draws them)."""
    import seaborn as sns

    calls, real = [], sns.lineplot

    def spy(*args, **kwargs):
        calls.append(kwargs["y"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sns, "lineplot", spy)
    return calls


def test_size_sweep_is_seaborns_mean_and_sd_over_seeds(lineplot_calls):
    from lingerlab.mitigation_plots import plot_size_sweep

    size = _size_table()
    style = dict(matplotlib.rcParams)
    fig = plot_size_sweep(size, "a world: fine-tuning on more target images")
    assert dict(matplotlib.rcParams) == style  # seaborn's style stays within the figure
    # every panel's line is seaborn's (a line broken where all seeds are missing is two calls)
    assert set(lineplot_calls) == {*PANELS, "distraction_null"}
    assert fig._suptitle.get_text() == "a world: fine-tuning on more target images\n(mean ± SD over 3 seeds)"
    g = size.groupby("n_train")
    for ax, col in zip(fig.axes, PANELS):
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "target training images"
        m, sd = g[col].mean(), g[col].std()
        ok = sd.notna()
        assert np.allclose(_bars(ax), np.c_[m.index[ok], (m - sd)[ok], (m + sd)[ok]])  # mean ± SD, as pandas has it
        means = [tuple(p) for line in ax.get_lines() if line.get_marker() == "o" for p in line.get_xydata()]
        expect = list(zip(m.index, m)) + (
            list(zip(m.index, g["distraction_null"].mean())) if col == "distraction" else []
        )
        assert sorted(means) == sorted(p for p in expect if np.isfinite(p[1]))
    assert not any(ax.spines["top"].get_visible() for ax in fig.axes)
    d = fig.axes[1]
    assert [t.get_text() for t in d.get_legend().get_texts()] == ["per-class null", "fine-tuned M^t"]
    for line in d.get_lines():  # no line crosses 16 images, where L is empty in every seed
        x = line.get_xdata()
        assert not (np.min(x) < 16 < np.max(x))
