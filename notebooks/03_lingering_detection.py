# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
# Installs lingerlab when this notebook runs in Colab; does nothing elsewhere.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "lingerlab[book] @ git+https://github.com/lingerlab/lingerlab"])

# %% [markdown]
# # 3. Lingering memories (Eq. 3)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/03_lingering_detection.ipynb)
#
# Fine-tuning replaces the source head $H(M^s)$ with a fresh two-class head and trains the whole
# network on the target task. Nothing in that objective asks the backbone to keep the source-only
# classes of notebook 2 apart, but nothing asks it to forget them either. To see what is left, the
# paper reads the fine-tuned backbone through the *old* head:
#
# $$ M^{st} = B(M^t) + H(M^s), \qquad
#    L = \{c \in F^{s\setminus t} : \operatorname{mean}_{x \in D^c}\, p_c(M^{st}(x)) > p^{lo}\}
#    \qquad \text{(Eq. 3)} $$
#
# $D^c$ are source images of class $c$. If the fine-tuned features still separate class $c$ the way
# the source head expects, $M^{st}$ still gives $c$ a large probability on its own images: the memory
# *lingers*. The paper's $p^{lo} = 0.01$ is ten times the chance score $1/1000$ of a no-skill ImageNet
# classifier; `lingering.default_p_lo` keeps that ratio for any label space, $p^{lo} = 10/n$ (capped
# at $0.5$). Over the $n = 24$ classes of `shapes`, an absolute $0.01$ would sit below chance ($1/24$)
# and flag every class.
#
# This notebook measures $p_c$ under $M^s$ and $M^{st}$, the size of $L$ against $p^{lo}$, a control
# that rules out the head as the source of the signal, and the role of BatchNorm statistics, which
# the paper does not discuss.
#
# :::{admonition} What you will learn
# :class: tip
# - how Eq. 3 reads the fine-tuned backbone through the source head ({term}`M^st`) to find the
#   lingering set {term}`L`, and how its threshold {term}`p_lo` scales with the label space;
# - why a control with a scratch backbone is the null for $|L|$;
# - what BatchNorm's running statistics do to memories, tested rather than assumed.
#
# **Assumes:** notebook 2 (the set {term}`F`); what a BatchNorm layer computes in train and eval mode.
# Terms: {term}`D^c`, {term}`M^b`.
# :::

# %% tags=["parameters"]
world = "lite0"
profile = "smoke"
seed = 0
device = "auto"

# %% tags=["hide-input"]
import copy
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import lingerlab as ll
from lingerlab.models import copy_batchnorm_stats

# Eq. 3 is cached for every source class; in lite0 most of the 1000 classes have no D^c images and
# the first (cold-cache) computation warns about them. Those classes are simply not testable.
warnings.filterwarnings("ignore", message=r".*classes have no images in source_data.*")

ch = ll.chapter(world, profile, seed, device, progress=False)
dev, world_, audit = ch.device, ch.world, ch.audit
n_src = len(world_.source_classes)
head = world_.spec.head
recipe = audit.recipe("M^t")
chance = 1 / n_src
print(f"world={world_.name} profile={profile} seed={seed}")
print(f"source classes: {n_src}; chance p_c = 1/{n_src} = {chance:.4f}; p_lo = {audit.p_lo:g} "
      f"({audit.p_lo / chance:.2f} x chance)")
print(f"Eq. 2: k = {audit.k}, v_lo = {audit.v_lo:g}; fine-tuning recipe: "
      + ", ".join(f"{k}={getattr(recipe, k)}" for k in ("lr", "epochs", "optimizer", "bn")))

