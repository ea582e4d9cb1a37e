"""The paper's picture figures as functions: each returns the figure and the numbers drawn in it.

- :func:`figure1`: a real target-class photo that also shows a source-only object (the paper's
  Figure 1, a dog with an espresso cup): predictions and Grad-CAM of M^t and M^b, then the same with
  the object occluded (Fig. 1c). The object is found by rule, not by hand: the most probable class of
  M^s's top ``k`` that is in F (Eq. 2), and its region is the smallest top part of M^s's Grad-CAM
  map for that class (20%, 30%, ... of the pixels, as Eq. 4's P_q) whose occlusion halves M^s's
  probability of it.
- :func:`figure2`: the paper's Figure 2, rows (a source-only image alone, a target image, the
  composite, and the composite with the source object blurred away) through M^s, M^t and M^b.
- :func:`figure4`: the paper's Figure 4, source-only classes, shared classes, and the target images in
  which the shared classes show up (Eq. 1), with their counts.

Each reads every model and stage through an ``audit.Audit``, so it works in any world. The figures
of the fair test (hijacked composites, per-class maps) are in :mod:`lingerlab.fair_test_figures`.
"""

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
    """Draw ``model``'s Grad-CAM map for its prediction on the one image ``x``, titled ``title`` with the
    predicted name and probability; return its probabilities."""
    p = _probs(model, x)[0]
    pred = int(p.argmax())
    cam_map = gradcam(model, x, torch.tensor([pred], device=x.device), layer)[0].cpu()
    show_cam(ax, x[0].cpu(), cam_map, f"{title}{names[pred]} ({p[pred]:.2f})", mask=mask)
    return p


OCCLUSION_AREAS = (0.2, 0.3, 0.4, 0.5, 0.6)  # the top parts of M^s's map figure1 tries, smallest first


