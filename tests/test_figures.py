"""figures: the paper's Figures 1, 2 and 4 on a tiny random world (M^s puts class 0 first on every
image, so F = {1, ..., 5}): what each table says is checked against a direct computation."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
import torch

from lingerlab import figures
from lingerlab.audit import Audit

from test_sweeps import tiny_world

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def audit():
    return Audit(tiny_world(), v_lo=0, n_null=2, device="cpu", cache=False)


def _photos(n: int = 2, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"photo{i}": torch.rand(3, 10, 10, generator=g) for i in range(n)}


def test_figure1_picks_the_most_probable_source_only_class_and_occludes_its_top_quantile(audit):
    import matplotlib.pyplot as plt

    photos = _photos()
    F = set(audit.source_only().tolist())
    fig, t = figures.figure1(audit, photos, label=1, k=3)
    assert list(t["photo"]) == list(photos) and len(fig.axes) == 2 * (2 + 2 * 2)
    with torch.no_grad():
        p = torch.softmax(audit.source_model()(torch.stack(list(photos.values()))), 1)
    for i, row in t.iterrows():
        top = p[i].topk(3).indices.tolist()
        expect = next(c for c in top if c in F)  # class 0 (not in F) is always first
        assert row.object == audit.world.source_classes[expect] and row.object_in_F_rank == top.index(expect) + 1
        assert np.isclose(row.p_object, float(p[i, expect]), atol=1e-6)
        # the first area of OCCLUSION_AREAS that halves p(c_o) under M^s, else the last (ties aside)
        assert 0 < row.area <= figures.OCCLUSION_AREAS[-1] + 0.1
        assert row.object_removed == (row.p_object_occluded < 0.5 * row.p_object)
        assert 0 <= row["M^t p_label"] <= 1 and row["M^t prediction"] in audit.world.target_classes
        assert row.object_in_L == (expect in audit.lingering_classes(0))
    plt.close(fig)


def test_figure1_says_when_no_class_of_F_is_in_the_top_k(audit):
    import matplotlib.pyplot as plt

    fig, t = figures.figure1(audit, _photos(1), label=0, k=1)  # top-1 is class 0, never in F
    assert t.loc[0, "object"] is None and np.isnan(t.loc[0, "p_object"]) and t.loc[0, "M^t prediction_occluded"] is None
    assert t.loc[0, "M^t prediction"] in audit.world.target_classes
    plt.close(fig)
    with pytest.raises(ValueError, match="label"):
        figures.figure1(audit, _photos(1), label=2)
    with pytest.raises(ValueError, match="photos"):
        figures.figure1(audit, {}, label=0)
    with pytest.raises(ValueError, match="k"):
        figures.figure1(audit, _photos(1), label=0, k=0)
    with pytest.raises(ValueError, match="areas"):
        figures.figure1(audit, _photos(1), label=0, areas=(0.2, 1.5))


def test_figure1_occludes_the_smallest_area_that_removes_the_object(audit):
    """With one area only, that area is used; with areas growing to nearly all pixels, the object is
    removed at the first area that halves M^s's probability of it (checked against a direct run)."""
    import matplotlib.pyplot as plt

    from lingerlab.composites import occlude
    from lingerlab.distraction import top_quantile_mask

    photos = _photos(1, seed=5)
    fig, one = figures.figure1(audit, photos, label=0, k=3, areas=(0.3,))
    plt.close(fig)
    assert abs(one.loc[0, "area"] - 0.3) < 0.1
    areas = (0.1, 0.3, 0.6, 0.95)
    fig, t = figures.figure1(audit, photos, label=0, k=3, areas=areas)
    plt.close(fig)
    c = audit.world.source_classes.index(t.loc[0, "object"])
    x = next(iter(photos.values()))[None]
    m_s = audit.source_model()
    with torch.no_grad():
        p0 = torch.softmax(m_s(x), 1)[0, c]
    cam = ll_gradcam(audit, x, c)
    expect = None
    for a in areas:
        with torch.no_grad():
            p = torch.softmax(m_s(occlude(x, top_quantile_mask(cam[None], 1 - a))), 1)[0, c]
        if p < 0.5 * p0:
            expect = a
            break
    if expect is None:
        assert not t.loc[0, "object_removed"]
    else:
        assert t.loc[0, "object_removed"] and abs(t.loc[0, "area"] - expect) < 0.1


def ll_gradcam(audit, x, c):
    from lingerlab.attribution import gradcam

    return gradcam(audit.source_model(), x, torch.tensor([c]), audit.world.spec.cam_layer)[0]


def test_figure2_rows_and_probabilities(audit):
    import matplotlib.pyplot as plt

    c = 3
    fig, rec = figures.figure2(audit, c, seed=0, target_index=1)
    assert list(rec["input"].unique()) == ["source-only image", "target image", "composite", "source object blurred"]
    assert len(rec) == 4 * 3 and list(rec["model"].unique()) == ["M^s", "M^t", "M^b (same data)"]
    assert rec.loc[rec.input == "source-only image", "p(true target class)"].isna().all()
    assert (
        rec.loc[(rec.input != "source-only image") & (rec.model != "M^s"), "p(true target class)"].between(0, 1).all()
    )
    x_src = audit.world.source_data[audit.class_images(c)[0]][0]
    with torch.no_grad():
        p = torch.softmax(audit.source_model()(x_src[None]), 1)[0, c]
    got = rec.query("input == 'source-only image' and model == 'M^s'")["p(source class)"].iloc[0]
    assert np.isclose(got, float(p), atol=1e-6)
    x_t, y_t = audit.world.target_val[1]
    with torch.no_grad():
        p_t = torch.softmax(audit.model("M^t", 0)(x_t[None]), 1)[0, int(y_t)]
    got = rec.query("input == 'target image' and model == 'M^t'")["p(true target class)"].iloc[0]
    assert np.isclose(got, float(p_t), atol=1e-6)
    plt.close(fig)
    with pytest.raises(ValueError, match="target_index"):
        figures.figure2(audit, c, target_index=len(audit.world.target_val))


def test_paper_arms_are_mt_and_the_fair_tests_first_scratch_arm(audit):
    assert figures.paper_arms(audit) == ("M^t", "M^b (same data)")
    w = audit.world
    fine_tuned_only = dataclasses.replace(w, spec=dataclasses.replace(w.spec, comparison_arms=("M^t",)))
    with pytest.raises(ValueError, match="no scratch arm"):
        figures.paper_arms(Audit(fine_tuned_only, device="cpu", cache=False))


def test_figure4_rows_follow_eq1(audit):
    import matplotlib.pyplot as plt

    fig, t = figures.figure4(audit, ncol=3)
    v = audit.counts()
    only, shared = t[t.row == "source-only"], t[t.row == "shared"]
    assert len(only) <= 3 and len(shared) <= 3 and len(only) + len(shared) > 0
    assert all(int(v[c]) <= audit.v_lo for c in only["class"]) and only["has_images"].all()
    assert all(int(v[c]) > audit.v_lo for c in shared["class"])
    assert list(shared["v"]) == sorted(shared["v"], reverse=True)
    p = audit.logits("M^s", audit.target_data()).float().softmax(1)
    for r in t.itertuples():
        assert r.v == int(v[r._2]) and r.best_target == int(p[:, r._2].argmax())
        assert np.isclose(r.p_max, float(p[:, r._2].max()), atol=1e-6)
    plt.close(fig)
