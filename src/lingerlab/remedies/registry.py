"""One registry of named remedies: :data:`REGISTRY` maps kind -> :class:`RemedyKind` (a builder, its
parameters and a line that says what it is; :func:`describe` shows it as a table). A :class:`Remedy` is
one configured remedy (one row of ``remedy_sweep.remedy_table``); :func:`build` makes its model for a seed.

What the builders share: M^t's recipe trained with some fields changed (so a remedy differs from plain
fine-tuning only where the table says), plain M^t trained once per table, the held-out images a remedy may
use, and the notes and seconds an :class:`Arm` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
from torch import Tensor, nn

from .._validation import check_choice, check_range
from .images import images_by_class

__all__ = [
    "NotFeasible",
    "Arm",
    "RemedyKind",
    "Remedy",
    "REGISTRY",
    "register",
    "kinds",
    "describe",
    "build",
    "train_mt",
    "wall_s",
    "join_notes",
    "plain_model",
    "held_out_source",
    "target_by_class",
    "check_weight",
]


class NotFeasible(Exception):
    """A remedy that cannot run in this world (its table row is ``feasible=False``, with the reason), or an
    architecture a world does not offer."""


@dataclass
class Arm:
    """What a builder returns: the model to measure, the wall-clock seconds it cost, the source whose head
    makes M^st for Eq. 3 (None: the world's M^s), a ``note`` for the table, the pruned and total channels
    of the pruned layer (pruning remedies) and whether Eq. 3 means anything (not for a source retrained
    without F)."""

    model: nn.Module | None
    train_s: float
    source: nn.Module | None = None
    note: str = ""
    n_pruned: int | None = None
    lingering_defined: bool = True
    n_channels: int | None = None

    @property
    def pruned_fraction(self) -> float | None:
        """``n_pruned / n_channels`` (pruning remedies), else None."""
        return None if self.n_pruned is None or not self.n_channels else self.n_pruned / self.n_channels


#: ``builder(audit, params, seed, memo) -> Arm``; ``params`` holds every parameter (defaults filled in),
#: ``memo`` is a dict the rows of one table share (or None).
Builder = Callable[[Any, dict[str, Any], int, "dict | None"], Arm]


@dataclass(frozen=True)
class RemedyKind:
    """A registered remedy kind: its builder, a one-line ``description``, its ``reference``, the parameters
    it takes (``defaults``), ``check(params)`` (raises for a bad value; params complete) and
    ``open_params``, a text shown instead of ``defaults`` for free-form parameters (left to ``check``)."""

    kind: str
    build: Builder
    description: str
    reference: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None
    open_params: str | None = None

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` checked (names and values) with the defaults filled in."""
        if not isinstance(given, Mapping):
            raise TypeError(f"params of a {self.kind!r} remedy must be a mapping; got {type(given).__name__}")
        if self.open_params is None:
            unknown = sorted(set(given) - set(self.defaults))
            if unknown:
                valid = ", ".join(self.defaults) or "none"
                raise ValueError(f"unknown parameter(s) {unknown} for a {self.kind!r} remedy; valid: {valid}")
        full = {**self.defaults, **given}
        if self.check is not None:
            self.check(full)
        return full

    def parameters(self) -> str:
        """The parameters as text (``name=default, ...``)."""
        if self.open_params is not None:
            return self.open_params
        return ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())


#: kind -> :class:`RemedyKind`, in registration order.
REGISTRY: dict[str, RemedyKind] = {}


