"""Remedies for lingering memories (paper, Sec. 5.1 and Appendix B; and the field's), as options of
fine-tuning, in one registry.

- :mod:`.registry`: :data:`REGISTRY` (kind -> builder, parameters, description), :func:`register`,
  :func:`describe` (the registry as a table), :class:`Remedy` (one configured remedy) and
  :func:`build` (its model for a seed).
- :mod:`.builders` (the paper's kinds: ``plain``, ``finetune``, ``l1``, ``prune``, ``prune_finetune``,
  ``retrain_source``, ``unlearning``, ``composites``) and :mod:`.established_builders` (the field's:
  ``l2_sp``, ``bss``, ``lp_ft``, ``wise_ft``, ``dfr``, ``co_tuning``) register the builders; what they
  share is in :mod:`.builder_kit`, App. B's choice of channels in :mod:`.pruning_plan`.
- :mod:`.defaults`: :func:`default_remedies` (the ones the book measures), :func:`choose` and
  :func:`remedy_arms`; :mod:`.retrain`: :func:`retrain_source`.
- The primitives, each a small testable piece that plugs into :func:`lingerlab.training.finetune`:
  :mod:`.penalties` (L1 on the penultimate activations, the unlearning loss), :mod:`.pruning`
  (App. B Eqs. 6-7: channel sets, :class:`ChannelMask`), :mod:`.augment` (fine-tuning on
  composites), :mod:`.images` (a labelled dataset split by class).

``remedy_sweep.remedy_table`` measures every remedy on the same composites and seeds.
"""

from .augment import CompositeAugment, composite_augment
from .defaults import choose, default_remedies, remedy_arms
from .images import images_by_class
from .penalties import L1Penultimate, UnlearningLoss, kl_to_uniform, l1_penultimate, unlearning_loss
from .pruning import ChannelMask, channel_sets, channels_to_prune, feature_set, penultimate_features, prune_channels
from .registry import REGISTRY, Arm, NotFeasible, Remedy, RemedyKind, build, describe, kinds, register
from .retrain import retrain_source

__all__ = [
    "REGISTRY",
    "Arm",
    "NotFeasible",
    "Remedy",
    "RemedyKind",
    "build",
    "describe",
    "kinds",
    "register",
    "choose",
    "default_remedies",
    "remedy_arms",
    "retrain_source",
    "L1Penultimate",
    "l1_penultimate",
    "UnlearningLoss",
    "unlearning_loss",
    "kl_to_uniform",
    "ChannelMask",
    "penultimate_features",
    "feature_set",
    "channel_sets",
    "channels_to_prune",
    "prune_channels",
    "images_by_class",
    "CompositeAugment",
    "composite_augment",
]
