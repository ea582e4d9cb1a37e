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
# # 3. Lingering memories (Eq. 3)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/03_lingering_detection.ipynb)
#
# A source-only class lingers when the fine-tuned backbone read through the source head,
# M^st = B(M^t) + H(M^s), still gives it more than `p_lo` on its own images. This notebook will show
# the mean p_c under M^s and M^st, the size of L against `p_lo`, and how BatchNorm statistics decide
# whether a memory is lost or only masked.

# %% tags=["parameters"]
world = "lite0"
profile = "smoke"
seed = 0
device = "auto"

# %%
import lingerlab as ll

print(f"world={world} profile={profile} seed={seed}")