def register(
    kind: str,
    *,
    description: str,
    reference: str = "",
    check: Callable[[Mapping[str, Any]], None] | None = None,
    open_params: str | None = None,
    **defaults: Any,
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` as remedy ``kind`` with parameters ``defaults`` (name=default)."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty string; got {kind!r}")
    if not isinstance(description, str) or not description:
        raise TypeError(f"description must be a non-empty string; got {description!r}")

    def deco(builder: Builder) -> Builder:
        if not callable(builder):
            raise TypeError(f"a remedy builder must be callable; got {type(builder).__name__}")
        if kind in REGISTRY:
            raise ValueError(f"remedy kind {kind!r} is registered already ({REGISTRY[kind].build.__qualname__})")
        REGISTRY[kind] = RemedyKind(
            kind, builder, description, reference, MappingProxyType(dict(defaults)), check, open_params
        )
        return builder

    return deco


def kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(REGISTRY)


def describe() -> pd.DataFrame:
    """One row per registered kind: ``kind, parameters, description, reference``."""
    return pd.DataFrame(
        [
            {"kind": e.kind, "parameters": e.parameters(), "description": e.description, "reference": e.reference}
            for e in REGISTRY.values()
        ],
        columns=["kind", "parameters", "description", "reference"],
    )


@dataclass(frozen=True)
class Remedy:
    """One configured remedy: a registered ``kind`` and its ``params`` (checked when it is made; omitted
    ones take the kind's defaults), shown as row ``name``."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, kinds())
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a non-empty string; got {type(self.name).__name__} {self.name!r}")
        if not self.name:
            raise ValueError("name must be a non-empty string; got ''")
        REGISTRY[self.kind].params(self.params)
        object.__setattr__(self, "params", dict(self.params))

    def describe(self) -> str:
        """The parameters as the remedy table shows them (``weight=0.05, batch=32``)."""
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items())


def build(audit: Any, remedy: Remedy, seed: int, memo: dict | None = None) -> Arm:
    """The :class:`Arm` of ``remedy`` for ``seed``; :class:`NotFeasible` where it cannot run in this world."""
    if not isinstance(remedy, Remedy):
        raise TypeError(f"remedy must be a Remedy; got {type(remedy).__name__}")
    entry = REGISTRY[remedy.kind]
    return entry.build(audit, entry.params(remedy.params), seed, memo)


def train_mt(audit: Any, seed: int, source: nn.Module | None = None, **changes: Any) -> tuple[nn.Module, pd.DataFrame]:
    """M^t's recipe with ``changes``, fine-tuning ``source`` (None: the world's M^s)."""
    return audit.zoo.train(audit.recipe("M^t").replace(**changes), seed, source=source)


def wall_s(hist: pd.DataFrame | None) -> float:
    """The wall-clock seconds a training history took (0 for none)."""
    return float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0


def join_notes(*parts: str) -> str:
    """The non-empty ``parts``, joined by ``"; "``."""
    return "; ".join(x for x in parts if x)


def plain_model(audit: Any, seed: int, memo: dict | None) -> tuple[nn.Module, pd.DataFrame]:
    """Plain M^t for ``seed`` and its history, trained once per ``memo`` (the table's rows share it)."""
    if memo is not None and ("plain", seed) in memo:
        return memo[("plain", seed)]
    out = train_mt(audit, seed)
    if memo is not None:
        memo[("plain", seed)] = out
    return out


def held_out_source(
    audit: Any, classes: Sequence[int], per_class: int = 64, missing: str | None = None
) -> tuple[dict[int, Tensor], str]:
    """Images of ``classes`` the audit does not evaluate on (``spec.source_train``; else D^c, with a note
    saying so) and the note. With ``missing``, no image at all raises :class:`NotFeasible` with that reason."""
    data = audit.world.spec.source_train
    note = ""
    if data is None:
        data = audit.world.source_data
        note = "trained on the same D^c images it is evaluated on (this world has no separate source training set)"
    by = images_by_class(data, classes)
    out = {c: x[:per_class] for c, x in by.items() if len(x)}
    if missing is not None and not out:
        raise NotFeasible(missing)
    return out, note


def target_by_class(audit: Any, max_per_class: int = 256) -> dict[int, Tensor]:
    """D^t split by target class (M^t's training images)."""
    by = images_by_class(audit.target_data())
    return {c: x[:max_per_class] for c, x in by.items()}


def check_weight(p: Mapping[str, Any]) -> None:
    """The check of a remedy whose one parameter is a non-negative ``weight`` (params complete)."""
    check_range("weight", p["weight"], 0)
