# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# # 2. Source-only features (Eqs. 1-2)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/02_source_only_features.ipynb)
#
# A memory can only *linger* if fine-tuning never had a reason to touch it: the source class must be
# (nearly) absent from the target data. The paper finds those classes with the source model itself.
# Every target training image $x \in D^t$ is shown to $M^s$; a source class that lands among the
# top-$k$ predictions of many target images manifests in the target domain, one that (almost) never
# does is **source-only**:
#
# $$ v(c_s) = \left|\{x \in D^t : c_s \in \mathrm{top}_k(M^s(x))\}\right| \qquad \text{(Eq. 1)} $$
#
# $$ F^{s\setminus t} = \{c \in C(D^s) : v(c) \le v^{lo}\} \qquad \text{(Eq. 2)} $$
#
# This notebook computes both, shows how $F$ depends on its two knobs $k$ and $v^{lo}$, draws the
# paper's Figure 4 (source-only classes, shared classes, and target images in which the shared
# classes show up) and, in the procedural `shapes` world, checks $F$ against the planted truth:
# there we *know* which source classes were pasted into target images and which never were.

# %% tags=["parameters"]
world = "shapes"
real_world = "lite0"  # Figure 4 on real photos and a real ImageNet model
profile = "smoke"
seed = 0
device = "auto"

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch

import lingerlab as ll

ch = ll.chapter(world, profile, seed, device, progress=False)
dev, world_, audit = ch.device, ch.world, ch.audit
names = list(world_.source_classes)
n_src = len(names)
truth = world_.planted_source_only  # None in worlds without planted ground truth (lite0, paper)
D_t = audit.target_data()
print(f"world={world_.name} profile={profile} seed={seed}")
print(f"source classes: {n_src}; target classes: {world_.target_classes}; |D^t| = {len(D_t)} images")
print(f"Eq. 1 k = {audit.k} (features.default_k({n_src})); Eq. 2 v_lo = {audit.v_lo:g}")
if truth is not None:
    print(f"planted truth: {len(world_.planted_shared)} shared classes, {len(truth)} source-only classes")

# %% [markdown]
# ## Eq. 1: how often each source class shows up in the target data
#
# $D^t$ is exactly the set of images $M^t$ is fine-tuned on (in `shapes`, the small fine-tuning
# subset, not the large set the scratch baseline trains on): a class is "seen" during fine-tuning
# only through those images. One batched forward pass of $M^s$ over $D^t$ gives every image's
# logits; the counts for any $k$ then come from the same logits (`Audit.logits` caches them, so the
# model never runs twice). The audit's own `counts()` (Eq. 1 at the default $k$) must agree.

# %% tags=["hide-input"]
logits_s = audit.logits("M^s", D_t)  # [|D^t|, #source classes], one forward pass, cached on disk


def counts_at(k: int) -> torch.Tensor:
    """Eq. 1 from the cached logits: v(c) = #images whose top-k holds c."""
    return torch.bincount(logits_s.float().topk(k, dim=1).indices.flatten(), minlength=n_src)


v = counts_at(audit.k)
F = ll.source_only(v, audit.v_lo)
print(f"Eq. 1 from the cached logits equals Audit.counts() at k = {audit.k}: {torch.equal(v, audit.counts())}")
print(f"sum of v(c) = {int(v.sum())} = k x |D^t| = {audit.k} x {len(D_t)}")
print(f"classes with v(c) = 0: {int((v == 0).sum())} of {n_src}; |F| at v_lo = {audit.v_lo:g}: {len(F)}")


# %% tags=["hide-input"]
def status_of(c: int) -> str:
    """Planted status of source class c (shapes); 'unknown' in worlds without planted truth."""
    if truth is None:
        return "unknown"
    if c in truth:
        return "source-only"
    if c in world_.spec.planted.lookalike:
        return "shared: look-alike"
    return "shared: co-occurring"


v_table = pd.DataFrame({"class": range(n_src), "name": names, "v": v.numpy(),
                        "in F": [bool(v[c] <= audit.v_lo) for c in range(n_src)],
                        "planted": [status_of(c) for c in range(n_src)]})
v_table = v_table.sort_values(["v", "class"], ascending=[False, True], kind="stable").reset_index(drop=True)
v_table.head(12)

# %% [markdown]
# The bar plot sorts the source classes by $v(c)$ (the 40 most prevalent when there are more). In
# `shapes` the colours are the planted truth. The glyph look-alikes (source classes drawn with the
# target classes' own shapes: this world's cat breeds) and the co-occurring objects (pasted into
# target images: this world's tennis balls) are there in the target data, so they should sit on the
# left, above the dashed $v^{lo}$ line, and the source-only classes on the right, below it. Whether
# they do is the first check of Eq. 1.