# %% [markdown]
# ## The source photos $D^c$
#
# Eq. 3 needs images of each source class. A world that is built from photos shipped by installed
# packages lists every candidate (`spec.provenance["photo_table"]`): `foolbox`'s ImageNet
# validation photos keep the class their file names; the sample photos of scikit-image and matplotlib
# that show one ImageNet object are labelled by $M^s$'s top-1, whose probability `p_label` is kept;
# photos that show a face are target-class images (notebook 1's Figure 1) and stay out of $D^c$; the
# rest say why they are left out. Each photo enters $D^c$ as its centre crop plus seeded augmented
# views, and every interval over composites treats the views of one photo as one cluster.

# %% tags=["hide-input"]
photos = pd.DataFrame(world_.spec.provenance.get("photo_table", []))
if len(photos):
    n_views = len(world_.source_data) // max(1, int((photos["use"] == "source").sum()))
    print(f"{int((photos['use'] == 'source').sum())} photos in D^c, {n_views} views each "
          f"({len(world_.source_data)} images); {int((photos['use'] == 'target').sum())} face photos kept for Figure 1; "
          f"{int((photos['use'] == 'excluded').sum())} left out")
    display_photos = photos[["photo", "use", "label_name", "label_from", "p_label", "top1_name", "p_top1", "reason"]]
else:
    display_photos = pd.DataFrame({"D^c": [f"{len(world_.source_data)} images of the world's own source data"]})
display_photos.round(3)

# %% [markdown]
# (nb03-eq3)=
# ## Eq. 3: mean $p_c$ under $M^s$ and under $M^{st}$
#
# `Audit.lingering` builds $M^{st}$ from the cached $M^t$ and scores every class of $F$ on its own
# images. A class of $F$ can only be tested if the world has images of it: in `lite0` the source
# images are the photos above, so most of $F$ (which spans nearly all of ImageNet's classes)
# has no $D^c$.

# %% tags=["trained"]
table = audit.lingering(seed)
tested = table[table["n_images"] > 0].sort_values(["p_source", "class"], ascending=[False, True]).reset_index(drop=True)
classes = tested["class"].tolist()
print(f"|F| = {len(table)} source-only classes, {len(tested)} with images in D^c (testable)")
print(f"|L| = {int(tested['lingering'].sum())} of {len(tested)} testable classes have mean p_c(M^st) > p_lo = {audit.p_lo:g}")
tested[["class", "name", "v", "n_images", "p_source", "p_st", "lingering"]].round(3)

# %% [markdown]
# Each class is a pair of dots: its mean $p_c$ under the source model (what there was to remember)
# and under $M^{st}$ (what is left). The dashed line is $p^{lo}$, the dotted one chance, $1/n$.
# The axis is logarithmic because the interesting range runs from chance to nearly one.

# %% tags=["hide-input", "remove-output"]
fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(tested) + 1.8))
x = np.arange(len(tested))  # one row per class (categorical axis: points, no lines between classes)
floor = 1e-5
ps, pst = tested["p_source"].clip(lower=floor), tested["p_st"].clip(lower=floor)
ax.hlines(x, np.minimum(ps, pst), np.maximum(ps, pst), color="lightgray", lw=2)
ax.plot(ps, x, "o", color="tab:gray", label="M^s")
ax.plot(pst, x, "o", color="tab:red", label="M^st = B(M^t) + H(M^s)")


def class_rows(ax, title: str, labels: bool = True) -> None:
    """The axes of a per-class plot of mean p_c: one row per testable class, p_lo (dashed) and chance
    (dotted) lines, a log axis, the legend below."""
    ax.axvline(audit.p_lo, ls="--", c="k", lw=1, label=f"p_lo = {audit.p_lo:g}" if labels else None)
    ax.axvline(chance, ls=":", c="k", lw=1, label=f"chance = 1/{n_src}" if labels else None)
    ax.set(xscale="log", xlim=(floor / 2, 1.5), ylim=(len(tested) - 0.5, -0.5), xlabel="mean p_c over D^c (log scale)")
    ax.set_yticks(x, [n[:24] for n in tested["name"]])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.09 - 1.0 / max(len(tested), 1)), ncol=2,
              frameon=False)
    ax.figure.tight_layout()


