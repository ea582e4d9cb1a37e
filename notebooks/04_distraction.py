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
# # 4. Distraction (Eq. 4): a fair test
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lingerlab/lingerlab/blob/main/notebooks/04_distraction.ipynb)
#
# The paper's central claim (its Figure 3a): on composites $I(c)$ of the *lingering* classes
# $c \in L$ (Eq. 3), the fine-tuned model $M^t$ is *distracted*: its Grad-CAM map for the target
# class resembles the source model's map for the source object, more than the map of a model trained
# from scratch, $M^b$ (Eq. 4), and it is wrong more often.
#
# This notebook tests that claim so that only the claim can make the difference:
#
# 1. **the arms in the open**: one row per model {term}`arm` with its full recipe; the arms compared
#    start from different weights and otherwise share the images, augmentation, number of steps and
#    schedule, each learning rate picked by the same search; the table shows every remaining
#    difference (in `lite0`, the scratch arm's precise BatchNorm statistics);
# 2. **Eq. 4 over L**, per seed of the fine-tuned model (L depends on it), with a **per-class null**
#    (shuffled pairs within each class); $F \setminus L$ (source-only, not lingering) is the
#    within-model contrast: if lingering memories cause distraction, it is higher on L;
# 3. **paired controls**: the same target patch at the same place on a blurred copy of the source
#    image (object removed): {term}`excess error` and {term}`flip rate` isolate the source object;
# 4. **{term}`gates <gate>`**, the preconditions the measure needs, checked in code (`lingerlab.gates`): the source
#    object survives the overlay, each arm reads the pasted target on an object-free background,
#    Grad-CAM is faithful (deletion test), enough classes remain in L and in $F \setminus L$; a claim
#    whose gate fails is **not testable**, and says which gate;
# 5. **ten seeds per arm**, effects with a two-stage bootstrap (seeds, then classes within each seed),
#    one-sided exact permutation p-values in the paper's direction, Holm across the world's family of
#    tests, and one of four verdicts from one rule in code (`lingerlab.verdict_rule.verdict`): **holds**,
#    **does not hold** (the 90% interval inside an {term}`equivalence margin` fixed in code,
#    `fair_test.MARGINS`, or the paper's direction excluded with Holm control), **inconclusive** (with
#    its {term}`minimum detectable effect` at 80% power) and **not testable**.
#
# The prose below describes the profile this book was built with (`smoke`, a CPU).
#
# :::{admonition} What you will learn
# :class: tip
# - what Eq. 4 measures (the overlap of two Grad-CAM maps) and why it needs a per-class {term}`null`;
# - how to make a comparison of {term}`arm`s fair: same augmentation, data, steps and tuning search,
#   differences shown in a recipe table;
# - how paired controls ({term}`excess error`, {term}`flip rate`) separate the source object from the
#   mere act of pasting;
# - why a measure needs its preconditions checked (gates) before its verdict is believed;
# - how ten seeds, {term}`bootstrap over seeds` intervals, {term}`permutation p` values and
#   {term}`Holm` correction turn into one verdict per test.
#
# **Assumes:** notebooks 2 and 3 (the sets {term}`F` and {term}`L`); Grad-CAM; what a p-value and a
# confidence interval are.
# :::

# %% tags=["parameters"]
world = "shapes"
profile = "smoke"
seed = 0
device = "auto"

# %% tags=["hide-input"]
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import lingerlab as ll
from lingerlab import checks, fair_test_text, perturbed
from lingerlab.arm_roles import recipe_table
from lingerlab.controls import control_sets
from lingerlab.fair_test import fair_test
from lingerlab.fair_test_figures import class_maps, hijacks, per_class_distraction, plot_fig3a, plot_headline
from lingerlab.identities import weights_fingerprint
from lingerlab.permutation import smallest_p
from lingerlab.publishing import Findings
from lingerlab.rate_sensitivity import rate_sensitivity, rate_text

