"""The paper's picture figures (Figs. 1, 2 and 4), each read through an ``audit.Audit`` in any world
and returning the figure and the numbers drawn in it; the fair test's figures are in
:mod:`lingerlab.fair_test_figures`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from ._validation import check_int_range, check_range
from .attribution import gradcam
from .composites import make_composites, neutral_backgrounds, occlude, paste
from .distraction import top_quantile_mask
from .plotting import show_cam, show_image

__all__ = ["paper_arms", "figure1", "figure2", "figure4"]


def _probs(model: torch.nn.Module, x: Tensor) -> Tensor:
    with torch.inference_mode():
        return torch.softmax(model(x).float(), 1).cpu()


def _show_prediction(
    ax: Any, model: torch.nn.Module, x: Tensor, layer: Any, names: Sequence[str], title: str, mask: Tensor | None = None
) -> Tensor:
    """Draw ``model``'s Grad-CAM map for its prediction on the image ``x``; return its probabilities."""
    p = _probs(model, x)[0]
    pred = int(p.argmax())
    cam_map = gradcam(model, x, torch.tensor([pred], device=x.device), layer)[0].cpu()
    show_cam(ax, x[0].cpu(), cam_map, f"{title}{names[pred]} ({p[pred]:.2f})", mask=mask)
    return p


OCCLUSION_AREAS = (0.2, 0.3, 0.4, 0.5, 0.6)  # the top parts of M^s's map figure1 tries, smallest first


def paper_arms(audit: Any) -> tuple[str, str]:
    """The paper's M^t and M^b: ``M^t`` and the first scratch arm of ``spec.comparison``."""
    scratch = [arm for arm in audit.world.spec.comparison.values() if audit.recipe(arm).init == "scratch"]
    if not scratch:
        raise ValueError(
            f"world {audit.world.name!r} has no scratch arm in spec.comparison_arms "
            f"({list(audit.world.spec.comparison)}); pass models="
        )
    return "M^t", scratch[0]