class_rows(ax, f"{world_.name}: source-only classes under M^s and M^st (Eq. 3)")
ll.publish(fig, f"03_{world_.name}_p_source_vs_st", key="nb03_eq3_fig")

# %% [markdown]
# ```{glue:figure} nb03_eq3_fig
# :name: fig-nb03-eq3
#
# **Eq. 3: what there was to remember and what is left.** For each testable source-only class (with
# {term}`D^c` photos), its mean $p_c$ over its own images under {term}`M^s` (grey) and under
# {term}`M^st` (red; log scale). Dashed: {term}`p_lo`, above which a class is in {term}`L`; dotted:
# chance, $1/n$.
# ```

# %% [markdown]
# ## A control: is the signal in the backbone or in the head?
#
# $M^{st}$ pairs a fine-tuned backbone with the source head. Could the head alone produce high
# $p_c$ on source images, whatever backbone feeds it? The control swaps in the backbone of the
# scratch baseline $M^b$ (same architecture, never saw the source data): $B(M^b) + H(M^s)$. Its
# features share nothing with the ones the source head was trained on, so it should score source
# images near chance and find (almost) no lingering classes. Its $|L|$ is the empirical null for
# $|L|$.

# %% tags=["hide-input"]
M_s = audit.source_model()
M_b = audit.model("M^b", seed)
try:
    control = ll.source_target_model(M_b, M_s, head=head)
except ValueError as err:  # a world whose scratch architecture differs from the source one
    control = None
    print(f"control not available in world {world_.name!r}: {err}")


def mean_p(model: torch.nn.Module) -> np.ndarray:
    """Mean p_c over D^c for every testable class of F (the statistic of Eq. 3)."""
    means, _ = ll.class_mean_probs(model, world_.source_data)
    return means.cpu().double().numpy()[classes]


# %% [markdown]
# (nb03-bn)=
# ## BatchNorm statistics: lost, or only masked?
#
# A BatchNorm layer normalises each channel with a running mean and variance. During fine-tuning in
# train mode those statistics drift toward the target data (faces at 112 px, or glyphs), even when the
# weights barely move; at evaluation the source images are then normalised with target statistics.
# A source-only class can look "forgotten" only because its features are now badly scaled. Three
# diagnostics separate the two:
#
# - **BN updated** (the default recipe): statistics follow the target data during fine-tuning.
# - **BN frozen** (a recipe with `bn="freeze"`): BatchNorm layers stay in eval mode, running
#   statistics keep their source values (their affine weights still train).
# - **BN updated, source statistics restored** (`st_model(seed, bn="source")`): the updated model
#   with $M^s$'s running statistics copied back. If its $p_c$ returns, the memory was masked, not lost.
#
# Both fine-tuned models use the same data, seed and schedule; only the BatchNorm policy differs.
#
# The table also gives each row's target validation accuracy: of $M^t$ itself for the two policies,
# of $M^t$ with the source statistics copied in for the restored rows (what the restoration would
# cost the target task), and of $M^b$ for the control.

# %% tags=["hide-input", "trained"]
done = {"update": "updated", "freeze": "frozen"}
models = {"M^s": M_s}
accuracy = {"M^s": float("nan")}  # target validation accuracy of the M^t each row's backbone comes from
for policy in ("update", "freeze"):
    M_t = audit.target_model(seed, bn=policy)
    M_t_src = copy_batchnorm_stats(copy.deepcopy(M_t), M_s)  # M^t with M^s's running statistics
    models[f"M^st, BN {done[policy]}"] = ll.source_target_model(M_t, M_s, head=head)
    models[f"M^st, BN {done[policy]}, source stats restored"] = ll.source_target_model(M_t, M_s, bn="source", head=head)
    accuracy[f"M^st, BN {done[policy]}"] = audit.accuracy(M_t)
    accuracy[f"M^st, BN {done[policy]}, source stats restored"] = audit.accuracy(M_t_src)