ch = ll.chapter(world, profile, seed, device, n_seeds=10)
dev, seeds, world_, audit = ch.device, ch.seeds, ch.world, ch.audit
arms = world_.spec.comparison           # table label -> arm
ref = world_.spec.comparison_reference  # the fine-tuned arm every baseline is tested against
audit

# %% [markdown]
# ## 1. Every arm's recipe
#
# One row per arm: what it starts from, which images, which augmentation, how long and how it is
# optimised, its BatchNorm policy, the learning-rate search that picked its rate (every rate tried,
# its validation accuracy at seed 0, the pick; the same grid for every arm, `spec.lr_search`; the pick
# is the gentlest rate whose validation answers are not significantly worse than the best's (an
# exact one-sided McNemar test on the same images, `tuning.pick_rate`), so float noise that reorders
# near-equal accuracies rarely moves it), and its
# accuracy on the clean target validation images (mean and range over the ten seeds). `role` says how
# the tests use the arm: every *baseline* is tested against the *reference*; the paper's own M^b is
# the reference's recipe from random weights. A scratch arm trained on every target training image
# (the world's {term}`competent` `M^b`, on many more images than $M^t$) differs from $M^t$ in its data as well as
# its initialisation, so it is not a baseline of the fair test. The baselines are profile data (`comparison_baselines`): at
# `smoke` the paper's own M^b (the CPU budget of the book); at `full` also the accuracy-{term}`matched` arm,
# trained on fewer images until its accuracy matches the reference's.

# %%
recipes = recipe_table(audit, arms, seeds)
ll.glue(f"nb04_{world_.name}_recipes", recipes, display=False)
recipes

# %% [markdown]
# Every verdict about L below is a verdict at the picked rate. The search cannot always tell the rates
# of its grid apart, and a gentler or harsher rate may leave another L: the table below trains the
# reference's recipe at every rate of the grid for the same seeds and counts |L| (Eq. 3) per seed. Where
# a rate the validation set could not rule out leaves L empty, lingering in this world hangs on the
# learning rate, and the verdicts say nothing about that rate.

# %% tags=["trained"]
sensitivity = rate_sensitivity(audit, ref, seeds)
ll.glue(f"nb04_{world_.name}_rate_sensitivity", sensitivity, display=False)
sensitivity

# %% [markdown]
# ## 2. How small can the pasted target be?
#
# Accuracy on pasted target patches over a blurred, object-free copy of each background, at three
# scales, for the reference and the paper's M^b (seed 0). A composite only tests
# distraction at a scale where a model reads the patch on a neutral background. Every world uses the
# paper's `scale = 0.4`; the competence gate of section 5 checks it.

# %% tags=["hide-input", "trained"]
scale_rows = []
base_arm = "M^b (same data)"  # the paper's own M^b
for s_ in (0.4, 0.5, 0.6):
    sets_ = control_sets(ll.Audit(world_, device=dev, scale=s_))
    y_ = sets_["source_only"].target_label
    for label, arm in ((ref, arms[ref]), (base_arm, base_arm)):
        acc_ = {k: audit.accuracy(arm, seed, data=(sets_[name].images, y_))
                for k, name in (("object-free background", "neutral"), ("source-only composite", "source_only"))}
        scale_rows.append({"scale": s_, "model": label, **{f"accuracy, {k}": round(v, 3) for k, v in acc_.items()}})
pd.DataFrame(scale_rows).pivot_table(index="scale", columns="model", sort=False)

# %% [markdown]
# (nb04-composites)=
# ## 3. Composites, and which classes linger
#
# For every source-only class $c \in F$ (Eq. 2), $I(c)$ pastes a random target validation image onto
# the images of $D^c$ at `audit.scale` of each side. All of F is composited once; each seed of the
# reference model then splits F into its own lingering set L (Eq. 3) and the rest, $F \setminus L$.

