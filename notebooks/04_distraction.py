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
# # 4. Distraction (Eq. 4)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/04_distraction.ipynb)
#
# Does a lingering memory pull the fine-tuned model's attention away from the target object? This
# notebook will build composites (a target image pasted on a source-only image), compare the Grad-CAM
# maps of M^t and of the scratch baseline M^b with the source model's map (Eq. 4), against a
# shuffled-pair null and with confidence intervals, and run the paired controls of the comparison
# protocol.

# %% tags=["parameters"]
world = "shapes"
profile = "smoke"
seed = 0
device = "auto"

# %%
import lingerlab as ll

print(f"world={world} profile={profile} seed={seed}")
