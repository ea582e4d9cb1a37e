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
# Which source classes never show up in the target data? Eq. 1 counts, for every source class, the
# target images whose top-k source predictions contain it; Eq. 2 keeps the classes counted at most
# `v_lo` times. This notebook will show the distribution of v(c), the size of F against `v_lo` and `k`,
# image grids of source-only and shared classes (the paper's Figure 4), and, in the `shapes` world,
# precision and recall of the planted source-only set.

# %% tags=["parameters"]
world = "shapes"
profile = "smoke"
seed = 0
device = "auto"

# %%
import lingerlab as ll

print(f"world={world} profile={profile} seed={seed}")