# %% tags=["hide-input", "remove-output", "trained"]
comp = audit.composites(seed=0)
cls = audit.composite_classes(comp)
F = audit.source_only().tolist()
Ls = {s_: audit.lingering_classes(s_, arms[ref]) for s_ in seeds}
names = world_.source_classes
linger_view = pd.DataFrame({"seed": list(Ls), "|L|": [len(v) for v in Ls.values()], "|F|": len(F),
                            "L": [", ".join(names[c] for c in v) for v in Ls.values()]})
print(f"|F| = {len(F)} source-only classes, {len(comp)} composites ({len(comp) // max(1, len(F))} per class)")
first = [int(np.flatnonzero(cls.numpy() == c)[0]) for c in F[:8]]
fig = ll.plotting.image_grid(comp.images[first], [names[int(cls[i])] + (" (L)" if int(cls[i]) in Ls[seed] else "")
                                                  for i in first], ncols=4, size=1.8,
                             suptitle=f"composites: a target image pasted on a source-only image\n((L): lingers in seed {seed})")
ll.publish(fig, f"04_{world_.name}_composites", key="nb04_composites_fig")

# %% [markdown]
# ```{glue:figure} nb04_composites_fig
# :name: fig-nb04-composites
#
# **Composites $I(c)$.** A target validation image pasted on an image of each of the first source-only
# classes; "(L)" marks the classes that linger in the reference model of seed 0. Which classes linger
# in each seed:
# ```

# %% tags=["trained"]
# Eq. 3's noise band: the classes that training noise (the seed) moves across p_lo
n_moving = len(set().union(*Ls.values()) - set.intersection(*map(set, Ls.values())))
print(f"classes in L in some seeds but not in others: {n_moving} of |F| = {len(F)}")
linger_view

# %% [markdown]
# ## 4. The fair test
#
# `fair_test` trains (or loads) every arm for every seed, measures every composite on the
# three paired backgrounds and computes Eq. 4 with its per-class null, checks the gates on the same
# composites, then runs the family of tests without the classes whose source object the overlay
# hides. Its docstring states the family and the rule; in short, for each baseline and each of five
# measures on L composites (error, excess error, flip rate, hijack rate, Eq. 4 above its null): the effect is the
# reference's mean minus the baseline's, with a two-stage bootstrap interval (seeds, then classes) and
# an exact one-sided permutation p-value over the seeds of the two arms (smallest possible here:
# {glue:text}`nb04_p_floor:.2e`); within the reference model, L against $F \setminus L$ for excess
# error and Eq. 4 (p from relabelling which classes linger, within each seed). The p-values of the
# world are Holm-adjusted together, and `verdict_rule.verdict` gives each test one of the four verdicts.

# %% tags=["trained"]
ft = fair_test(audit, arms, seeds)
ll.glue("nb04_p_floor", smallest_p(len(seeds), len(seeds), "greater"), display=False)
fair_test_text.measure_table(ft, ["target_acc", "err_source_only", "err_neutral", "err_shared", "excess_error",
                                  "flip_rate", "hijack_rate", "distraction", "distraction_null", "distraction_excess"])

# %% [markdown]
# Each cell: mean over the seeds [95% bootstrap-over-seeds interval]. `distraction_null` is the
# per-class shuffled-pair chance level of Eq. 4; `distraction_excess` is Eq. 4 minus that null;
# `err_shared` puts the same patch on an image of a shared class instead (the paper's Figure 6);
# `hijack_rate` counts the paper's Figure 1 (next section).

# %% tags=["hide-input", "remove-output", "trained"]
fig = plot_fig3a(ft, [ref, *ft.baselines[:1]],
                 title=f"{world_.name}: Eq. 4 per source-only class\n(95% cluster-bootstrap CI; grey: its own null)").figure
fig.tight_layout()
ll.publish(fig, f"04_{world_.name}_fig3a", key="nb04_fig3a")

# %% [markdown]
# ```{glue:figure} nb04_fig3a
# :name: fig-nb04-fig3a
#
# **The paper's Figure 3a, measured per class (`shapes`).** Eq. 4 for the reference and the paper's
# {term}`M^b` on the composites of each source-only class that survives the overlay (rows), over the seeds in which the class is in
# {term}`L` (95% cluster-bootstrap interval), beside each class's own shuffled-pair {term}`null` (grey
# tick). The classes most often in L come first, the share of seeds in which each lingers after its name;
# hollow: classes of $F \setminus L$.
# ```

