"""Fine-tuning (M^t) and training from scratch (M^b) by a :class:`~lingerlab.recipe.Recipe`: one
seeded loop (:func:`_fit`) with on-disk checkpoints of the final weights and per-epoch history, keyed
by everything that defines the run and (through ``cache.cached``) the code of this module's imports.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from . import cache as _cache
from ._data import _collate
from ._validation import check_int_range, check_nonempty
from .identities import architecture_key, callable_key, data_fingerprint, weights_fingerprint
from .inference import check_layout, evaluate, nhwc, precise_bn_statistics, uses_channels_last
from .models import batchnorm_layers, find_head, replace_head
from .recipe import Recipe
from .report import resolve_device

__all__ = ["finetune", "train_scratch"]

_HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "epoch_s", "wall_s"]


def _freeze(model: nn.Module, freeze: Sequence[str]) -> None:
    """Turn off gradients of parameters whose name (or name inside a ``Normalized`` wrapper, without
    ``model.``) starts with one of ``freeze``."""
    params = dict(model.named_parameters())
    for prefix in freeze:
        hits = [n for n in params if n.startswith(prefix) or n.startswith("model." + prefix)]
        if not hits:
            tops = sorted({".".join(n.split(".")[: 2 if n.startswith("model.") else 1]) for n in params})
            raise ValueError(
                f"freeze prefix {prefix!r} matches no parameter; parameter names start with: {', '.join(tops[:20])}"
            )
        for n in hits:
            params[n].requires_grad_(False)


def _fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset | None,
    recipe: Recipe,
    *,
    generator: torch.Generator,
    device: torch.device,
    progress: bool,
    desc: str,
    val_every: int,
    layout: str,
) -> dict[str, list]:
    """The shared loop: shuffle with ``generator``, optional augmentation, CE (+ extra loss);
    validation after every ``val_every``-th epoch and after the last (NaN in between);
    ``recipe.precise_bn``: :func:`precise_bn_statistics` on ``train`` after the last step, before its validation."""
    from tqdm.auto import tqdm

    channels_last = uses_channels_last(model, layout)
    if channels_last:  # NHWC: 1.3-1.5x faster CNN training on a CPU, the layout tensor cores prefer on a GPU
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("every parameter is frozen: nothing to train (check freeze=)")
    if recipe.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(train)  # type: ignore[arg-type]
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = max(1, recipe.epochs * steps_per_epoch)
    sched = (
        torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
        if recipe.lr_schedule == "cosine"
        else None
    )
    tensors = train.tensors if isinstance(train, TensorDataset) else None
    history: dict[str, list] = {c: [] for c in _HISTORY_COLUMNS}
    bar = tqdm(
        total=recipe.epochs * steps_per_epoch,
        desc=desc,
        file=sys.stderr,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    try:
        for epoch in range(1, recipe.epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=generator)
            chunks = [perm[i : i + recipe.batch_size] for i in range(0, n, recipe.batch_size)]
            if len(chunks) > 1 and len(chunks[-1]) == 1:  # a batch of one breaks BatchNorm in train mode
                chunks = chunks[:-1]
            if tensors is not None:
                source = ((tensors[0][idx], tensors[1][idx]) for idx in chunks)
            else:
                source = iter(
                    DataLoader(
                        train,
                        batch_sampler=[c.tolist() for c in chunks],
                        collate_fn=_collate,
                        num_workers=recipe.num_workers,
                    )
                )
            model.train()
            if recipe.bn == "freeze":
                for layer in batchnorm_layers(model).values():
                    layer.eval()
            # per-step loss and hit count stay on the device and are read once per epoch: no host sync
            # per step, so a GPU queues the next step while it runs this one
            losses, hits, sizes = [], [], []
            for x, y in source:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if recipe.augment is not None:
                    x = recipe.augment(x, generator)
                if channels_last:
                    x = nhwc(x)
                out = model(x)
                loss = nn.functional.cross_entropy(out, y)
                if recipe.extra_loss is not None:
                    loss = loss + recipe.extra_loss(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                losses.append(loss.detach())
                hits.append((out.detach().argmax(1) == y).sum())
                sizes.append(len(y))
                bar.update(1)
            step_losses = torch.stack(losses).cpu().tolist() if losses else []
            tot_n = max(sum(sizes), 1)
            train_loss = sum(v * n for v, n in zip(step_losses, sizes)) / tot_n  # as float(loss) * n summed per step
            train_acc = (int(torch.stack(hits).sum()) if hits else 0) / tot_n
            bar.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}")
            if recipe.precise_bn and epoch == recipe.epochs:
                precise_bn_statistics(model, train, batch_size=recipe.batch_size, device=device, layout=layout)
            due = epoch % val_every == 0 or epoch == recipe.epochs
            val_acc = (
                evaluate(model, val, device=device, layout=layout)
                if due and val is not None and len(val)  # type: ignore[arg-type]
                else float("nan")
            )
            now = time.perf_counter()
            for c, v in zip(_HISTORY_COLUMNS, (epoch, train_loss, train_acc, val_acc, now - t0, now - t_start)):
                history[c].append(v)
    finally:
        bar.close()
        if channels_last:  # back to NCHW, the layout a model loaded from the cache has
            model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def _select(train: Dataset, train_subset: tuple[int, ...] | None) -> Dataset:
    """``train`` cut to ``train_subset`` (a recipe's tuple of indices; None: all of it)."""
    if train_subset is None:
        return train
    n = len(train)  # type: ignore[arg-type]
    bad = [i for i in train_subset if not 0 <= i < n]
    if bad:
        raise ValueError(f"train_subset must hold indices in [0, {n - 1}] of train; got e.g. {bad[:3]}")
    if not train_subset:
        raise ValueError("train_subset is empty: pass at least one index")
    if train_subset == tuple(range(n)):  # every index in order is no subset: the same run under the same cache key
        return train
    if isinstance(train, TensorDataset):  # keep the fast tensor path
        t = torch.as_tensor(train_subset)
        return TensorDataset(*(x[t] for x in train.tensors))
    return Subset(train, list(train_subset))


def _run(
    stage: str,
    build: Callable[[], nn.Module],
    identity: dict[str, Any],
    train: Dataset,
    val: Dataset | None,
    recipe: Recipe,
    *,
    seed: int,
    device: torch.device | str | None,
    cache: bool,
    progress: bool,
    val_every: int | None,
    layout: str,
) -> tuple[nn.Module, pd.DataFrame]:
    """Build the initial model (under ``torch.manual_seed(seed)``) and train it by ``recipe``, or load
    the cached run. ``identity``: what the key needs beyond weights, data, recipe and run settings."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a recipe.Recipe; got {type(recipe).__name__}")
    check_layout(layout)
    seed = check_int_range("seed", seed, 0)
    dev = resolve_device(device)
    check_nonempty("train", train)  # type: ignore[arg-type]
    train = _select(train, recipe.train_subset)
    if val_every is not None:
        check_int_range("val_every", val_every, 1)
    every = max(1, math.ceil(recipe.epochs / 4)) if val_every is None else val_every  # default: about 4 per run
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build()
    _freeze(model, recipe.freeze)
    key = _cache.fingerprint(
        stage,
        {
            **identity,
            "init": weights_fingerprint(model),
            "arch": architecture_key(model),
            "train": data_fingerprint(train),
            "val": data_fingerprint(val) if val is not None else None,
            "recipe": recipe.cache_key(),
            "seed": seed,
            "device": dev.type,
            "layout": layout,
            "val_every": every,
            "torch": torch.__version__.split("+")[0],
        },
        length=24,
    )

    def compute() -> dict[str, Any]:
        m = model.to(dev)
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout, drop-connect and other global-RNG users
            history = _fit(
                m,
                train,
                val,
                recipe,
                generator=g,
                device=dev,
                progress=progress,
                desc=stage,
                val_every=every,
                layout=layout,
            )
        return {
            "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()},
            "history": history,
            "key": key,
        }

    entry = _cache.cached(stage, key, compute, enabled=cache)
    model.load_state_dict(entry["state_dict"])
    model = model.to(dev).eval()
    frame = pd.DataFrame({c: entry["history"][c] for c in _HISTORY_COLUMNS}).set_index("epoch")
    frame.attrs["cache_key"] = key
    return model, frame


def finetune(
    model_or_source: Any,
    train: Dataset,
    val: Dataset | None,
    recipe: Recipe,
    *,
    num_classes: int,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: bool = True,
    progress: bool = True,
    val_every: int | None = None,
    layout: str = "channels_last",
) -> tuple[nn.Module, pd.DataFrame]:
    """Standard fine-tuning: M^t = M^s (``model_or_source``, or a ``World``'s ``source_model``; not
    modified) with a fresh ``num_classes`` head (``recipe.head``, default ``models.find_head``'s),
    trained on ``train`` (``recipe.train_subset`` of it) by ``recipe``.

    ``val`` may be None (no validation). ``seed`` drives head initialisation, shuffling, augmentation
    and the global RNG (dropout). ``val_every``: validate after every ``val_every``-th epoch and the
    last (default: about four times per run; ``val_acc`` is NaN in between). ``cache``: load/store the
    run under ``cache.cache_dir()/finetune``. ``layout``: ``"channels_last"`` (1.3-1.5x faster CNN
    training on a CPU, ``benchmarks/training.py``) or ``"contiguous"``, the memory format convolutional
    models train and validate in (part of the key: it changes the rounding); the model returned is in
    the default layout, as a cached one is.

    Returns ``(model, history)``: the model in eval mode on ``device`` and per-epoch ``train_loss``,
    ``train_acc``, ``val_acc``, ``epoch_s`` and cumulative ``wall_s`` (of the run that trained it).
    """
    source = getattr(model_or_source, "source_model", model_or_source)
    if not isinstance(source, nn.Module):
        raise ValueError(f"model_or_source must be an nn.Module or a World; got {type(model_or_source).__name__}")
    check_int_range("num_classes", num_classes, 1)

    def build() -> nn.Module:
        gen = torch.Generator().manual_seed(seed)
        return replace_head(copy.deepcopy(source).cpu(), num_classes, head=recipe.head, generator=gen)

    run = dict(seed=seed, device=device, cache=cache, progress=progress, val_every=val_every, layout=layout)
    return _run("finetune", build, {"num_classes": num_classes}, train, val, recipe, **run)


def train_scratch(
    make_model: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None,
    recipe: Recipe,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: bool = True,
    progress: bool = True,
    val_every: int | None = None,
    layout: str = "channels_last",
) -> tuple[nn.Module, pd.DataFrame]:
    """Train M^b = ``make_model()`` from random weights (drawn under ``torch.manual_seed(seed)``) by ``recipe``.

    Same arguments and return value as :func:`finetune`; ``num_classes`` (optional) replaces the head
    when the architecture's output size differs (the recipe's ``head`` names it).
    """
    if not callable(make_model):
        raise ValueError(f"make_model must be a callable returning an nn.Module; got {type(make_model).__name__}")
    if num_classes is not None:
        check_int_range("num_classes", num_classes, 1)

    def build() -> nn.Module:
        m = make_model()
        if not isinstance(m, nn.Module):
            raise ValueError(f"make_model() must return an nn.Module; got {type(m).__name__}")
        if num_classes is not None and find_head(m, recipe.head)[1].out_features != num_classes:
            m = replace_head(m, num_classes, head=recipe.head, generator=torch.Generator().manual_seed(seed))
        return m.cpu()

    run = dict(seed=seed, device=device, cache=cache, progress=progress, val_every=val_every, layout=layout)
    identity = {"num_classes": num_classes, "make_model": callable_key(make_model)}
    return _run("scratch", build, identity, train, val, recipe, **run)
