"""Fine-tuning (M^t) and training from scratch (M^b): plain, seeded loops with on-disk checkpoints.

Both entry points share one loop (:func:`_fit`). A run is keyed by a hash of everything that
defines it (initial weights, data, hyper-parameters, augmentation and extra-loss identity, device
type, memory layout, torch version) and, through ``cache.cached``, by the code of this module's
import closure, so editing the training code retrains. The final weights and the per-epoch history
are stored together, so a warm cache returns the same weights and prints the same history as the
cold run that filled it.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from . import cache as _cache
from ._data import ImageData, _collate, batches, model_device, num_items
from ._validation import check_bool, check_choice, check_int_range, check_nonempty, check_range
from .models import batchnorm_layers, eval_mode, replace_head
from .report import resolve_device

__all__ = [
    "finetune",
    "train_scratch",
    "precise_bn_statistics",
    "evaluate",
    "predict",
    "data_fingerprint",
    "weights_fingerprint",
    "architecture_key",
    "callable_key",
    "history_frame",
    "LAYOUTS",
    "eval_batch_size",
    "CPU_EVAL_BATCH",
    "EVAL_BATCH",
]

Augment = Callable[[Tensor, torch.Generator], Tensor]
ExtraLoss = Callable[[nn.Module, Tensor, Tensor], Tensor]

_HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "epoch_s", "wall_s"]


# --------------------------------------------------------------------------------------------
# identities for cache keys
# --------------------------------------------------------------------------------------------


def weights_fingerprint(model: nn.Module) -> str:
    """Hash of a model's state dict (0-d tensors such as ``num_batches_tracked`` included)."""
    return _cache.fingerprint({k: (v.reshape(1) if v.ndim == 0 else v) for k, v in model.state_dict().items()})


def architecture_key(model: nn.Module) -> str:
    """Hash of a model's structure and the module settings a state dict does not hold (BatchNorm
    momentum and eps, dropout rates, conv strides...): every module's name, type and ``extra_repr``."""
    return _cache.fingerprint([(n, type(m).__qualname__, m.extra_repr()) for n, m in model.named_modules()])


def data_fingerprint(data: ImageData) -> str:
    """A stable hash of a dataset's contents.

    Uses, in order: a ``fingerprint`` attribute (lazy file datasets define one from paths, sizes and
    labels), the tensors of a ``TensorDataset``/``Tensor``, a ``Subset``'s parent and indices, else
    every item (images and labels) read once.
    """
    fp = getattr(data, "fingerprint", None)
    if isinstance(fp, str) and fp:
        return fp
    if isinstance(data, Tensor):
        return _cache.fingerprint("tensor", data)
    if isinstance(data, TensorDataset):
        return _cache.fingerprint("tensors", list(data.tensors))
    if isinstance(data, Subset):
        return _cache.fingerprint("subset", data_fingerprint(data.dataset), [int(i) for i in data.indices])
    if isinstance(data, DataLoader):
        return data_fingerprint(data.dataset)  # type: ignore[arg-type]
    parts: list[Any] = [type(data).__name__, num_items(data)]
    for x, y in batches(data, batch_size=256):
        parts.append(_cache.fingerprint(x, y))
    return _cache.fingerprint("items", parts)


def callable_key(fn: Callable[..., Any] | None) -> str | None:
    """Identity of a callable for a cache key: :func:`lingerlab.cache.fingerprint` of it (None for None).

    An object may define ``cache_key`` (a plain-data description of what it computes); otherwise the
    key hashes its code (the ``lingerlab`` module closure that defines it, or its own source) and the
    values it closes over (``functools.partial`` arguments, defaults, closure cells, an instance's
    attributes), so editing the function or changing a captured hyper-parameter invalidates the cache.
    An object that cannot be hashed stably raises ``TypeError``.
    """
    return None if fn is None else _cache.fingerprint(fn, length=24)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------

# Memory formats CNNs can train and predict in (``layout=``); part of the training cache key, since it
# changes the rounding. benchmarks/training.py times both.
LAYOUTS = ("channels_last", "contiguous")


def _check_layout(layout: str) -> str:
    return check_choice("layout", layout, LAYOUTS)