# %% [markdown]
# (nb04-gates)=
# ## 5. The gates: can this world's test answer?
#
# **Object survival**: M^s's probability of the source class on the composite against the same
# source image alone; a class whose composites keep less than half of it (`checks.SURVIVAL_RATIO`)
# leaves every test. **Competence on pasted targets**: each arm's accuracy on the same patches over a
# blurred, object-free copy of the background (`gates.COMPETENCE_MIN`). **Attribution
# faithfulness**: deleting the fifth of the pixels a map ranks highest (filled with the image's mean
# colour) lowers the model's log-probability of the class the map explains by more than deleting
# another map's fifth (a cluster-bootstrap 95% interval of the gain above zero), for $M^s$ and in more
# than half the seeds of each arm. **Contrast size**: surviving classes in L and in $F \setminus L$
# per seed (`gates.MIN_CLASSES` in the median seed). **Transfer helps**: the clean accuracy of the
# fine-tuned arm against each baseline, stated beside every verdict. The blurred control is also
# checked for neutrality (M^s's p(c_s) on it at most `checks.NEUTRAL_RATIO` times chance).

# %% tags=["trained"]
ll.glue(f"nb04_{world_.name}_gates", ft.gates.table, display=False)
ft.gates.table

# %% tags=["hide-input", "trained"]
sets = control_sets(audit)
neut = checks.neutral_check(audit, comp, sets["neutral"])
check_view = ft.gates.survival[["source_name", "p_alone", "p_composite", "ratio", "survives"]].merge(
    neut[["source_name", "p_neutral", "chance", "neutral"]], on="source_name").round(3)
check_view

# %% [markdown]
# (nb04-verdicts)=
# ## 6. Verdicts
#
# The family of tests of this world, each verdict from `verdict_rule.verdict` on the Holm-adjusted one-sided
# p, beside its failed gate or the smallest effect it could have detected, and its **stability**: the
# test is summarized again with each source class left out in turn, and the whole world is trained and
# measured again in a child process with ATen's vector kernels off (`perturbed.SETTING`: other float
# rounding, as on another CPU, with its own model cache). A verdict that either moves is *fragile*, and
# the table says what moved it.

# %% tags=["trained"]
ft = perturbed.mark(ft, perturbed.rerun(world_.name, profile, seed, len(seeds)), weights_fingerprint(world_.source_model))
ll.glue(f"nb04_{world_.name}_verdicts", ft.verdicts(), display=False)
ll.glue(f"nb04_{world_.name}_findings", Findings(fair_test_text.findings(ft)), display=False)
Markdown(fair_test_text.findings(ft))

# %% [markdown]
# (nb04-hijacks)=
# ## Hijacks: the paper's Figure 1, searched for
#
# A composite {term}`hijacks <hijack>` an arm when the arm is wrong on it, right on the same patch with the source
# object blurred away, and the other arm of the pair is right on it (same seed). The paper shows such
# cases one by one (its Figures 1, 3b and 5); here every composite is searched, the rates enter the
# family of tests above (`hijack_rate`), and the composites that hijack the reference in the most seeds
# are shown with their maps. The occlusion of the paper's Figure 5 and the shared classes of its
# Figure 6, measured on the same composites:

# %% tags=["trained"]
ll.glue(f"nb04_{world_.name}_occlusion", Markdown(fair_test_text.occlusion_text(ft)), display=False)
Markdown(fair_test_text.occlusion_text(ft))

# %% tags=["hide-input", "remove-output"]
fig, hijacked = hijacks(audit, ft)
ll.publish(fig, f"04_{world_.name}_hijacks", key="nb04_hijacks_fig")

