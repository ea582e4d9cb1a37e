"""One registry of named remedies: each kind is a builder, registered with its parameters and a line
that says what it is.

    @register("l1", description="L1 penalty on the penultimate activations B(M)(x)", reference="App. B",
              check=_check_l1, weight=0.05)
    def _l1(audit, params, seed, memo) -> Arm: ...

:data:`REGISTRY` maps kind -> :class:`RemedyKind`; :func:`describe` prints it as a table. A
:class:`Remedy` is one configured remedy (a kind and its parameters, shown as one row of
``remedy_sweep.remedy_table``); :func:`build` trains (or edits) its model for a seed through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import pandas as pd
from torch import nn

from .._validation import check_choice

__all__ = ["NotFeasible", "Arm", "RemedyKind", "Remedy", "REGISTRY", "register", "kinds", "describe", "build"]


class NotFeasible(Exception):
    """Something that cannot be had here: a remedy that cannot run in this world (the remedy table marks
    its row ``feasible=False`` with the reason), or an architecture a world does not offer."""


@dataclass
class Arm:
    """What a builder returns: the remedied model and how it came about.

    Attributes:
        model: the target-task model to measure.
        train_s: wall-clock seconds it cost (training, plus any search it needed).
        source: the source model whose head makes M^st for Eq. 3 (None: the world's M^s).
        note: one line for the table's ``note`` column.
        n_pruned: how many channels were pruned (pruning remedies), else None.
        n_channels: how many channels the pruned layer has (pruning remedies), else None.
        lingering_defined: False where Eq. 3 means nothing (a source retrained without F).
    """

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
    """A registered remedy kind.

    Attributes:
        kind: the registry key.
        build: the builder (see :data:`Builder`).
        description: one line: what the remedy does.
        reference: where it comes from (paper section, or the paper that proposed it).
        defaults: parameter name -> default value (the parameters the kind takes).
        check: ``check(params)`` raises TypeError/ValueError for a bad value (params complete), or None.
        open_params: a text that replaces ``defaults`` when the kind takes free-form parameters
            (``finetune``: any field of the recipe); unknown names are then left to ``check``.
    """

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
    """One configured remedy: a registered ``kind`` (see :func:`describe`) and its ``params``, shown as
    row ``name``. Kind and parameters are checked when it is made; omitted parameters take the
    kind's defaults when it is built."""

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
    """The model of ``remedy`` for ``seed`` (through the registry): an :class:`Arm`. Raises
    :class:`NotFeasible` where the remedy cannot run in the audit's world."""
    if not isinstance(remedy, Remedy):
        raise TypeError(f"remedy must be a Remedy; got {type(remedy).__name__}")
    entry = REGISTRY[remedy.kind]
    return entry.build(audit, entry.params(remedy.params), seed, memo)
