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
# # 5. Detection and mitigation (Eq. 5)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/05_mitigation.ipynb)
#
# What can a practitioner do? This notebook will evaluate the interference flag of Eq. 5 as a
# deployable check (AUROC, FPR at 95% TPR, against max-softmax and energy baselines), and measure each
# remedy (L1 on penultimate activations, pruning source-only channels, a source model without the
# source-only classes, an unlearning term, BatchNorm policy and learning rate) by what it costs and
# what it buys.

# %% tags=["parameters"]
world = "shapes"
profile = "smoke"
seed = 0
device = "auto"

# %%
import lingerlab as ll

print(f"world={world} profile={profile} seed={seed}")