def _channels_last(model: nn.Module, layout: str) -> bool:
    """Whether ``model`` runs in channels-last layout: it has convolutions and ``layout`` asks for it."""
    return layout == "channels_last" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _nhwc(x: Tensor) -> Tensor:
    """An image batch [N, C, H, W] in channels-last memory format (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


#: images per inference batch on a CPU: EfficientNet-Lite0 at 112 px runs 5.37 ms per image at 32 and
#: 10.01 ms at 256 on the 2-core CPU (``benchmarks/lite_speed.py``; the activations of a large batch
#: leave the caches); the shapes CNN is flat from 16 to 256 (about 0.3 ms). Accelerators keep large batches.
CPU_EVAL_BATCH = 32
EVAL_BATCH = 256


def eval_batch_size(device: torch.device | str | None) -> int:
    """The default images per inference batch on ``device``: :data:`CPU_EVAL_BATCH` on a CPU (or when
    unknown), :data:`EVAL_BATCH` on an accelerator."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return CPU_EVAL_BATCH if dev.type == "cpu" else EVAL_BATCH


@torch.no_grad()
def predict(
    model: nn.Module,
    data: ImageData,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    layout: str = "channels_last",
) -> tuple[Tensor, Tensor | None]:
    """``(logits [N, C], labels [N] or None)`` of ``model`` on ``data`` in eval mode (on the CPU).

    ``batch_size``: images per forward pass (None: :func:`eval_batch_size` of the device; eval-mode
    outputs do not depend on it beyond float rounding). ``layout``: ``"channels_last"`` (a CNN's input
    batches in NHWC memory format) or ``"contiguous"``.
    """
    _check_layout(layout)
    dev = torch.device(device) if device is not None else model_device(model)
    batch_size = eval_batch_size(dev) if batch_size is None else check_int_range("batch_size", batch_size, 1)
    outs, ys = [], []
    channels_last = _channels_last(model, layout)
    with eval_mode(model):
        for x, y in batches(data, batch_size=batch_size, device=dev):
            if channels_last:  # faster convolutions; the model's weights are left as they are
                x = _nhwc(x)
            outs.append(model(x).float().cpu())
            ys.append(y.cpu() if y is not None else None)
    logits = torch.cat(outs) if outs else torch.empty(0, 0)
    labels = None if any(y is None for y in ys) or not ys else torch.cat(ys)  # type: ignore[arg-type]
    return logits, labels


def evaluate(
    model: nn.Module,
    data: ImageData,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    layout: str = "channels_last",
) -> float:
    """Top-1 accuracy of ``model`` on labelled ``data`` (eval mode; training flags restored; ``batch_size``
    and ``layout`` as in :func:`predict`)."""
    _check_layout(layout)
    check_nonempty("data", data)  # type: ignore[arg-type]
    logits, labels = predict(model, data, batch_size=batch_size, device=device, layout=layout)
    if labels is None:
        raise ValueError("data has no labels: evaluate needs a Dataset of (image, label) pairs")
    return float((logits.argmax(1) == labels).float().mean())


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def history_frame(history: dict[str, list]) -> pd.DataFrame:
    """The per-epoch history as a DataFrame (index: epoch)."""
    return pd.DataFrame({c: history[c] for c in _HISTORY_COLUMNS}).set_index("epoch")


def _freeze(model: nn.Module, freeze: Sequence[str]) -> list[str]:
    """Turn off gradients of parameters whose name starts with one of ``freeze``; return their names.

    Names are those of ``model.named_parameters()``; inside a ``Normalized`` wrapper the name
    relative to the wrapped model (without ``model.``) works too.
    """
    if isinstance(freeze, str):
        freeze = [freeze]
    names = [n for n, _ in model.named_parameters()]
    frozen: list[str] = []
    for prefix in freeze:
        hits = [n for n in names if n.startswith(prefix) or n.startswith("model." + prefix)]
        if not hits:
            tops = sorted(
                {n.split(".")[0] if not n.startswith("model.") else ".".join(n.split(".")[:2]) for n in names}
            )
            raise ValueError(
                f"freeze prefix {prefix!r} matches no parameter; parameter names start with: {', '.join(tops[:20])}"
            )
        frozen.extend(hits)
    params = dict(model.named_parameters())
    for n in set(frozen):
        params[n].requires_grad_(False)
    return sorted(set(frozen))


def _set_train_mode(model: nn.Module, bn: str) -> None:
    model.train()
    if bn == "freeze":
        for layer in batchnorm_layers(model).values():
            layer.eval()