# %% [markdown]
# ```{glue:figure} nb04_hijacks_fig
# :name: fig-nb04-hijacks
#
# **The strongest hijacks.** Rows: the composites that hijack the reference in the most seeds (at the
# first such seed). Columns: the composite (its source class), {term}`M^s`'s map for the source class,
# the reference's map and probability of the true target class with the object and with it blurred
# away, and the paper's {term}`M^b` on the composite; white outline: the pasted target image.
# ```

# %% tags=["trained"]
hijacked

# %% [markdown]
# ## The three maps (Figure 2, third row)
#
# For the two source-only classes where the reference is most distracted relative to the paper's
# M^b, and the one where it is least: the composite, $M^s$'s map for the source class, the
# reference's and the baseline's maps for the true target class (seed 0). White outline: the
# pasted target image.


# %% tags=["hide-input", "remove-output", "trained"]
pc = per_class_distraction(ft, [ref, ft.baselines[0]]).pivot_table(
    index="source_class", columns="arm", values="distraction")
ranked = (pc[ref] - pc[ft.baselines[0]]).sort_values(ascending=False)  # largest gap first
for rank_, c in zip(("first", "second", "last"), list(ranked.index[:2]) + list(ranked.index[-1:])):
    fig = class_maps(audit, ft, int(c))
    ll.publish(fig, f"04_{world_.name}_maps_{c}", key=f"nb04_maps_{rank_}")
    ll.glue(f"nb04_maps_{rank_}_name", world_.source_classes[int(c)], display=False)

# %% [markdown]
# ```{glue:figure} nb04_maps_first
# :name: fig-nb04-maps-first
#
# **The three maps where the reference is most distracted relative to the paper's {term}`M^b`**
# (class {glue:text}`nb04_maps_first_name`). Columns: the composite, {term}`M^s`'s map for the source
# class, the reference's and the baseline's maps for the true target class (seed 0); white outline: the
# pasted target image.
# ```
#
# ```{glue:figure} nb04_maps_second
# :name: fig-nb04-maps-second
#
# **The same for the class with the second-largest gap** ({glue:text}`nb04_maps_second_name`).
# ```
#
# ```{glue:figure} nb04_maps_last
# :name: fig-nb04-maps-last
#
# **The same for the class with the smallest gap** ({glue:text}`nb04_maps_last_name`): the contrast.
# ```

# %% [markdown]
# In Jupyter or Colab, an explorer shows the same three maps for any source-only class (the rendered
# book shows the static figures above instead).

# %% tags=["hide-input"]
def explorer():
    """Pick a source-only class, see its composites with the three maps (needs Jupyter or Colab)."""
    import ipywidgets as widgets

    return widgets.interactive(lambda c: plt.show(class_maps(audit, ft, int(c))),
                               c=widgets.Dropdown(options=[(world_.source_classes[c], c) for c in F],
                                                  description="class"))


if "google.colab" in sys.modules:  # live widgets only where someone is looking; the book stays static
    display(explorer())
else:
    print("In Jupyter or Colab, run explorer() in a cell to browse every source-only class.")

# %% [markdown]
# (nb04-real)=
# ## 7. The same test on real photos: `lite0`
#
# The procedural world has planted truth; `lite0` has a real ImageNet model (EfficientNet-Lite0) and
# real photos (faces vs non-faces) at the paper's composite scale. Neither of its arms augments, and its
# scratch arm is $M^t$'s recipe from random weights with precise BatchNorm statistics (a short scratch
# run needs them; the recipe table shows it): the paper's M^b. Augmented views of one
# source photo share a cluster in every composite-level interval.

# %% tags=["trained"]
other = world_.spec.companion
audit_o = ll.Audit(ll.load_world(other, profile=profile, seed=seed), device=dev)
arms_o = audit_o.world.spec.comparison
ref_o = audit_o.world.spec.comparison_reference
ft_o = fair_test(audit_o, arms_o, seeds)
recipes_o = recipe_table(audit_o, arms_o, seeds)
ll.glue(f"nb04_{other}_recipes", recipes_o, display=False)
recipes_o