def figure1(
    audit: Any,
    photos: Mapping[str, Tensor],
    label: int,
    seed: int = 0,
    k: int = 5,
    models: Sequence[str] | None = None,
    areas: Sequence[float] = OCCLUSION_AREAS,
) -> tuple[Any, pd.DataFrame]:
    """Figure 1 on real photos of target class ``label`` (``photos``: name -> [3, H, W] in [0, 1]).

    Per photo, the source-only object ``c_o`` is the most probable class of M^s's top ``k`` in F (Eq. 2);
    its region is the top ``area`` of ``A(x, M^s, c_o)`` (Eq. 4's P_q), occluded for the first of
    ``areas`` that halves M^s's probability of ``c_o`` (``object_removed``). Returns the figure (one
    column per photo) and one row per photo (``object``, its rank in the top k, ``area``, ``p_object``
    with and without occlusion, and per model ``p_label`` and ``prediction``, also ``_occluded``).
    ``models``: arm names (None: :func:`paper_arms`).
    """
    import matplotlib.pyplot as plt

    k = check_int_range("k", k, 1)
    areas = [check_range("areas", a, 0, 1, lo_open=True, hi_open=True) for a in areas]
    if not areas:
        raise ValueError("areas must hold at least one fraction in (0, 1)")
    if not photos:
        raise ValueError("photos must hold at least one name -> image")
    names, t_names = list(audit.world.source_classes), list(audit.world.target_classes)
    label = check_int_range("label", label, 0, len(t_names) - 1)
    dev = audit.device
    F = set(audit.source_only().tolist())
    L = set(audit.lingering_classes(seed))
    with_images = set(audit.source_labels().tolist())
    m_s = audit.source_model()
    models = paper_arms(audit) if models is None else tuple(models)
    trained = {m: audit.model(m, seed) for m in models}
    layer = audit.world.spec.cam_layer
    x = torch.stack(list(photos.values())).to(dev)
    ps = _probs(m_s, x)
    ncols = 2 + 2 * len(models)
    # one column per photo (rows: the photo and each model's map, then the same occluded): a book-page width
    fig, axes = plt.subplots(ncols, len(photos), figsize=(2.4 * len(photos), 2.3 * ncols), squeeze=False)
    rows = []
    for i, name in enumerate(photos):
        top = ps[i].topk(k).indices.tolist()
        in_f = [c for c in top if c in F]
        xi, photo, nan = x[i : i + 1], name.split(".")[-1], float("nan")
        row: dict[str, Any] = dict(photo=name, object=None, object_in_F_rank=None, object_has_images=False)
        row.update(object_in_L=False, area=nan, object_removed=False, p_object=nan, p_object_occluded=nan)
        x_occ = None
        if in_f:
            c_o = in_f[0]
            cam_s = gradcam(m_s, xi, torch.tensor([c_o], device=dev), layer)[0].cpu()
            for area in areas:
                mask = top_quantile_mask(cam_s[None], 1 - area)[0]
                x_occ = occlude(xi, mask[None].to(dev))
                p_occ = _probs(m_s, x_occ)[0]
                removed = bool(p_occ[c_o] < 0.5 * ps[i, c_o])
                if removed:
                    break
            row.update(
                object=names[c_o],
                object_in_F_rank=top.index(c_o) + 1,
                object_has_images=c_o in with_images,
                object_in_L=c_o in L,
                area=float(mask.float().mean()),
                object_removed=removed,
                p_object=float(ps[i, c_o]),
                p_object_occluded=float(p_occ[c_o]),
            )
            obj = f"M^s: {_short(names[c_o])}"
            show_cam(axes[0, i], xi[0].cpu(), cam_s, f"{photo}\n{obj} ({ps[i, c_o]:.2f})", mask=mask)
            show_image(axes[1 + len(models), i], x_occ[0].cpu(), f"occluded\n{obj} ({p_occ[c_o]:.2f})")
        else:
            show_image(axes[0, i], xi[0].cpu(), f"{photo}\nno class of F in M^s's top {k}")
            axes[1 + len(models), i].set_axis_off()
        for j, m in enumerate(models):
            for x_in, col, tag in ((xi, 1 + j, ""), (x_occ, 2 + len(models) + j, "_occluded")):
                if x_in is None:
                    axes[col, i].set_axis_off()
                    row[f"{m} p_label{tag}"], row[f"{m} prediction{tag}"] = nan, None
                    continue
                title = f"{m}{' (occluded)' if tag else ''}\n"
                p = _show_prediction(axes[col, i], trained[m], x_in, layer, t_names, title)
                row[f"{m} p_label{tag}"], row[f"{m} prediction{tag}"] = float(p[label]), t_names[int(p.argmax())]
        rows.append(row)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def figure2(
    audit: Any, source_class: int, seed: int = 0, target_index: int | None = None, models: Sequence[str] | None = None
) -> tuple[Any, pd.DataFrame]:
    """Figure 2: a D^c image of ``source_class``, a target image (``target_index``; None: drawn with
    ``seed``), their composite and the composite on the blurred source image, through M^s and each of
    ``models`` (None: :func:`paper_arms`). Returns the figure and one row per (input, model)."""
    import matplotlib.pyplot as plt

    world = audit.world
    names, t_names = list(world.source_classes), list(world.target_classes)
    dev = audit.device
    src_idx = audit.class_images(int(source_class))
    if not src_idx:
        raise ValueError(f"source_class {source_class!r} has no D^c images; pick one of audit.source_labels()")
    x_src = world.source_data[src_idx[0]][0]
    n_val = len(world.target_val)
    if target_index is None:
        target_index = int(torch.randint(n_val, (1,), generator=torch.Generator().manual_seed(seed)))
    target_index = check_int_range("target_index", target_index, 0, n_val - 1)
    x_t, y_t = world.target_val[target_index]
    comp = make_composites(
        x_src[None], x_t[None], scale=audit.scale, generator=seed, target_labels=torch.tensor([int(y_t)])
    )
    blurred = paste(neutral_backgrounds(x_src[None], "blur"), comp)
    inputs = {
        "source-only image": (x_src[None], None),
        "target image": (x_t[None], None),
        "composite": (comp.images, comp.masks[0]),
        "source object blurred": (blurred.images, comp.masks[0]),
    }
    models = paper_arms(audit) if models is None else tuple(models)
    trained = {m: audit.model(m, seed) for m in models}
    layer = world.spec.cam_layer
    c_t = int(y_t)
    ncol = 2 + len(models)
    fig, axes = plt.subplots(len(inputs), ncol, figsize=(7.4, 7.4 / ncol * 1.15 * len(inputs)))
    records = []
    for r, (row_name, (x, mask)) in enumerate(inputs.items()):
        x = x.to(dev)
        show_image(axes[r, 0], x[0].cpu(), row_name)
        p_s = _probs(audit.source_model(), x)[0]
        m_map = gradcam(audit.source_model(), x, torch.tensor([int(source_class)], device=dev), layer)
        show_cam(
            axes[r, 1], x[0].cpu(), m_map[0].cpu(), f"M^s: {names[source_class]} ({p_s[source_class]:.2f})", mask=mask
        )
        nan = float("nan")
        records.append((row_name, "M^s", names[int(p_s.argmax())], nan, float(p_s[source_class])))
        for col, m in enumerate(models, start=2):
            p = _show_prediction(axes[r, col], trained[m], x, layer, t_names, f"{m}: ", mask)
            records.append((row_name, m, t_names[int(p.argmax())], float(p[c_t]) if r else nan, nan))
    fig.suptitle(
        f"{world.name}: Grad-CAM of M^s ({_short(names[source_class])}) and of {', '.join(models)}\n"
        f"(their predictions); white outline: the pasted {t_names[c_t]!r} image",
        fontsize=10,
    )
    fig.tight_layout()
    columns = ["input", "model", "prediction", "p(true target class)", "p(source class)"]
    return fig, pd.DataFrame(records, columns=columns)