def paper_arms(audit: Any) -> tuple[str, str]:
    """The arms the figures show by default, the paper's M^t and M^b: the world's fine-tuning recipe
    ``M^t`` and the first scratch arm of its fair test (``spec.comparison``). In the embedded worlds
    that is ``M^b (same data)``, trained from scratch on exactly M^t's images, as in the paper."""
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
    """Figure 1 on real photos of target class ``label`` (``photos``: name -> [3, H, W] in [0, 1] at the
    world's input size).

    Per photo: the source-only object ``c_o`` is the most probable class of M^s's top ``k`` that is in
    F (none: the row says so and shows no occlusion); its region is the top ``area`` of ``A(x, M^s, c_o)``
    (Eq. 4's top-quantile mask P_q with q = 1 - area), filled with the photo's mean colour
    (``composites.occlude``), for the first of ``areas`` at which M^s's probability of ``c_o`` falls
    below half of what it was (``object_removed``; else the last area, and ``object_removed`` is
    False). Returns the figure (one column per photo: the photo with M^s's map for ``c_o``, each
    model's map for its prediction, the occluded photo, each model's map on it) and a table:
    ``photo, object, object_in_F_rank`` (its rank in M^s's top k), ``object_has_images`` (c_o has D^c images, so Eq.
    3 can test it), ``object_in_L``, ``area``
    (occluded fraction of the pixels), ``object_removed``, ``p_object`` and ``p_object_occluded`` (M^s), and per
    model ``p_label``,
    ``p_label_occluded``, ``prediction`` and ``prediction_occluded``. ``models``: arm names (None:
    :func:`paper_arms`).
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
        xi = x[i : i + 1]
        row: dict[str, Any] = {"photo": name}
        row.update(object=None, object_in_F_rank=None, object_has_images=False, object_in_L=False, area=float("nan"))
        row.update(object_removed=False, p_object=float("nan"), p_object_occluded=float("nan"))
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
            show_cam(
                axes[0, i],
                xi[0].cpu(),
                cam_s,
                f"{name.split('.')[-1]}\nM^s: {_short(names[c_o])} ({ps[i, c_o]:.2f})",
                mask=mask,
            )
            show_image(
                axes[1 + len(models), i], x_occ[0].cpu(), f"occluded\nM^s: {_short(names[c_o])} ({p_occ[c_o]:.2f})"
            )
        else:
            show_image(axes[0, i], xi[0].cpu(), f"{name.split('.')[-1]}\nno class of F in M^s's top {k}")
            axes[1 + len(models), i].set_axis_off()
        for j, m in enumerate(models):
            for x_in, col, tag in ((xi, 1 + j, ""), (x_occ, 2 + len(models) + j, "_occluded")):
                if x_in is None:
                    axes[col, i].set_axis_off()
                    row[f"{m} p_label{tag}"], row[f"{m} prediction{tag}"] = float("nan"), None
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
    """Figure 2: the first D^c image of ``source_class`` alone, a target validation image (index
    ``target_index``; None: drawn with ``seed``), their composite (``audit.scale``, pasted at a place
    drawn with ``seed``) and the composite on the blurred source image, through M^s (map for
    ``source_class``) and each of ``models`` (map for its prediction; the pasted patch outlined).
    Returns the figure and one row per (input, model): ``prediction``, ``p(true target class)`` (NaN
    on the source-only image, which has none) and, for M^s, ``p(source class)``. ``models``: arm names
    (None: :func:`paper_arms`)."""
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
        records.append(
            {
                "input": row_name,
                "model": "M^s",
                "prediction": names[int(p_s.argmax())],
                "p(true target class)": float("nan"),
                "p(source class)": float(p_s[source_class]),
            }
        )
        for col, m in enumerate(models, start=2):
            p = _show_prediction(axes[r, col], trained[m], x, layer, t_names, f"{m}: ", mask)
            records.append(
                {
                    "input": row_name,
                    "model": m,
                    "prediction": t_names[int(p.argmax())],
                    "p(true target class)": float(p[c_t]) if r else float("nan"),
                    "p(source class)": float("nan"),
                }
            )
    fig.suptitle(
        f"{world.name}: Grad-CAM of M^s ({_short(names[source_class])}) and of {', '.join(models)}\n"
        f"(their predictions); white outline: the pasted {t_names[c_t]!r} image",
        fontsize=10,
    )
    fig.tight_layout()
    return fig, pd.DataFrame(records)


def _short(s: str, n: int = 22) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def figure4(audit: Any, ncol: int = 4) -> tuple[Any, pd.DataFrame]:
    """Figure 4: which source classes Eq. 1 finds in the target data and which never appear.

    Top row: a D^c image of each of the ``ncol`` source-only classes (``v <= v_lo``, with D^c images)
    of lowest ``v``; middle row: a D^c image of each of the ``ncol`` most prevalent (shared) classes,
    or their name where the world has no image of them; bottom row: for each shared class, the target
    image of D^t on which M^s gives it the highest probability (where it "manifests"). In a world with
    planted truth, a source-only pick that was planted as shared is titled in red. Returns the figure
    and one row per class shown: ``row, class, name, v, has_images, p_max`` (M^s's highest
    probability of the class over D^t), ``best_target`` (that image's index in D^t)."""
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

    for j, c in enumerate(only):
        wrong = truth is not None and c not in truth
        show_image(
            axes[0, j],
            source_image(c),
            f"{_short(names[c])}\nv = {int(v[c])}" + ("\n(planted: shared)" if wrong else ""),
        )
        if wrong:
            axes[0, j].title.set_color("tab:red")
    for j, c in enumerate(shared):
        if len(fig_rows) == 3:
            if has_images[c]:
                show_image(axes[1, j], source_image(c), f"{_short(names[c])}\nv = {int(v[c])}")
            else:
                axes[1, j].text(
                    0.5,
                    0.5,
                    f"{_short(names[c])}\nv = {int(v[c])}\n(no D^c image)",
                    ha="center",
                    va="center",
                    fontsize=9,
                    transform=axes[1, j].transAxes,
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
        {
            "row": row,
            "class": c,
            "name": names[c],
            "v": int(v[c]),
            "has_images": bool(has_images[c]),
            "p_max": float(p_s[best[c], c]),
            "best_target": best[c],
        }
        for row, cs in (("source-only", only), ("shared", shared))
        for c in cs
    ]
    return fig, pd.DataFrame(rows)