# %% tags=["hide-input"]
colours = {"source-only": "tab:blue", "shared: look-alike": "tab:red", "shared: co-occurring": "tab:orange",
           "unknown": "tab:gray"}
shown = v_table.head(40)  # every class in shapes; the 40 most prevalent of ImageNet's 1000 in lite0
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1.2]})
bar_colours = [colours[s] for s in shown["planted"]]
xs = np.arange(len(shown))
ax0.bar(xs, shown["v"], color=bar_colours, width=0.8)
ax0.scatter(xs, shown["v"], c=bar_colours, s=14, zorder=3)  # so that classes with v = 0 show their colour
ax0.axhline(audit.v_lo + 0.5, ls="--", c="k", lw=1, label=f"v_lo = {audit.v_lo:g}")
ax0.set_xticks(xs, [n[:20] for n in shown["name"]], rotation=75, fontsize=7)
for tick, col in zip(ax0.get_xticklabels(), bar_colours):
    tick.set_color(col)
if len(shown) < n_src:
    ax0.text(0.99, 0.6, f"{n_src - len(shown)} further classes not shown,\n{int((v == 0).sum())} of them with v = 0",
             ha="right", transform=ax0.transAxes, fontsize=8)
ax0.set_ylabel(f"v(c), k = {audit.k}")
handles = [Patch(color=colours[s], label=s) for s in dict.fromkeys(shown["planted"]) if s != "unknown"]
ax0.legend(handles=handles + [ax0.lines[0]], fontsize=8)
ax0.set_title(f"Eq. 1 on {world_.name}: v(c) = #target images with c in M^s's top-{audit.k}")
ax1.hist(v.numpy(), bins=np.arange(int(v.max()) + 2) - 0.5 if int(v.max()) < 60 else 30, color="tab:gray")
ax1.set_yscale("log")
ax1.set_xlabel("v(c)")
ax1.set_ylabel("# source classes")
ax1.set_title("distribution of v(c)")
fig.tight_layout()
ll.savefig(fig, f"02_{world_.name}_v_distribution")
plt.show()

# %% [markdown]
# ## Eq. 2: the size of F against $v^{lo}$ and $k$
#
# $v^{lo}$ is how many target images a class may appear in and still count as source-only
# (0: never; the default here is the world's choice, about 1% of $D^t$). $k$ is how generous the
# "appears in" test is. Both move $|F|$ in the same direction: a larger $v^{lo}$ admits more classes,
# a larger $k$ raises every $v(c)$ (the counts always sum to $k\,|D^t|$) and pushes classes out.

# %% tags=["hide-input"]
k_grid = sorted({1, 2, 3, 5, audit.k} - {k for k in (1, 2, 3, 5) if k > n_src})
v_lo_grid = sorted({0, 1, 2, 5, 10, 20, int(audit.v_lo)})
V = {k: counts_at(k) for k in k_grid}  # Eq. 1 once per k, from the same logits
size_F = pd.DataFrame({f"v_lo={t}": [len(ll.source_only(V[k], t)) for k in k_grid] for t in v_lo_grid},
                      index=pd.Index([f"k={k}" for k in k_grid], name="|F|"))

fig, ax = plt.subplots(figsize=(6, 3.6))
for k in k_grid:
    ax.plot(v_lo_grid, [len(ll.source_only(V[k], t)) for t in v_lo_grid], "o-", label=f"k = {k}")
if truth is not None:
    ax.axhline(len(truth), ls=":", c="tab:blue", label=f"planted source-only ({len(truth)})")
ax.axvline(audit.v_lo, ls="--", c="k", lw=1)
ax.set_xscale("symlog", linthresh=1)
ax.set_xlabel("v_lo")
ax.set_ylabel("|F|")
ax.set_title(f"{world_.name}: size of F (Eq. 2); dashed: default v_lo")
ax.legend(fontsize=8)
fig.tight_layout()
ll.savefig(fig, f"02_{world_.name}_F_size")
plt.show()
size_F

# %% [markdown]
# ## The paper's Figure 4: what source-only and shared classes look like
#
# Top row: images $D^c$ of the source-only classes with the lowest $v(c)$. Middle row: an image of
# each of the most prevalent source classes. Bottom row: for each of those shared classes, the target
# training image on which $M^s$ gives it the highest probability: where the shared class
# "manifests" in the target data (`figures.figure4`; a shared class with no $D^c$ image shows its name).