# %% tags=["hide-input", "trained"]
print(f"{other}: |F| = {len(audit_o.source_only())}, |L| per seed = "
      f"{[len(audit_o.lingering_classes(s_, arms_o[ref_o])) for s_ in seeds]}")
ll.glue(f"nb04_{other}_gates", ft_o.gates.table, display=False)
ft_o.gates.table

# %% tags=["trained"]
ll.glue(f"nb04_{other}_verdicts", ft_o.verdicts(), display=False)
ft_o.verdicts()

# %% [markdown]
# Figure 3a on real photos: Eq. 4 per lingering class of $M^t$ and of the scratch baseline, each
# against its own per-class null, with cluster-bootstrap intervals (views of one photo are one cluster).

# %% tags=["hide-input", "remove-output"]
fig = plot_fig3a(ft_o, [ref_o, *ft_o.baselines[:1]],
                 title=f"{other} ({audit_o.world.spec.arch}, real photos):\nEq. 4 per source-only class, against its own null").figure
fig.tight_layout()
ll.publish(fig, f"04_{other}_fig3a", key="nb04_other_fig3a")

# %% [markdown]
# ```{glue:figure} nb04_other_fig3a
# :name: fig-nb04-real-fig3a
#
# **Figure 3a on real photos (`lite0`).** As {numref}`fig-nb04-fig3a`, for EfficientNet-Lite0
# fine-tuned on faces ({term}`M^t`) and its scratch baseline; each interval clusters the augmented views
# of one source photo.
# ```

# %% tags=["trained"]
ll.glue(f"nb04_{other}_findings", Findings(fair_test_text.findings(ft_o)), display=False)
Markdown(fair_test_text.findings(ft_o))

# %% [markdown]
# (nb04-headline)=
# ## 8. The answer in one figure
#
# Both worlds, on composites of the lingering classes L: Eq. 4 for each arm with its per-class null
# (hollow, grey), and the excess error due to the source object; means over the seeds with 95%
# bootstrap-over-seeds intervals. Below the figure, how much L in `shapes` hangs on the learning rate
# its search picked (section 1).

# %% tags=["remove-output", "trained"]
tests_ = {world_.name: ft, other: ft_o}
shown = {world_.name: [ref, *ft.baselines], other: [ref_o, *ft_o.baselines]}
fig = plot_headline(tests_, shown, [("distraction", "Eq. 4 on L (hollow: per-class null)"),
                                    ("excess_error", "excess error on L")])
ll.publish(fig, "04_headline", key="nb04_headline_fig")
headline = Findings("\n\n".join([*(fair_test_text.headline(t_, w_) for w_, t_ in tests_.items()),
                                   rate_text(sensitivity, world_.name)]))
ll.glue("nb04_headline", headline, display=False)
headline

# %% [markdown]
# ```{glue:figure} nb04_headline_fig
# :name: fig-nb04-headline
#
# **The answer in one figure.** On composites of the lingering classes {term}`L`, in each world (rows):
# Eq. 4 of each arm beside its per-class {term}`null` (hollow, grey), and the {term}`excess error` due to
# the source object (error with the object minus error on the blurred copy without it); means over the
# seeds with 95% {term}`bootstrap over seeds` intervals. The verdict of the central test in each world:
# ```
#
# ```{glue:md} nb04_headline
# :format: myst
# ```

# %% [markdown]
# ## What this says
#
# The verdicts of sections 6 and 7 are the rule's, not ours (the findings printed under each world's
# verdict table say them in words, with the gates); the [results page](06_results.ipynb) puts them
# beside every other claim. Reading them: **holds** needs the paper's direction *and* a Holm-adjusted
# one-sided p < 0.05; **does not hold** needs the effect shown to be smaller than its margin (the 90%
# interval inside it) or the paper's direction excluded with Holm control; **inconclusive** means
# neither, and the smallest effect the design could have detected says how much that is worth;
# **not testable** names the gate that failed. The recipe table says what differs between each pair.