def _fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset | None,
    *,
    lr: float,
    epochs: int,
    optimizer: str,
    weight_decay: float,
    momentum: float,
    batch_size: int,
    bn: str,
    lr_schedule: str,
    augment: Augment | None,
    extra_loss: ExtraLoss | None,
    generator: torch.Generator,
    device: torch.device,
    num_workers: int,
    progress: bool,
    desc: str,
    val_every: int,
    layout: str,
    precise_bn: bool = False,
) -> dict[str, list]:
    """The shared loop: shuffle with ``generator``, optional augmentation, CE (+ extra loss);
    validation after every ``val_every``-th epoch and after the last (NaN in between);
    ``precise_bn``: :func:`precise_bn_statistics` on ``train`` after the last step, before its validation."""
    from tqdm.auto import tqdm

    channels_last = _channels_last(model, layout)
    if channels_last:  # NHWC: 1.3-1.5x faster CNN training on a CPU, the layout tensor cores prefer on a GPU
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("every parameter is frozen: nothing to train (check freeze=)")
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    n = len(train)  # type: ignore[arg-type]
    total_steps = max(1, epochs * math.ceil(n / batch_size))
    sched = (
        torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
        if lr_schedule == "cosine"
        else None
    )
    tensors = train.tensors if isinstance(train, TensorDataset) else None
    history: dict[str, list] = {c: [] for c in _HISTORY_COLUMNS}
    steps_per_epoch = math.ceil(n / batch_size)
    bar = tqdm(
        total=epochs * steps_per_epoch,
        desc=desc,
        file=sys.stderr,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=generator)
            chunks = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
            if len(chunks) > 1 and len(chunks[-1]) == 1:  # a batch of one breaks BatchNorm in train mode
                chunks = chunks[:-1]
            if tensors is not None:
                source = ((tensors[0][idx], tensors[1][idx]) for idx in chunks)
            else:
                source = iter(
                    DataLoader(
                        train, batch_sampler=[c.tolist() for c in chunks], collate_fn=_collate, num_workers=num_workers
                    )
                )
            _set_train_mode(model, bn)
            # per-step loss and hit count stay on the device and are read once per epoch: no host sync
            # per step, so a GPU queues the next step while it runs this one
            losses, hits, sizes = [], [], []
            for x, y in source:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if augment is not None:
                    x = augment(x, generator)
                if channels_last:
                    x = _nhwc(x)
                out = model(x)
                loss = nn.functional.cross_entropy(out, y)
                if extra_loss is not None:
                    loss = loss + extra_loss(model, x, y)
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
            if precise_bn and epoch == epochs:
                precise_bn_statistics(model, train, batch_size=batch_size, device=device, layout=layout)
            due = epoch % val_every == 0 or epoch == epochs
            val_acc = (
                evaluate(model, val, device=device, layout=layout)
                if due and val is not None and len(val)  # type: ignore[arg-type]
                else float("nan")
            )
            now = time.perf_counter()
            history["epoch"].append(epoch)
            history["train_loss"].append(train_loss)
            history["train_acc"].append(train_acc)
            history["val_acc"].append(val_acc)
            history["epoch_s"].append(now - t0)
            history["wall_s"].append(now - t_start)
    finally:
        bar.close()
        if channels_last:  # back to NCHW, the layout a model loaded from the cache has
            model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