# %%
fig, fig4 = ll.figures.figure4(audit)
ll.savefig(fig, f"02_{world_.name}_figure4")
plt.show()

# %% [markdown]
# ## Figure 4 on real photos: `lite0`
#
# The same with EfficientNet-Lite0's 1000 ImageNet classes and the LFW faces vs non-faces of
# `lite0`: which ImageNet classes does $M^s$ find in grey face thumbnails (this task's kerchiefs and
# tennis balls), and which of the classes of the world's real photos never show up?

# %% tags=["hide-input"]
audit_r = ll.Audit(ll.load_world(real_world, profile=profile, seed=seed, progress=False), device=dev)
v_r = audit_r.counts()
F_r = audit_r.source_only()
names_r = list(audit_r.world.source_classes)
has_r = torch.bincount(audit_r.source_labels(), minlength=len(names_r)) > 0
eq1_r = pd.Series({"ImageNet classes": len(names_r), "k (Eq. 1)": audit_r.k, "v_lo (Eq. 2)": audit_r.v_lo,
                   "classes that appear in D^t (v > 0)": int((v_r > 0).sum()), "|F|": len(F_r),
                   "classes with D^c photos": int(has_r.sum()),
                   "of them in F": int(has_r[F_r].sum())}).to_frame(real_world)
ll.glue("nb02_real_eq1", eq1_r, display=False)
eq1_r

# %%
fig, fig4_r = ll.figures.figure4(audit_r)
ll.savefig(fig, f"02_{real_world}_figure4")
plt.show()
top_r = pd.DataFrame({"name": names_r, "v": v_r.numpy(), "has D^c photos": has_r.numpy()}).sort_values(
    "v", ascending=False).head(10)
top_r

# %% [markdown]
# The shared classes are what a face thumbnail looks like to an ImageNet model (the table: the ten
# classes with the highest $v$); the source-only row is what the fine-tuning data never shows it.
# Only classes with D^c photos can be tested for lingering (Eq. 3, notebook 3).

# %% [markdown]
# ## Precision and recall against the planted truth, and the choice of $k$
#
# In `shapes` we know the answer. Precision is the fraction of $F$ that really is source-only;
# recall is the fraction of the planted source-only classes that $F$ finds. A random set of $|F|$
# classes is the null: its expected precision is the planted share $|T|/n$, its expected recall
# $|F|/n$.
#
# The paper uses top-5 over ImageNet's 1000 classes, i.e. half a percent of the label space. Over a
# few dozen classes top-5 is a fifth of the label space: nearly every class enters some image's
# top 5 as a runner-up, $v(c)$ is high everywhere, and the source-only tail is flooded.
# `features.default_k` therefore keeps the paper's *fraction*, $k = \max(1, \mathrm{round}(5n/1000))$:
# 5 for ImageNet, 1 for the 24 classes of `shapes` at profile smoke. The grids below show what that
# choice buys.

# %% tags=["hide-input"]
if truth is not None:
    n_truth = len(truth)
    p, r = ll.precision_recall(F, truth)
    pr = pd.DataFrame({"value": [len(F), n_truth, p, r],
                       "chance (random set of |F| classes)": [len(F), n_truth, n_truth / n_src, len(F) / n_src]},
                      index=["|F|", "planted source-only", "precision", "recall"]).round(3)
    grid = {(k, t): ll.precision_recall(ll.source_only(V[k], t), truth) for k in k_grid for t in v_lo_grid}
    prec = pd.DataFrame([[grid[k, t][0] for t in v_lo_grid] for k in k_grid],
                        index=[f"k={k}" for k in k_grid], columns=[f"v_lo={t}" for t in v_lo_grid])
    rec = pd.DataFrame([[grid[k, t][1] for t in v_lo_grid] for k in k_grid],
                       index=prec.index, columns=prec.columns)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, (title, tab) in zip(axes, [("precision of F", prec), ("recall of F", rec)]):
        im = ax.imshow(tab.to_numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(v_lo_grid)), v_lo_grid)
        ax.set_yticks(range(len(k_grid)), k_grid)
        ax.set_xlabel("v_lo")
        ax.set_ylabel("k")
        ax.set_title(f"{title} (planted: {n_truth} of {n_src})")
        for (i, j), val in np.ndenumerate(tab.to_numpy()):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if val < 0.6 else "black")
    fig.colorbar(im, ax=axes, shrink=0.8)
    ll.savefig(fig, f"02_{world_.name}_precision_recall_grid")
    plt.show()
    print(f"precision and recall of F at the default k = {audit.k}, v_lo = {audit.v_lo:g}:")
    display(pr)
    print("precision (rows k, columns v_lo):")
    display(prec.round(3))
    print("recall (rows k, columns v_lo):")
    display(rec.round(3))
    print("chance recall: expected recall of a random set of |F| classes (rows k, columns v_lo):")
    display((size_F / n_src).set_axis(rec.index).round(3))