if control is not None:
    models["control: B(M^b) + H(M^s)"] = control
    accuracy["control: B(M^b) + H(M^s)"] = audit.accuracy(M_b)
P = pd.DataFrame({name: mean_p(m) for name, m in models.items()}, index=tested["name"])

default_bn = recipe.bn
assert np.allclose(P[f"M^st, BN {done[default_bn]}"], tested["p_st"], atol=1e-3), "Audit's M^st disagrees with the recomputed one"

p_los = list(dict.fromkeys([audit.p_lo, 0.01]))  # the audit's p_lo and the paper's absolute 0.01
rows = []
for name in P.columns:
    p = P[name].to_numpy()
    rows.append({"model": name, "target val acc of its M^t": accuracy[name],
                 **{f"|L| (p_lo = {t:.3g})": int((p > t).sum()) for t in p_los},
                 "mean p_c": p.mean(), "median p_c": np.median(p)})
bn_table = pd.DataFrame(rows).set_index("model")
print(f"{len(tested)} testable source-only classes; chance p_c = {chance:.4f}")
bn_table.round(3)

# %% [markdown]
# The strip plot shows the same numbers per class: one column per class, one colour per model.

# %% tags=["hide-input", "remove-output"]
style = {"M^s": ("tab:gray", "o"), "M^st, BN updated": ("tab:red", "o"),
         "M^st, BN updated, source stats restored": ("tab:orange", "^"), "M^st, BN frozen": ("tab:blue", "s"),
         "M^st, BN frozen, source stats restored": ("tab:cyan", "x"), "control: B(M^b) + H(M^s)": ("k", "v")}
fig, ax = plt.subplots(figsize=(7.5, 0.36 * len(tested) + 2.6))
for j, name in enumerate(P.columns):
    col, marker = style.get(name, ("tab:purple", "d"))
    ax.plot(P[name].clip(lower=floor), x + (j - len(P.columns) / 2) * 0.1, marker, color=col, ms=5, label=name,
            ls="none")
class_rows(ax, f"{world_.name}: BatchNorm policy and the control\n(dashed: p_lo, dotted: chance)", labels=False)
ll.publish(fig, f"03_{world_.name}_batchnorm", key="nb03_bn_fig")

# %% [markdown]
# ```{glue:figure} nb03_bn_fig
# :name: fig-nb03-bn
#
# **BatchNorm policy and the control, per class.** Mean $p_c$ of each testable class of {term}`F` under
# {term}`M^s`, under {term}`M^st` for the two BatchNorm policies (with and without the source running
# statistics copied back), and under the control $B(M^b) + H(M^s)$. Dashed: {term}`p_lo`; dotted: chance.
# ```

# %% [markdown]
# A natural hypothesis about BatchNorm: freezing its statistics keeps most memories, updating them
# loses most, and restoring the source statistics brings them back. The lines below test each part
# of it on the table above rather than assert it. The last lines give one quantity that bears on it: BatchNorm's running
# averages move by `momentum` per training step, so after $s$ steps a fraction $(1 - \text{momentum})^s$
# of the source statistics is still in them.

# %% tags=["hide-input"]
L_of = {name: int((P[name] > audit.p_lo).sum()) for name in P.columns}
n = len(tested)
upd, frz, rst = "M^st, BN updated", "M^st, BN frozen", "M^st, BN updated, source stats restored"
print(f"M^s itself: {L_of['M^s']} of {n} above p_lo")
for name in (upd, frz, rst):
    print(f"{name:42s} |L| = {L_of[name]:3d} of {n}, mean p_c {P[name].mean():.3f}")