def _short(s: str, n: int = 22) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def figure4(audit: Any, ncol: int = 4) -> tuple[Any, pd.DataFrame]:
    """Figure 4: D^c images of the ``ncol`` source-only classes of lowest ``v`` (Eq. 1), of the ``ncol``
    most prevalent shared classes, and the target image on which M^s gives each shared class its
    highest probability. Returns the figure and one row per class shown."""
    import matplotlib.pyplot as plt

    ncol = check_int_range("ncol", ncol, 1)
    world = audit.world
    names = list(world.source_classes)
    n_src = len(names)
    truth = world.planted_source_only
    D_t = audit.target_data()
    v = audit.counts()
    p_s = audit.logits("M^s", D_t).float().softmax(1)
    has_images = torch.bincount(audit.source_labels(), minlength=n_src) > 0
    order = sorted(range(n_src), key=lambda c: (-int(v[c]), c))
    only = [c for c in sorted(range(n_src), key=lambda c: (int(v[c]), c)) if v[c] <= audit.v_lo and has_images[c]][
        :ncol
    ]
    shared = [c for c in order if v[c] > audit.v_lo][:ncol]
    best = {c: int(p_s[:, c].argmax()) for c in set(only) | set(shared)}
    fig_rows = ["source-only\n(D^c)", "shared\n(D^c)", "target images where\nthe shared class manifests"]
    if not any(has_images[c] for c in shared):
        fig_rows.pop(1)
    fig, axes = plt.subplots(len(fig_rows), ncol, figsize=(1.55 * ncol, 2.1 * len(fig_rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()

    def source_image(c: int) -> Tensor:
        return world.source_data[audit.class_images(c)[0]][0]

    def name_v(c: int) -> str:
        return f"{_short(names[c])}\nv = {int(v[c])}"

    for j, c in enumerate(only):
        wrong = truth is not None and c not in truth
        show_image(axes[0, j], source_image(c), name_v(c) + ("\n(planted: shared)" if wrong else ""))
        if wrong:
            axes[0, j].title.set_color("tab:red")
    for j, c in enumerate(shared):
        if len(fig_rows) == 3 and has_images[c]:
            show_image(axes[1, j], source_image(c), name_v(c))
        elif len(fig_rows) == 3:
            ax = axes[1, j]
            ax.text(
                0.5, 0.5, f"{name_v(c)}\n(no D^c image)", ha="center", va="center", fontsize=9, transform=ax.transAxes
            )
        x_t, y_t = D_t[best[c]]
        title = f"a {world.target_classes[int(y_t)]!r} image\np_c under M^s = {float(p_s[best[c], c]):.2f}"
        if len(fig_rows) == 2:
            title = f"{_short(names[c])} (v = {int(v[c])}):\n" + title
        show_image(axes[-1, j], x_t, title)
    for r, label in enumerate(fig_rows):
        axes[r, 0].text(-0.15, 0.5, label, ha="right", va="center", fontsize=9, transform=axes[r, 0].transAxes)
    fig.suptitle(
        f"{world.name}: source-only classes (v <= {audit.v_lo:g}),\nshared classes and where they appear in D^t",
        fontsize=10,
    )
    fig.tight_layout()
    rows = [
        (row, c, names[c], int(v[c]), bool(has_images[c]), float(p_s[best[c], c]), best[c])
        for row, cs in (("source-only", only), ("shared", shared))
        for c in cs
    ]
    return fig, pd.DataFrame(rows, columns=["row", "class", "name", "v", "has_images", "p_max", "best_target"])
