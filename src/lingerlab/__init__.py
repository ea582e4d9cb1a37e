"""lingerlab: measure lingering source memories in fine-tuned image classifiers.

The public interface follows the paper's method (Alnouri, Wroge and Alsallakh, 2024):

- ``split_model``, ``source_target_model``: B(M), H(M) and M^st = B(M^t) + H(M^s)
- ``source_class_counts`` (Eq. 1), ``source_only`` (Eq. 2), ``lingering`` (Eq. 3)
- ``make_composites``, ``gradcam``, ``distraction`` (Eq. 4), ``interference`` (Eq. 5)
- ``load_world`` (a world's facts in a typed ``WorldSpec``), ``finetune``, ``train_scratch`` and the
  cached pipeline ``Audit``; ``chapter`` sets up a notebook
"""

from .composites import make_composites
from .distraction import distraction
from .features import default_k, precision_recall, source_class_counts, source_only
from .interference import interference
from .lingering import class_mean_probs, lingering
from .models import batchnorm_layers, source_target_model, split_model
from ._data import as_image
from .chapter import chapter
from .report import glue
from .training import finetune, train_scratch
from .worlds import load_world
from .attribution import gradcam
from .audit import Audit
from . import coverage, detection, figures, ood, plotting
from .publishing import publish

__version__ = "0.1.0"

__all__ = [
    "coverage",
    "detection",
    "figures",
    "ood",
    "plotting",
    "as_image",
    "chapter",
    "Audit",
    "finetune",
    "gradcam",
    "load_world",
    "train_scratch",
    "batchnorm_layers",
    "class_mean_probs",
    "default_k",
    "distraction",
    "glue",
    "interference",
    "lingering",
    "make_composites",
    "precision_recall",
    "publish",
    "source_class_counts",
    "source_only",
    "source_target_model",
    "split_model",
]