lead = [("BN updated loses most (|L| below half of the testable classes)", L_of[upd] < n / 2),
        ("BN frozen keeps more than BN updated", L_of[frz] > L_of[upd]),
        ("restoring source statistics raises |L| of the updated model", L_of[rst] > L_of[upd]),
        ("restoring source statistics raises mean p_c of the updated model", P[rst].mean() > P[upd].mean())]
for claim, holds in lead:
    print(f"  {claim}: {'yes' if holds else 'NO (not reproduced here)'}")
if control is not None:
    print(f"control B(M^b) + H(M^s): {L_of['control: B(M^b) + H(M^s)']} of {n} above p_lo, "
          f"mean p_c {P['control: B(M^b) + H(M^s)'].mean():.4f} (chance {chance:.4f})")
momenta = sorted({round(float(m.momentum), 4) for m in ll.batchnorm_layers(M_s).values() if m.momentum is not None})
n_train = len(audit.target_train_indices())
steps = recipe.epochs * -(-n_train // recipe.batch_size)
for m in momenta:
    print(f"BatchNorm momentum of M^s: {m:g}; {steps} fine-tuning steps -> {(1 - m) ** steps:.3f} of the "
          "source running statistics remain with BN updated")

# %% [markdown]
# How to read these lines. When the remaining fraction printed last is large, "BN updated" still
# carries most of the source statistics: the updated and the restored rows can then hardly differ,
# and the hypothesis's contrast (which needs statistics that actually moved: a larger momentum or
# many more steps) cannot appear. Freezing the statistics does not freeze the network either: the
# convolutions and BatchNorm's affine weights still train, so "BN frozen" can lose memories too.
# Conversely, when the statistics did move (a remaining fraction near zero), the fine-tuned weights have
# adapted to the new statistics, and putting the old ones back can hurt both the memories and the
# target task (the accuracy column of the table would show the latter; where the statistics barely
# moved, it shows no cost).
# Where a line says NO, that part of the hypothesis does not hold with this world's recipe.

# %% [markdown]
# ## The size of L against $p^{lo}$
#
# $p^{lo}$ is the only knob of Eq. 3. The curve counts the testable classes above each threshold:
# for $M^s$ (the ceiling: what was there to remember), for each $M^{st}$ and for the control (the
# floor). A gap between the $M^{st}$ curves and the control over a wide range of thresholds means
# the conclusion does not hinge on the exact choice of $p^{lo}$.

# %% tags=["hide-input", "remove-output"]
p_grid = np.logspace(-5, 0, 101)
fig, ax = plt.subplots(figsize=(7.5, 4.6))
for name in P.columns:
    col, _ = style.get(name, ("tab:purple", "d"))
    ax.step(p_grid, [(P[name] > t).sum() for t in p_grid], where="post", color=col, label=name,
            ls="--" if "restored" in name else "-")
ax.axvline(audit.p_lo, ls="--", c="k", lw=1)
ax.axvline(chance, ls=":", c="k", lw=1)
ax.set_xscale("log")
ax.set_xlabel("p_lo")
ax.set_ylabel("|L|")
ax.set_title(f"{world_.name}: |L| against p_lo ({n} testable classes)\ndashed: the audit's p_lo, dotted: chance",
             fontsize=10)
ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=2, frameon=False)
fig.tight_layout()
ll.publish(fig, f"03_{world_.name}_L_vs_p_lo", key="nb03_L_vs_p_lo_fig")

# %% [markdown]
# ```{glue:figure} nb03_L_vs_p_lo_fig
# :name: fig-nb03-L-vs-p-lo
#
# **The size of {term}`L` against the threshold of Eq. 3.** The number of testable classes whose mean
# $p_c$ exceeds each threshold, per model (dashed lines: source statistics restored). Vertical lines:
# the audit's {term}`p_lo` (dashed) and chance (dotted). The counts at a few thresholds:
# ```

