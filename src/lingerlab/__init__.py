"""lingerlab: measure lingering source memories in fine-tuned image classifiers."""
from .report import glue, resolve_device, savefig

__version__ = "0.1.0"