else:
    pr = None
    print(f"world {world_.name!r} has no planted truth: precision and recall cannot be measured here.")

# %% [markdown]
# Which planted shared classes does Eq. 1 see, and which source-only classes collect counts anyway?
# In `shapes` the co-occurring objects (this world's tennis balls) appear in three quarters of the
# target images, at the size source objects have: in half of those the glyph is the subject and the
# object stands beside it, in the other half the object fills the middle and a smaller glyph stands
# beside it. For each co-occurring class the table gives how many images of $D^t$ contain it, its
# count $v(c)$ at each $k$, and the median rank $M^s$ gives it on exactly the images that contain it:
# Eq. 1 only counts a class that makes the top $k$.

# %% tags=["hide-input"]
planted = world_.spec.planted  # None in worlds without planted ground truth
co = sorted(planted.co_occurring) if planted is not None else []
planted_in = planted.target_train_shared_class if planted is not None else None
if truth is not None and co and planted_in is not None:
    idx = torch.as_tensor(audit.target_train_indices())
    has = planted.target_train_has_shared[idx]
    which = planted_in[idx]
    rows = []
    for c in co:
        on = has & (which == c)  # D^t images (rows of logits_s) that contain an instance of c
        rank = (logits_s[on] > logits_s[on][:, [c]]).sum(1) + 1
        rows.append({"class": c, "name": names[c], "images of D^t containing it": int(on.sum()),
                     "median rank under M^s": float(rank.float().median()) if len(rank) else float("nan"),
                     **{f"v (k={k})": int(V[k][c]) for k in k_grid}, "in F (default)": bool(v[c] <= audit.v_lo)})
    display(pd.DataFrame(rows).set_index("class"))
else:
    print("no planted co-occurring classes in this world")

# %% [markdown]
# Read the grids row by row (the numbers are the printed tables above). With $k = 1$ precision and
# recall of the planted source-only set are both high over a range of $v^{lo}$; with the paper's
# literal top-5 recall collapses towards the recall of a random set of the same size (the "chance
# recall" table): over 24 classes, top-5 is a fifth of the label space, almost every class is some
# image's runner-up, and source-only classes collect counts too. That is the flooding `default_k`
# exists to prevent.
#
# The planted source-only classes that $F$ misses at $k = 1$ are not random: they are texture siblings
# of a co-occurring object (e.g. a *striped* square when the target images contain a *checked*
# square). $M^s$ pools its features over the whole image, so a striped glyph next to a checked square
# can read as "striped square". Eq. 1 counts what the source model *perceives* in a target image, and
# a class it perceives there by mistake looks shared. (In the paper's setting: a dog breed that never
# appears in the cat photos but that $M^s$ names for some of them.) The co-occurring objects
# themselves are all found: $M^s$ names each of them as top-1 on a good part of the images that
# contain it, mostly those in which the object is the subject.

# %% tags=["hide-input"]
summary = {
    "world": world_.name,
    "source classes": n_src,
    "|D^t|": len(D_t),
    "k (default)": audit.k,
    "v_lo (default)": audit.v_lo,
    "|F|": len(F),
    "classes with v = 0": int((v == 0).sum()),
}
if truth is not None:
    k_paper = min(5, n_src)
    p5, r5 = ll.precision_recall(ll.source_only(counts_at(k_paper), audit.v_lo), truth)
    summary.update({
        "planted source-only": len(truth),
        "precision of F": round(p, 3),
        "precision of a random |F|-set (chance)": round(len(truth) / n_src, 3),
        "recall of F": round(r, 3),
        "recall of a random |F|-set (chance)": round(len(F) / n_src, 3),
        f"precision of F at k = {k_paper} (paper)": round(p5, 3),
        f"recall of F at k = {k_paper} (paper)": round(r5, 3),
    })
summary = pd.Series(summary, dtype=object).to_frame("value")
ll.glue("nb02_summary", summary, display=False)
ll.glue("nb02_F_size", len(F), display=False)
if truth is not None:
    ll.glue("nb02_precision", round(p, 3), display=False)
    ll.glue("nb02_recall", round(r, 3), display=False)
summary
