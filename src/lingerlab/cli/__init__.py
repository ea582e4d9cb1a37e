"""``lingerlab audit``: the paper's method (Eqs. 1-5) on your own fine-tuned model, as one command.

    lingerlab audit --source-model torchvision:resnet18 --download \\
        --target-model torchvision:resnet18 --target-weights pets.pt \\
        --target-dir pets/ --source-dir imagenet_bits/ --source-classes imagenet --out audit/

writes ``audit/report.html`` (one self-contained page), ``audit/results.json`` and one CSV per stage.
Also ``python -m lingerlab audit``. Exit status: 0 on success, 2 on a bad argument (one line on
stderr naming the flag and what would be valid; this includes what is found while loading: a model
file that does not load, a head that does not exist, a class-count mismatch, an empty folder), 1 on
a failure during the audit itself (a one-line summary; the traceback with ``--verbose``).

Everything the command checks without loading a model is checked first, before anything heavy.
The audit runs on a ``custom`` world (``load_world("custom", target_model=..., baseline_model=...)``):
the user's fine-tuned model is measured as it is (``WorldSpec.given``), never re-trained. The page is
assembled by :func:`lingerlab.report_html.audit_page`.
"""

from __future__ import annotations

from .parser import build_parser
from .main import audit_main, main
from .run import AuditRun

__all__ = ["main", "build_parser", "AuditRun", "audit_main"]
