"""Remedies for lingering memories (paper, Sec. 5.1 and App. B; and the field's), as options of
fine-tuning, in one registry.

- :mod:`.registry`: :data:`REGISTRY`, :func:`register`, :func:`describe`, :class:`Remedy`, :func:`build`
  and what the builders share;
- :mod:`.builders` (the paper's kinds; :func:`retrain_source`) and :mod:`.established_builders` (the
  field's) register the builders;
- :mod:`.defaults`: :func:`default_remedies`, :func:`choose`, :func:`remedy_arms`;
- the primitives that plug into :func:`lingerlab.training.finetune`: :mod:`.penalties`, :mod:`.pruning`
  (App. B Eqs. 6-7), :mod:`.established` and :mod:`.images` (composites, images by class).
"""

from .builders import retrain_source
from .defaults import choose, default_remedies, remedy_arms
from .images import CompositeAugment, composite_augment, images_by_class
from .penalties import L1Penultimate, UnlearningLoss, kl_to_uniform, l1_penultimate, unlearning_loss
from .pruning import ChannelMask, channel_sets, channels_to_prune, feature_set, penultimate_features, prune_channels
from .registry import REGISTRY, Arm, NotFeasible, Remedy, RemedyKind, build, describe, kinds, register

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
    "images_by_class",
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
    "CompositeAugment",
    "composite_augment",
]