# %% tags=["hide-input", "trained"]
thresholds = sorted({chance, 0.01, audit.p_lo, 0.1, 0.5})
pd.DataFrame({name: [int((P[name] > t).sum()) for t in thresholds] for name in P.columns},
             index=pd.Index([f"{t:.4g}" for t in thresholds], name="p_lo")).T

# %% [markdown]
# ## The fine-tuning runs behind these numbers
#
# A lingering memory only matters in a model that learned its target task. The histories of the two
# fine-tuned models and the final accuracy of the scratch baseline (whose backbone fed the control):

# %% tags=["hide-input", "remove-output"]
hist = pd.concat({f"M^t, BN {done[policy]}": audit.history("M^t", seed, bn=policy)[["train_loss", "train_acc", "val_acc"]]
                  for policy in ("update", "freeze")}, axis=1)
scratch_hist = audit.history("M^b", seed)
fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2))
for policy, col in (("update", "tab:red"), ("freeze", "tab:blue")):
    h = hist[f"M^t, BN {done[policy]}"]
    axes[0].plot(h.index, h["train_loss"], "o-", color=col, label=f"M^t, BN {done[policy]}")
    axes[1].plot(h["val_acc"].dropna(), "o-", color=col, label=f"M^t, BN {done[policy]}")
axes[1].plot(scratch_hist["val_acc"].dropna(), ".-", color="k", label="M^b (scratch)")  # validated 4 times
axes[0].set_ylabel("training loss")
axes[1].axhline(1 / len(world_.target_classes), ls=":", c="k", lw=1, label="chance")
axes[1].set_ylabel("target validation accuracy")
for ax in axes:
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
fig.tight_layout()
ll.publish(fig, f"03_{world_.name}_histories", key="nb03_histories_fig")

# %% [markdown]
# ```{glue:figure} nb03_histories_fig
# :name: fig-nb03-histories
#
# **The fine-tuning runs.** Training loss per epoch (left) and target validation accuracy (right) of
# the two fine-tuned models ({term}`M^t` with BatchNorm statistics updated or frozen), and the
# validation accuracy of the scratch baseline {term}`M^b` whose backbone fed the control.
# ```

# %%
print(f"M^b (scratch) final validation accuracy: {audit.accuracy(M_b):.3f} after {len(scratch_hist)} epochs")
hist.round(3)

# %% [markdown]
# ## The numbers of this page
#
# The numbers this page contributes to the [results page](06_results.ipynb), each next to its reference: $|L|$ next to
# the number of testable classes and to the control's $|L|$, mean $p_c$ next to chance.

# %% tags=["hide-input"]
ctrl = "control: B(M^b) + H(M^s)"
summary = {
    "world": world_.name,
    "|F|": len(table),
    "testable classes of F (with D^c images)": n,
    "p_lo": audit.p_lo,
    "chance p_c (1 / #source classes)": round(chance, 4),
    "mean p_c, M^s": round(float(P["M^s"].mean()), 3),
}
for policy in ("updated", "frozen"):
    summary[f"|L|, BN {policy}"] = L_of[f"M^st, BN {policy}"]
    summary[f"mean p_c, M^st, BN {policy}"] = round(float(P[f"M^st, BN {policy}"].mean()), 3)
summary["|L|, BN updated + source stats"] = L_of["M^st, BN updated, source stats restored"]
summary["mean p_c, BN updated + source stats"] = round(float(P["M^st, BN updated, source stats restored"].mean()), 3)
if control is not None:
    summary["|L|, control (null)"] = L_of[ctrl]
    summary["mean p_c, control (null)"] = round(float(P[ctrl].mean()), 4)
