"""The method's parameters (Eqs. 1-5), resolved once from a world's spec: :class:`AuditConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._validation import check_int_range, check_range
from .features import default_k
from .lingering import default_p_lo

__all__ = ["AuditConfig"]


@dataclass(frozen=True)
class AuditConfig:
    """Parameters of one audit (defaults: :meth:`from_world`)."""

    k: int  # Eq. 1's top-k (default features.default_k: top-5 per 1000 source classes)
    v_lo: float  # Eq. 2's threshold on v(c) (default spec.v_lo, else 1% of |D^t|)
    p_lo: float  # Eq. 3/5's threshold on a mean softmax probability (default: ten times chance)
    scale: float  # the composites' overlay scale along each side (default spec.composite_scale; paper 0.4)
    q: float = 0.8  # Eq. 4's quantile (paper 0.8: the top 20% of background pixels)
    n_composites_per_class: int | None = None  # |I(c)|: the first n images of each D^c (None: all)
    n_null: int = 20  # shuffled pairs per composite for Eq. 4's null
    match_tol: float = 0.02  # accuracy gap allowed for the accuracy-matched baseline

    @classmethod
    def from_world(
        cls,
        world: Any,
        *,
        n_target_train: int,
        k: int | None = None,
        v_lo: float | None = None,
        p_lo: float | None = None,
        scale: float | None = None,
        q: float = 0.8,
        n_composites_per_class: int | None = None,
        n_null: int = 20,
        match_tol: float = 0.02,
    ) -> "AuditConfig":
        """Defaults from ``world.spec`` and the size of the source label space; every value validated
        (numpy integers accepted). ``n_target_train``: |D^t|, for the default v_lo."""
        spec = world.spec
        n_src = len(world.source_classes)
        k = default_k(n_src) if k is None else check_int_range("k", k, 1, n_src)
        p_lo = default_p_lo(n_src) if p_lo is None else p_lo
        v_lo = spec.v_lo if v_lo is None else v_lo
        v_lo = float(round(0.01 * n_target_train)) if v_lo is None else v_lo
        n = spec.n_composites_per_class if n_composites_per_class is None else n_composites_per_class
        return cls(
            k=int(k),
            v_lo=check_range("v_lo", v_lo, 0),  # an int threshold stays an int (prints as one)
            p_lo=float(check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)),
            scale=float(check_range("scale", spec.composite_scale if scale is None else scale, 0, 1, lo_open=True)),
            q=float(check_range("q", q, 0, 1, lo_open=True, hi_open=True)),
            n_composites_per_class=None if n is None else int(check_int_range("n_composites_per_class", n, 1)),
            n_null=int(check_int_range("n_null", n_null, 1)),
            match_tol=float(check_range("match_tol", match_tol, 0, 1, lo_open=True)),
        )