# %% tags=["hide-input", "trained"]
summary = {}
for name_, ft_ in tests_.items():
    base_ = ft_.baselines[0]
    counts_ = ft_.tests["verdict"].value_counts()
    summary[name_] = {
        "reference arm": ft_.reference, "paper's M^b": base_, "seeds per arm": int(ft_.controls["seed"].nunique()),
        "Eq. 4 on L, reference": ft_.interval(ft_.reference, "distraction"),
        "Eq. 4 per-class null, reference": ft_.interval(ft_.reference, "distraction_null"),
        "Eq. 4 on L, paper's M^b": ft_.interval(base_, "distraction"),
        "excess error on L, reference": ft_.interval(ft_.reference, "excess_error"),
        "excess error on L, paper's M^b": ft_.interval(base_, "excess_error"),
        "tests: holds / does not hold / inconclusive / not testable": " / ".join(
            str(int(counts_.get(v, 0))) for v in ("holds", "does not hold", "inconclusive", "not testable")),
    }
summary = pd.DataFrame(summary)
ll.glue("nb04_summary", summary, display=False)
ll.coverage.glue_claims("nb04_claims", [
    *fair_test_text.claims(ft, world_.name, anchor="nb04-verdicts"),
    *fair_test_text.claims(ft_o, other, anchor="nb04-real"),
    ll.coverage.claim(4, "Some source-only classes linger in the fine-tuned backbone", "Eq. 3", world_.name, "measured",
                      f"|L| per seed {[len(v) for v in Ls.values()]} of |F| = {len(F)} (no control in this world)",
                      "04_distraction", "nb04-composites")])
summary

# %% [markdown]
# ## Summary
#
# - The central claim, tested in each world, is answered under {numref}`fig-nb04-headline`: one
#   sentence per world with the rule's verdict, beside its numbers or the gates that block it; the
#   figure shows Eq. 4 on L beside its null with intervals.
# - A fair test needs arms that differ only in what is compared (the recipe table), a per-class null
#   for Eq. 4, paired controls for the error, and gates that say whether the composites and maps can
#   carry the measure; every verdict comes from `verdict_rule.verdict` on Holm-adjusted exact permutation
#   p-values, with its margin, its detectable effect or its failed gate beside it.
# - The full family of tests and the gates of each world are on the [results page](06_results.ipynb).
#
# ## Exercises
#
# 1. Why is the exact permutation p-value of a ten-against-ten comparison never below the floor
#    printed in section 4, whatever the effect? What would five seeds per arm change?
#
#    :::{admonition} Solution
#    :class: dropdown
#    The test relabels which seeds belong to which arm; with ten seeds per arm there are
#    $\binom{20}{10}$ labellings, and the observed one is at best the most extreme of them.
#    `smallest_p(5, 5, "greater")` gives the floor for five seeds per arm, $1/\binom{10}{5}$:
#    times the seven tests of the family (Holm's first step) it is close to alpha itself, so only the
#    largest effects could reach "holds".
#    :::
#
# 2. Test plain $M^t$ (no augmentation) against the scratch arm, which augments. Which row of the
#    recipe table changes, and why does that make the comparison unfair?
#
#    :::{admonition} Solution
#    :class: dropdown
#    Give `fair_test` an `arms` dictionary whose reference is the plain fine-tuning recipe
#    (`"M^t"`) instead of `world_.spec.comparison[ref]`. The augmentation column then differs between
#    the arms, so any difference in Eq. 4 may come from the augmentation (zoom-out teaches a model to
#    read small patches) rather than from the initialisation, which is what the claim is about.
#    :::
#
# 3. Eq. 4 is the overlap of two maps. Why is a raw Eq. 4 value meaningless without its per-class null?
#
#    :::{admonition} Solution
#    :class: dropdown
#    Two Grad-CAM maps overlap by chance: both favour the centre, both cover a fixed share of the
#    pixels. The null pairs each composite's map with the source map of *another* image of the same
#    class, so Eq. 4 above it is overlap that the source object explains (`distraction_excess`).
#    :::
