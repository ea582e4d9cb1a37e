"""Inference in eval mode (:func:`predict`, :func:`evaluate`), the memory layouts CNNs run in, and
precise BatchNorm statistics (:func:`precise_bn_statistics`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device
from ._validation import check_choice, check_int_range, check_nonempty
from .models import batchnorm_layers, eval_mode

__all__ = [
    "predict",
    "evaluate",
    "precise_bn_statistics",
    "LAYOUTS",
    "check_layout",
    "uses_channels_last",
    "nhwc",
    "eval_batch_size",
    "CPU_EVAL_BATCH",
    "EVAL_BATCH",
]


# memory formats CNNs can train and predict in (``layout=``; part of the training cache key: it changes rounding)
LAYOUTS = ("channels_last", "contiguous")


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`."""
    return check_choice("layout", layout, LAYOUTS)


def uses_channels_last(model: nn.Module, layout: str) -> bool:
    """Whether ``model`` runs in channels-last layout: it has convolutions and ``layout`` asks for it."""
    return layout == "channels_last" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def nhwc(x: Tensor) -> Tensor:
    """An image batch [N, C, H, W] in channels-last memory format (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


#: images per inference batch on a CPU, where large batches leave the caches (EfficientNet-Lite0 at 112 px:
#: 5.37 ms per image at 32, 10.01 ms at 256, ``benchmarks/lite_speed.py``); on an accelerator
#: :data:`EVAL_BATCH`.
CPU_EVAL_BATCH = 32
EVAL_BATCH = 256


def eval_batch_size(device: torch.device | str | None) -> int:
    """The default images per inference batch on ``device`` (None: the CPU)."""
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
    """``(logits [N, C], labels [N] or None)`` of ``model`` on ``data`` in eval mode, on the CPU
    (``batch_size`` None: :func:`eval_batch_size`; ``layout``: one of :data:`LAYOUTS`)."""
    check_layout(layout)
    dev = torch.device(device) if device is not None else model_device(model)
    batch_size = eval_batch_size(dev) if batch_size is None else check_int_range("batch_size", batch_size, 1)
    outs, ys = [], []
    channels_last = uses_channels_last(model, layout)
    with eval_mode(model):
        for x, y in batches(data, batch_size=batch_size, device=dev):
            outs.append(model(nhwc(x) if channels_last else x).float().cpu())  # weights left as they are
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
    check_layout(layout)
    check_nonempty("data", data)  # type: ignore[arg-type]
    logits, labels = predict(model, data, batch_size=batch_size, device=device, layout=layout)
    if labels is None:
        raise ValueError("data has no labels: evaluate needs a Dataset of (image, label) pairs")
    return float((logits.argmax(1) == labels).float().mean())


@torch.no_grad()
def precise_bn_statistics(
    model: nn.Module,
    data: ImageData,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    layout: str = "channels_last",
) -> nn.Module:
    """Precise BatchNorm (Wu & Johnson 2021, Sec. 3): every BatchNorm layer's running statistics
    become the plain average of its batch statistics over ``data`` (train-mode passes, no gradient),
    so that eval mode uses the final weights' statistics (a scratch net trained briefly needs it).
    Weights, momenta and training flags are kept. Returns ``model``."""
    layers = list(batchnorm_layers(model).values())
    if not layers:
        return model
    dev = torch.device(device) if device is not None else model_device(model)
    check_nonempty("data", data)  # type: ignore[arg-type]
    batch_size = check_int_range("batch_size", batch_size, 2)
    channels_last = uses_channels_last(model, layout)
    state = [(m.momentum, m.training) for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the plain mean over batches
        m.train()
    try:
        for x, _ in batches(data, batch_size=batch_size, device=dev):
            if len(x) > 1:  # a batch of one (the last, at most) has no variance
                model(nhwc(x) if channels_last else x)
    finally:
        for m, (momentum, training) in zip(layers, state):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    return model
