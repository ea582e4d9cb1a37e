"""Models as the method sees them: a backbone B(M) and a linear head H(M) (paper, Sec. 3.2).

``split_model`` separates the two for torchvision, timm, EfficientNet-Lite and any model whose head
is named; ``source_target_model`` builds M^st = B(M^t) + H(M^s), the model Eqs. 3 and 5 score with.
Every model in the package takes images in [0, 1]; ``Normalized`` puts the normalisation inside.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._data import model_device
from ._validation import check_choice, check_int_range

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Attribute paths tried, in order, when a model does not say where its head is.
_KNOWN_HEADS = ("fc", "_fc", "heads.head", "head.fc", "head", "classifier", "last_linear", "linear")


class Normalized(nn.Module):
    """Wrap ``model`` so that it takes images in [0, 1]: ``forward(x) = model((x - mean) / std)``
    (``mean`` and ``std`` are buffers)."""

    def __init__(
        self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel; got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be in (0, inf) for every channel; got {tuple(std)}")
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


_WRAPPERS = (Normalized, nn.DataParallel, nn.parallel.DistributedDataParallel)  # they hold one network


def unwrap(model: nn.Module) -> tuple[str, nn.Module]:
    """``(prefix, inner)``: ``model`` without the wrappers that hold one network (``Normalized``,
    ``DataParallel``, a module whose only child is its ``.model``/``.module``); ``prefix`` is the
    qualified name of ``inner`` with a trailing "." ("" when nothing was peeled)."""
    prefix = ""
    for _ in range(8):
        for attr in ("model", "module"):
            sub = getattr(model, attr, None)
            # a wrapper holds one network; a network that merely owns `.model` also has others
            if isinstance(sub, nn.Module) and sub is not model:
                if all(n == attr for n, _ in model.named_children()) or isinstance(model, _WRAPPERS):
                    break
        else:
            break
        prefix += attr + "."
        model = sub
    return prefix, model


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _last_linear(model: nn.Module, name: str) -> str | None:
    """``name`` if it is a Linear, or its last child if ``name`` is a Sequential ending in a Linear."""
    mod = _get(model, name)
    if isinstance(mod, nn.Linear):
        return name
    if isinstance(mod, nn.Sequential) and len(mod) > 0:
        last = list(mod.named_children())[-1]
        if isinstance(last[1], nn.Linear):
            return f"{name}.{last[0]}"
    return None


def _timm_head(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    name = cfg.get("classifier") if isinstance(cfg, dict) else None
    if isinstance(name, (tuple, list)):  # e.g. distilled ViTs: the first head is the class head
        name = name[0] if name else None
    if isinstance(name, str):
        found = _last_linear(model, name)
        if found is not None:
            return found
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            clf = get_classifier()
        except Exception:  # noqa: BLE001 - a foreign get_classifier; fall back to the heuristics
            clf = None
        if isinstance(clf, nn.Linear):
            return next((n for n, m in model.named_modules() if m is clf), None)
    return None


def _candidates(model: nn.Module) -> str:
    lins = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not lins:
        return "it has no nn.Linear layers"
    rows = [f"{n!r} (Linear {m.in_features} -> {m.out_features})" for n, m in reversed(lins[-8:])]
    more = f" and {len(lins) - 8} earlier" if len(lins) > 8 else ""
    return "candidate head modules, last first: " + ", ".join(rows) + more


def find_head(model: nn.Module, head: str | None = None) -> tuple[str, nn.Linear]:
    """``(qualified name in model, module)`` of the linear head H(M): ``head`` (relative to ``model``
    or to the network inside its wrappers), else timm's classifier, else the usual attributes."""
    prefix, inner = unwrap(model)
    if head is not None:
        found = [(n, m) for n in dict.fromkeys((head, prefix + head)) if head and (m := _get(model, n)) is not None]
        for name, mod in found:
            if isinstance(mod, nn.Linear):
                return name, mod
        if found:
            raise ValueError(
                f"head must name an nn.Linear module; {found[0][0]!r} is a "
                f"{type(found[0][1]).__name__}. {_candidates(model)}"
            )
        raise ValueError(f"head={head!r} is not a module of {type(inner).__name__}; {_candidates(model)}")
    known = (_last_linear(inner, attr) for attr in _KNOWN_HEADS)
    name = next((n for n in (_timm_head(inner), *known) if n is not None), None)
    if name is None:
        raise ValueError(
            f'cannot find the classification head of {type(inner).__name__}: pass head="name" '
            f"with the qualified name of its final nn.Linear; {_candidates(model)}"
        )
    full = prefix + name
    return full, model.get_submodule(full)  # type: ignore[return-value]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def split_model(model: nn.Module, head: str | None = None) -> tuple[nn.Module, nn.Linear]:
    """``(B(M), H(M))``: deep copies with ``head(backbone(x)) == model(x)``; the backbone is the
    whole model with its head replaced by ``nn.Identity``."""
    name, _ = find_head(model, head)
    backbone = copy.deepcopy(model)
    head_mod = backbone.get_submodule(name)
    _set_submodule(backbone, name, nn.Identity())
    return backbone, head_mod  # type: ignore[return-value]


