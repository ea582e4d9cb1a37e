"""lingerlab: measure lingering source memories in fine-tuned image classifiers.

The public interface follows the paper's method (Alnouri, Wroge and Alsallakh, 2024):

- ``split_model``, ``source_target_model``: B(M), H(M) and M^st = B(M^t) + H(M^s)
- ``source_class_counts`` (Eq. 1), ``source_only`` (Eq. 2), ``lingering`` (Eq. 3)
- ``make_composites``, ``gradcam`` / ``cam``, ``distraction`` (Eq. 4), ``interference`` (Eq. 5)
- ``load_world`` (a world's facts in a typed ``WorldSpec``), arms as ``Recipe`` data, ``finetune``,
  ``train_scratch`` and the cached pipeline ``Audit``; ``chapter`` sets up a notebook
"""

from .composites import Composites, make_composites, neutral_backgrounds, occlude, paste
from .distraction import bootstrap_ci, distraction, distraction_null, paired_test, top_quantile_mask
from .features import default_k, precision_recall, source_class_counts, source_only
from .interference import interference, interference_scores
from .lingering import class_mean_probs, lingering, lingering_classes
from .models import Normalized, batchnorm_layers, find_head, replace_head, source_target_model, split_model
from ._data import as_image
from .arms import recipe_table
from .recipe import Recipe
from .config import AuditConfig
from .chapter import Chapter, chapter
from .report import glue, resolve_device, savefig
from .inference import evaluate
from .training import finetune, train_scratch
from .worlds import World, WorldSpec, available_worlds, load_world
from .attribution import cam, gradcam
from .audit import Audit
from .detection import auroc, evaluate_detection, fpr_at_tpr
from .lingering import default_p_lo
from . import coverage, figures, ood, plotting
from .publishing import publish

__version__ = "0.1.0"

__all__ = [
    "coverage",
    "figures",
    "ood",
    "plotting",
    "AuditConfig",
    "Chapter",
    "Recipe",
    "WorldSpec",
    "as_image",
    "chapter",
    "recipe_table",
    "auroc",
    "default_p_lo",
    "evaluate_detection",
    "fpr_at_tpr",
    "Audit",
    "World",
    "available_worlds",
    "cam",
    "evaluate",
    "finetune",
    "gradcam",
    "load_world",
    "train_scratch",
    "Composites",
    "Normalized",
    "batchnorm_layers",
    "bootstrap_ci",
    "class_mean_probs",
    "default_k",
    "distraction",
    "distraction_null",
    "find_head",
    "glue",
    "interference",
    "interference_scores",
    "lingering",
    "lingering_classes",
    "make_composites",
    "neutral_backgrounds",
    "occlude",
    "paired_test",
    "paste",
    "precision_recall",
    "publish",
    "replace_head",
    "resolve_device",
    "savefig",
    "source_class_counts",
    "source_only",
    "source_target_model",
    "split_model",
    "top_quantile_mask",
]