@torch.no_grad()
def precise_bn_statistics(
    model: nn.Module,
    data: ImageData,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    layout: str = "channels_last",
) -> nn.Module:
    """Precise BatchNorm (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", Sec. 3): replace every
    BatchNorm layer's running statistics by the plain average of its batch statistics over ``data``
    (train-mode forward passes in batches of ``batch_size``, no gradient, no augmentation), so that
    eval mode normalises with the statistics of the final weights rather than an exponential average
    that lags behind them. A net trained from scratch with few steps needs it: ``lite0``'s scratch
    EfficientNet is at 0.98 accuracy in train mode and at chance (0.5) in eval mode after three
    epochs with momentum 0.1. Weights are unchanged; each layer's momentum and training flag are
    restored. Returns ``model``."""
    layers = list(batchnorm_layers(model).values())
    if not layers:
        return model
    dev = torch.device(device) if device is not None else model_device(model)
    check_nonempty("data", data)  # type: ignore[arg-type]
    batch_size = check_int_range("batch_size", batch_size, 2)
    channels_last = _channels_last(model, layout)
    state = [(m.momentum, m.training) for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the plain mean over batches
        m.train()
    try:
        for x, _ in batches(data, batch_size=batch_size, device=dev):
            if len(x) > 1:  # a batch of one (the last, at most) has no variance
                model(_nhwc(x) if channels_last else x)
    finally:
        for m, (momentum, training) in zip(layers, state):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    return model


def _val_every(epochs: int, val_every: int | None) -> int:
    """Validation interval: ``val_every``, or by default about four validations per run."""
    if val_every is None:
        return max(1, math.ceil(epochs / 4))
    check_int_range("val_every", val_every, 1)
    return val_every


def _prepare(
    lr: float,
    epochs: int,
    optimizer: str,
    bn: str,
    weight_decay: float,
    batch_size: int,
    seed: int,
    momentum: float,
    lr_schedule: str,
    num_workers: int,
    train: Dataset,
    train_subset: Any,
    device: torch.device | str | None,
    freeze: Sequence[str] | str,
    layout: str,
    precise_bn: bool = False,
) -> tuple[torch.device, Dataset, list[str]]:
    """Validate the arguments :func:`finetune` and :func:`train_scratch` share; return the device, the
    selected training set and the frozen-module list."""
    check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
    _check_layout(layout)
    check_range("lr", lr, 0, None, lo_open=True)
    check_int_range("epochs", epochs, 0)
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    check_choice("bn", bn, ("update", "freeze"))
    if check_bool("precise_bn", precise_bn) and bn == "freeze":
        raise ValueError(
            "precise_bn=True recomputes the BatchNorm statistics that bn='freeze' keeps fixed: "
            "use bn='update' with precise_bn, or precise_bn=False"
        )
    check_range("weight_decay", weight_decay, 0, None)
    check_range("momentum", momentum, 0, 1, hi_open=True)
    check_int_range("batch_size", batch_size, 1)
    if precise_bn and batch_size < 2:  # refused here, not after the last epoch
        raise ValueError(
            f"precise_bn=True needs batch_size >= 2 (a batch of one has no BatchNorm variance); "
            f"got batch_size={batch_size}"
        )
    check_int_range("seed", seed, 0)
    check_int_range("num_workers", num_workers, 0)
    check_nonempty("train", train)  # type: ignore[arg-type]
    return resolve_device(device), _select(train, train_subset), [freeze] if isinstance(freeze, str) else list(freeze)


def _select(train: Dataset, train_subset: Sequence[int] | Tensor | None) -> Dataset:
    if train_subset is None:
        return train
    idx = [int(i) for i in (train_subset.tolist() if isinstance(train_subset, Tensor) else train_subset)]
    n = len(train)  # type: ignore[arg-type]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"train_subset must hold indices in [0, {n - 1}] of train; got e.g. {bad[:3]}")
    if not idx:
        raise ValueError("train_subset is empty: pass at least one index")
    if idx == list(range(n)):  # every index in order is no subset: the same run under the same cache key
        return train
    if isinstance(train, TensorDataset):  # keep the fast tensor path
        t = torch.as_tensor(idx)
        return TensorDataset(*(x[t] for x in train.tensors))
    return Subset(train, idx)


def _run(
    stage: str,
    build: Callable[[], nn.Module],
    key_parts: dict[str, Any],
    train: Dataset,
    val: Dataset | None,
    fit_kwargs: dict[str, Any],
    seed: int,
    device: torch.device,
    cache: bool,
    progress: bool,
) -> tuple[nn.Module, pd.DataFrame]:
    """Build the initial model, then train it, or load the cached result of the same run."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build()
    key = _cache.fingerprint(stage, key_parts, length=24)

    def compute() -> dict[str, Any]:
        m = model.to(device)
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout, drop-connect and other global-RNG users
            history = _fit(m, train, val, generator=g, device=device, progress=progress, desc=stage, **fit_kwargs)
        return {
            "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()},
            "history": history,
            "key": key,
        }

    entry = _cache.cached(stage, key, compute, enabled=cache)
    model.load_state_dict(entry["state_dict"])
    model = model.to(device).eval()
    frame = history_frame(entry["history"])
    frame.attrs["cache_key"] = key
    return model, frame


def finetune(
    model_or_source: Any,
    train: Dataset,
    val: Dataset | None,
    *,
    num_classes: int,
    lr: float = 1e-3,
    epochs: int = 5,
    optimizer: str = "sgd",
    freeze: Sequence[str] = (),
    bn: str = "update",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    batch_size: int = 32,
    augment: Augment | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: bool = True,
    progress: bool = True,
    extra_loss: ExtraLoss | None = None,
    head: str | None = None,
    train_subset: Sequence[int] | Tensor | None = None,
    lr_schedule: str = "constant",
    num_workers: int = 0,
    val_every: int | None = None,
    layout: str = "channels_last",
    precise_bn: bool = False,
) -> tuple[nn.Module, pd.DataFrame]:
    """Standard fine-tuning: M^t = M^s with a fresh ``num_classes`` head, trained on ``train``.

    Args:
        model_or_source: the source model M^s (taking [0, 1] images) or a ``World`` (its
            ``source_model``). It is not modified.
        train, val: labelled target data (``val`` may be None: no validation column).
        freeze: parameter-name prefixes to keep fixed (e.g. ``["model.layer1", "model.layer2"]``).
        bn: ``"update"`` (BatchNorm statistics follow the target data) or ``"freeze"`` (BatchNorm
            layers stay in eval mode: running statistics frozen; their affine weights still train
            unless frozen by ``freeze``).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``; ``lr_schedule``: ``"constant"`` or
            ``"cosine"`` (per step, to 0 at the end).
        augment: ``augment(x, generator) -> x`` on each training batch (on ``device``); give it a
            ``cache_key`` attribute when it closes over state that the cache must see.
        extra_loss: ``extra_loss(model, x, y) -> scalar`` added to the cross-entropy (remedies such as
            L1 or unlearning terms); its identity (see :func:`callable_key`) is part of the cache key.
        head: qualified name of the head to replace (default: found by ``models.find_head``).
        train_subset: indices of ``train`` to train on (e.g. ``world.spec.recipes["M^t"].train_subset``).
        seed: drives head initialisation, shuffling, augmentation and the global RNG (dropout).
        val_every: validate after every ``val_every``-th epoch and after the last (default: about
            four times per run; the history's ``val_acc`` is NaN for the other epochs). Validation
            never changes the weights.
        cache: load/store the result on disk (``cache.cache_dir()/finetune``); the entry is keyed by
            the run's inputs, the torch version and the code of this module's import closure.
        layout: ``"channels_last"`` (default) or ``"contiguous"``: the memory format models with
            convolutions train and validate in (part of the cache key: it changes the rounding).
        precise_bn: after the last step, recompute the BatchNorm running statistics on the training
            images (:func:`precise_bn_statistics`); the last validation sees them. Needs ``bn="update"``.

    In channels-last memory format CNNs train 1.3-1.5x faster on a CPU (``benchmarks/training.py``);
    the returned model is back in the default layout, as a cached one is.

    Returns:
        ``(model, history)``: the fine-tuned model in eval mode on ``device`` and a DataFrame with
        per-epoch ``train_loss``, ``train_acc``, ``val_acc``, ``epoch_s`` and cumulative ``wall_s``
        (timings of the run that trained it: identical whether the cache was warm or cold).
    """
    source = getattr(model_or_source, "source_model", model_or_source)
    if not isinstance(source, nn.Module):
        raise ValueError(f"model_or_source must be an nn.Module or a World; got {type(model_or_source).__name__}")
    check_int_range("num_classes", num_classes, 1)
    dev, train_sel, freeze = _prepare(
        lr,
        epochs,
        optimizer,
        bn,
        weight_decay,
        batch_size,
        seed,
        momentum,
        lr_schedule,
        num_workers,
        train,
        train_subset,
        device,
        freeze,
        layout,
        precise_bn,
    )
    every = _val_every(epochs, val_every)

    def build() -> nn.Module:
        m = replace_head(
            copy.deepcopy(source).cpu(), num_classes, head=head, generator=torch.Generator().manual_seed(seed)
        )
        _freeze(m, freeze)
        return m

    key = {
        "source": weights_fingerprint(source),
        "arch": architecture_key(source),
        "train": data_fingerprint(train_sel),
        "val": data_fingerprint(val) if val is not None else None,
        "num_classes": num_classes,
        "lr": lr,
        "epochs": epochs,
        "optimizer": optimizer,
        "freeze": sorted(freeze),
        "bn": bn,
        "weight_decay": weight_decay,
        "momentum": momentum if optimizer == "sgd" else None,
        "batch_size": batch_size,
        "lr_schedule": lr_schedule,
        "augment": callable_key(augment),
        "extra_loss": callable_key(extra_loss),
        "seed": seed,
        "head": head,
        "device": dev.type,
        "layout": layout,
        "val_every": every,
        "precise_bn": bool(precise_bn),
        "torch": torch.__version__.split("+")[0],
    }
    fit_kwargs = dict(
        lr=lr,
        epochs=epochs,
        optimizer=optimizer,
        weight_decay=weight_decay,
        momentum=momentum,
        batch_size=batch_size,
        bn=bn,
        lr_schedule=lr_schedule,
        augment=augment,
        extra_loss=extra_loss,
        num_workers=num_workers,
        val_every=every,
        layout=layout,
        precise_bn=bool(precise_bn),
    )
    return _run("finetune", build, key, train_sel, val, fit_kwargs, seed, dev, cache, progress)


def train_scratch(
    make_model: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None,
    *,
    num_classes: int | None = None,
    lr: float = 1e-3,
    epochs: int = 10,
    optimizer: str = "adam",
    freeze: Sequence[str] = (),
    bn: str = "update",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    batch_size: int = 64,
    augment: Augment | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache: bool = True,
    progress: bool = True,
    extra_loss: ExtraLoss | None = None,
    head: str | None = None,
    train_subset: Sequence[int] | Tensor | None = None,
    lr_schedule: str = "constant",
    num_workers: int = 0,
    val_every: int | None = None,
    layout: str = "channels_last",
    precise_bn: bool = False,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train M^b = ``make_model()`` from random weights (drawn under ``torch.manual_seed(seed)``).

    Same arguments (``layout`` included) and return value as :func:`finetune`; ``num_classes``
    (optional) replaces the head when the architecture's output size differs (``head`` names it).
    """
    if not callable(make_model):
        raise ValueError(f"make_model must be a callable returning an nn.Module; got {type(make_model).__name__}")
    if num_classes is not None:
        check_int_range("num_classes", num_classes, 1)
    dev, train_sel, freeze = _prepare(
        lr,
        epochs,
        optimizer,
        bn,
        weight_decay,
        batch_size,
        seed,
        momentum,
        lr_schedule,
        num_workers,
        train,
        train_subset,
        device,
        freeze,
        layout,
        precise_bn,
    )
    every = _val_every(epochs, val_every)

    def build() -> nn.Module:
        m = make_model()
        if not isinstance(m, nn.Module):
            raise ValueError(f"make_model() must return an nn.Module; got {type(m).__name__}")
        if num_classes is not None:
            from .models import find_head

            if find_head(m, head)[1].out_features != num_classes:
                m = replace_head(m, num_classes, head=head, generator=torch.Generator().manual_seed(seed))
        _freeze(m, freeze)
        return m.cpu()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        init = build()
    key = {
        "init": weights_fingerprint(init),
        "arch": architecture_key(init),
        "make_model": callable_key(make_model),
        "train": data_fingerprint(train_sel),
        "val": data_fingerprint(val) if val is not None else None,
        "num_classes": num_classes,
        "lr": lr,
        "epochs": epochs,
        "optimizer": optimizer,
        "freeze": sorted(freeze),
        "bn": bn,
        "weight_decay": weight_decay,
        "momentum": momentum if optimizer == "sgd" else None,
        "batch_size": batch_size,
        "lr_schedule": lr_schedule,
        "augment": callable_key(augment),
        "extra_loss": callable_key(extra_loss),
        "seed": seed,
        "device": dev.type,
        "layout": layout,
        "val_every": every,
        "precise_bn": bool(precise_bn),
        "torch": torch.__version__.split("+")[0],
    }
    fit_kwargs = dict(
        lr=lr,
        epochs=epochs,
        optimizer=optimizer,
        weight_decay=weight_decay,
        momentum=momentum,
        batch_size=batch_size,
        bn=bn,
        lr_schedule=lr_schedule,
        augment=augment,
        extra_loss=extra_loss,
        num_workers=num_workers,
        val_every=every,
        layout=layout,
        precise_bn=bool(precise_bn),
    )
    return _run("scratch", lambda: copy.deepcopy(init), key, train_sel, val, fit_kwargs, seed, dev, cache, progress)