def _init_linear(lin: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default Linear init (uniform +-1/sqrt(fan_in)), drawn from ``generator``."""
    bound = 1.0 / math.sqrt(lin.in_features)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    with torch.no_grad():
        for p in (lin.weight, lin.bias):
            if p is not None:
                p.copy_(torch.rand(p.shape, generator=generator, device=gen_device) * 2 * bound - bound)


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """An int seed becomes a fresh CPU ``torch.Generator``; a generator or None passes through."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise ValueError(f"generator must be a torch.Generator, an int seed or None; got {type(generator).__name__}")
    return torch.Generator().manual_seed(generator)


def replace_head(
    model: nn.Module, num_classes: int, head: str | None = None, generator: torch.Generator | int | None = None
) -> nn.Module:
    """A deep copy of ``model`` with a fresh ``nn.Linear(in_features, num_classes)`` head (the old
    one's device, dtype and bias), initialised as PyTorch does from ``generator``."""
    check_int_range("num_classes", num_classes, 1)
    name, old = find_head(model, head)
    new_model = copy.deepcopy(model)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    _init_linear(new, as_generator(generator))
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    _set_submodule(new_model, name, new)
    return new_model


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """All BatchNorm layers (1d/2d/3d, SyncBatchNorm) of ``model`` by qualified name, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}


def copy_batchnorm_stats(dst: nn.Module, src: nn.Module) -> nn.Module:
    """Copy the running statistics of ``src``'s BatchNorm layers into ``dst``'s (in place, by name)."""
    d, s = batchnorm_layers(dst), batchnorm_layers(src)
    if set(d) != set(s):
        raise ValueError(
            "the two models' BatchNorm layers differ: the architectures must match "
            f"(only in target: {sorted(set(d) - set(s))[:5]}, only in source: {sorted(set(s) - set(d))[:5]})"
        )
    with torch.no_grad():
        for name, bn in d.items():
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                a, b = getattr(bn, buf, None), getattr(s[name], buf, None)
                if a is None or b is None:
                    if (a is None) != (b is None):
                        raise ValueError(f"BatchNorm layer {name!r} tracks {buf} in one model but not the other")
                    continue
                if a.shape != b.shape:
                    raise ValueError(
                        f"BatchNorm layer {name!r}: {buf} shapes differ ({tuple(a.shape)} vs {tuple(b.shape)})"
                    )
                a.copy_(b.to(a.device))
    return dst


def source_target_model(
    target_model: nn.Module, source_model: nn.Module, bn: str = "target", head: str | None = None
) -> nn.Module:
    """M^st = B(M^t) + H(M^s) (Sec. 3.2), a new model in eval mode on ``target_model``'s device;
    ``bn="source"`` also restores M^s's BatchNorm statistics (is a memory lost or only masked?)."""
    check_choice("bn", bn, ("target", "source"))
    t_name, t_head = find_head(target_model, head)
    _, s_head = find_head(source_model, head)
    if s_head.in_features != t_head.in_features:
        raise ValueError(
            f"the source head takes {s_head.in_features} features but the target backbone gives "
            f"{t_head.in_features}: the two models must share an architecture"
        )
    mst = copy.deepcopy(target_model)
    new_head = copy.deepcopy(s_head).to(device=t_head.weight.device, dtype=t_head.weight.dtype)
    _set_submodule(mst, t_name, new_head)
    if bn == "source":
        copy_batchnorm_stats(mst, source_model)
    return mst.to(model_device(target_model)).eval()


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode for the block, then restore every submodule's training flag."""
    saved = [[(m, m.training) for m in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for flags in saved:
            for m, training in flags:
                m.training = training
