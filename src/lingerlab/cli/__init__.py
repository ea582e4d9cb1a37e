"""``lingerlab audit`` (also ``python -m lingerlab audit``): the paper's method (Eqs. 1-5) on your own fine-tuned
model, measured as it is (never re-trained) on a ``custom`` world; writes ``report.html``, ``results.json`` and one
CSV per stage. Exit status: 0 on success, 2 on a bad argument (one line on stderr naming the flag; checks that need
no model run first), 1 on a failure during the audit (one line; the traceback with ``--verbose``)."""

from __future__ import annotations

from .parser import build_parser
from .main import audit_main, main
from .run import AuditRun

__all__ = ["main", "build_parser", "AuditRun", "audit_main"]