summary["val acc, M^t BN updated"] = round(accuracy["M^st, BN updated"], 3)
summary["val acc, M^t BN updated + source stats"] = round(accuracy["M^st, BN updated, source stats restored"], 3)
summary["val acc, M^t BN frozen"] = round(accuracy["M^st, BN frozen"], 3)
summary["val acc, M^b"] = round(audit.accuracy(M_b), 3)
summary["val acc, chance (1 / #target classes)"] = round(1 / len(world_.target_classes), 3)
summary = pd.Series(summary, dtype=object).to_frame("value")
ll.glue("nb03_summary", summary, display=False)
ll.glue("nb03_L_bn_updated", L_of["M^st, BN updated"], display=False)
ll.glue("nb03_L_bn_frozen", L_of["M^st, BN frozen"], display=False)
ll.glue("nb03_L_source_stats", L_of["M^st, BN updated, source stats restored"], display=False)
ll.glue("nb03_testable", n, display=False)
from lingerlab import coverage  # noqa: E402  (this page's rows of the results page's coverage matrix)

n_ctrl = L_of[ctrl] if control is not None else None
coverage.glue_claims("nb03_claims", [
    coverage.claim(4, "Some source-only classes linger in the fine-tuned backbone", "Eq. 3", world_.name,
                   coverage.count_status(L_of[upd], n_ctrl) if control is not None else "inconclusive",
                   f"|L| = {L_of[upd]} of {n} testable classes with BatchNorm updated; control (scratch backbone) "
                   f"{n_ctrl if control is not None else 'not available'}", "03_lingering_detection", "nb03-eq3"),
    coverage.claim(5, "Updating BatchNorm statistics erases memories (this book's hypothesis)", "Eq. 3", world_.name,
                   coverage.majority_status("holds" if h else "does not hold" for _, h in lead),
                   "; ".join(f"{c}: {'yes' if h else 'no'}" for c, h in lead), "03_lingering_detection", "nb03-bn"),
])
summary

# %% [markdown]
# ## Summary
#
# - Eq. 3 reads the fine-tuned backbone through the source head: with BatchNorm statistics updated,
#   {glue:text}`nb03_L_bn_updated` of the {glue:text}`nb03_testable` testable source-only classes stay
#   above {term}`p_lo` ({numref}`fig-nb03-eq3`); the control with a scratch backbone is the null for
#   that count (table above).
# - The BatchNorm hypothesis is tested, not assumed: BN frozen keeps {glue:text}`nb03_L_bn_frozen`, and
#   restoring the source statistics gives {glue:text}`nb03_L_source_stats` ({numref}`fig-nb03-bn`).
# - The conclusion does not hinge on the exact threshold when the curves of {numref}`fig-nb03-L-vs-p-lo`
#   stay apart from the control over a wide range.
#
# ## Exercises
#
# 1. Use the paper's absolute threshold, $p^{lo} = 0.01$, in `shapes`. How many classes linger, and why
#    is that count meaningless there?
#
#    :::{admonition} Solution
#    :class: dropdown
#    Run with `world = "shapes"` and read the column `|L| (p_lo = 0.01)` of the BatchNorm table. Over a
#    few dozen classes chance is far above an absolute $0.01$, so the control passes it too: a
#    threshold only means something relative to chance, which is why `default_p_lo` scales it.
#    :::
#
# 2. Why does the control use the backbone of the scratch baseline rather than a randomly initialised
#    backbone?
#
#    :::{admonition} Solution
#    :class: dropdown
#    A random backbone gives features the head has never seen *and* no trained structure; the scratch
#    backbone is trained on the same target task as {term}`M^t` but never saw the source data. Any
#    lingering it shows comes from the head and the task, not from memories, so it is the right null.
#    :::
#
# 3. Compute the fraction of source running statistics left after fine-tuning if BatchNorm's momentum
#    were ten times larger. Would you expect the "restored" row to differ more from "BN updated"?
#
#    :::{admonition} Solution
#    :class: dropdown
#    ```python
#    m = 10 * momenta[0]
#    (1 - m) ** steps
#    ```
#    The smaller the remaining fraction, the more the updated statistics have moved away from the source
#    ones, and the more restoring them can change $p_c$ (and the target accuracy).
#    :::
