"""Which channels App. B prunes in a model of an audit, and the pruned model: the channel sets of
Eq. 6 (computed once per table for the same weights), Eq. 7's channels, optionally capped at a
fraction of the layer (:func:`cap_channels`)."""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .._validation import check_int_range
from ..identities import weights_fingerprint
from ..models import find_head
from .builder_kit import held_out_source, join_notes, target_by_class
from .pruning import channel_sets, channels_to_prune, penultimate_features, prune_channels

__all__ = ["cap_channels", "prune_sets", "pruned"]


def _a_t(model: nn.Module, audit: Any, params: Mapping[str, Any], head: str) -> float:
    if params["a_t"] is not None:
        return float(params["a_t"])
    x = torch.cat(list(target_by_class(audit).values()))
    acts = penultimate_features(model, x, head=head)
    return float(torch.quantile(acts.flatten().double(), float(params["a_t_quantile"])))


def _sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None
) -> tuple[dict[int, Tensor], dict[int, Tensor], float, str, float] | None:
    """App. B's channel sets of ``model`` (Eq. 6 per source class of ``params["classes"]``, per target
    class), its a_t, the note and the seconds they took; None when there is no class to prune for.
    Computed once per ``memo`` for the same weights and set parameters: the capped variants differ
    only in which of these channels they keep (:func:`cap_channels`)."""
    which = params["classes"]
    key = None  # the weights are fingerprinted only where a memo can use the key
    if memo is not None:
        key = (
            "channel_sets",
            weights_fingerprint(model),
            head,
            which,
            seed if which == "lingering" else None,
            params["a_t"],
            params["a_t_quantile"],
        )
        if key in memo:
            return memo[key]
    cls = audit.source_only().tolist() if which == "source_only" else audit.lingering_classes(seed)
    out = None
    if cls:
        t0 = time.perf_counter()
        src, note = held_out_source(audit, cls)
        a_t = _a_t(model, audit, params, head)
        s_sets = channel_sets(model, src, a_t, head=head)
        t_sets = channel_sets(model, target_by_class(audit), a_t, head=head)
        out = (s_sets, t_sets, a_t, note, time.perf_counter() - t0)
    if key is not None:
        memo[key] = out  # type: ignore[index]
    return out


def prune_sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None = None
) -> tuple[Tensor, float, str, float]:
    """The channels App. B prunes in ``model`` (Eq. 7, capped at ``max_fraction`` of the layer), a_t,
    the note and the seconds the channel sets took (counted in full in every row that uses them, as
    if the remedy ran alone)."""
    sets = _sets(model, audit, seed, params, head, memo)
    if sets is None:
        return torch.zeros(0, dtype=torch.long), float("nan"), f"no {params['classes']} classes: nothing to prune", 0.0
    s_sets, t_sets, a_t, note, seconds = sets
    chans = channels_to_prune(s_sets, t_sets)
    cap = params["max_fraction"]
    if cap is not None:
        n_max = int(float(cap) * find_head(model, head)[1].in_features)
        if len(chans) > n_max:
            chans = cap_channels(chans, s_sets, n_max)
            note = join_notes(
                f"capped at max_fraction={float(cap):g}: the {n_max} channels in the most source-only classes' sets",
                note,
            )
    return chans, a_t, note, seconds


def cap_channels(channels: Tensor, source_sets: Mapping[int, Tensor], n_max: int) -> Tensor:
    """The ``n_max`` of ``channels`` that lie in the most source-only classes' sets F^c (ties: lower
    index first), ascending: a bounded App. B pruning that removes the most shared memories first."""
    n_max = check_int_range("n_max", n_max, 0)
    count = {int(c): 0 for c in channels.tolist()}
    for s in source_sets.values():
        for c in torch.as_tensor(s).flatten().tolist():
            if int(c) in count:
                count[int(c)] += 1
    keep = sorted(count, key=lambda c: (-count[c], c))[:n_max]
    return torch.as_tensor(sorted(keep), dtype=torch.long)


def pruned(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], memo: dict | None, what: str
) -> tuple[nn.Module, int, str, float]:
    """A copy of ``model`` with the channels of :func:`prune_sets` pruned, how many, the note (``what``
    says which channels were pruned when) and the seconds the channel sets and the pruning took."""
    head = audit.world.spec.head
    chans, a_t, note, seconds = prune_sets(model, audit, seed, params, head, memo)
    t0 = time.perf_counter()
    out = prune_channels(model, chans, head=head)
    seconds += time.perf_counter() - t0
    return out, len(chans), join_notes(f"a_t={a_t:.3g}, {len(chans)} {what}", note), seconds
