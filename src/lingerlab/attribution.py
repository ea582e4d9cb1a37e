"""Class activation maps: the attribution maps ``A(x, M, c)`` of the paper's Eq. 4.

The paper measures distraction by comparing Grad-CAM maps (Selvaraju et al., "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV 2017) of the fine-tuned model
for the target class with those of the source model for the source class. Two entry points:

- :func:`gradcam`: a fast, batched Grad-CAM that differentiates the selected logits only down to the
  chosen layer's output (``torch.autograd.grad``; no parameter gradients, no backward through the
  layers below, no numpy round trip). Its maps equal pytorch-grad-cam's ``GradCAM`` (same ReLU,
  per-image min-max scaling, bilinear resize as ``cv2.INTER_LINEAR`` and final rescaling) to float
  rounding.
- :func:`cam`: the other CAM methods (Grad-CAM++, LayerCAM, Score-CAM, ...) through pytorch-grad-cam.

``layer=None`` picks the last feature layer of known architectures: see
:mod:`lingerlab.cam_layers`.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed as _dist
from ._data import ImageData, batches, model_device, num_items
from .cam_layers import LayerSpec, ReshapeTransform, _resolve
from .distributed import autocast_context, check_autocast
from .models import eval_mode

__all__ = ["gradcam", "cam", "CAM_METHODS"]

Targets = Union[Tensor, Sequence[int], int]

_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (x - min) / (1e-7 + max)

#: method name -> pytorch-grad-cam class name, for :func:`cam`
_CAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "fullgrad": "FullGrad",
    "kpcacam": "KPCA_CAM",
    "randomcam": "RandomCAM",
    "shapleycam": "ShapleyCAM",
    "fem": "FEM",
}
#: the methods :func:`cam` knows (those the installed pytorch-grad-cam lacks are refused when called)
CAM_METHODS: tuple[str, ...] = tuple(_CAM_CLASSES)


# --------------------------------------------------------------------------- shared helpers


def _targets_tensor(targets: Targets, n: int) -> Tensor:
    if isinstance(targets, bool):
        raise ValueError("targets must be class indices, not a bool")
    if isinstance(targets, int) or (isinstance(targets, Tensor) and targets.dim() == 0):
        return torch.full((n,), int(targets), dtype=torch.long)
    t = torch.as_tensor(targets)
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"targets must hold one class index per image ({n}); got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices; got dtype {t.dtype}")
    return t.long()


def _check_images(images: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be a [N, C, H, W] tensor; got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty: pass at least one image")


def _minmax(x: Tensor) -> Tensor:
    """Per-image ``(x - min) / (1e-7 + max)`` over the last two dims (pytorch-grad-cam's scaling)."""
    flat = x.flatten(1)
    x = x - flat.amin(1)[:, None, None]
    return x / (_EPS + x.flatten(1).amax(1))[:, None, None]


def _scale(cam_map: Tensor, size: tuple[int, int]) -> Tensor:
    """ReLU'd maps ``[N, h, w]`` -> scaled, resized, rescaled ``[N, H, W]`` as pytorch-grad-cam does.

    pytorch-grad-cam min-max scales each map, resizes it with ``cv2.resize`` (bilinear,
    half-pixel centres: identical to ``F.interpolate(..., align_corners=False)`` to ~3e-7), then
    scales again when it aggregates layers.
    """
    x = _minmax(cam_map)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(x)


# --------------------------------------------------------------------------- Grad-CAM


def _gradcam_batch(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    layer: nn.Module,
    lname: str,
    reshape: ReshapeTransform | None,
    amp: str | None = None,
) -> Tensor:
    captured: list[Tensor] = []

    def hook(module: nn.Module, inputs: Any, out: Any) -> Tensor:
        if not isinstance(out, Tensor):
            raise ValueError(f"layer {lname!r} returns {type(out).__name__}, not a Tensor; pick another layer")
        if captured:
            raise ValueError(
                f"layer {lname!r} runs more than once per forward pass; pick a layer "
                "used once (e.g. a BatchNorm or block, not a shared activation)"
            )
        # Everything before the layer ran without autograd; from here on gradients are tracked, and
        # they start at a fresh leaf, so the backward stops at the layer. The model continues with a
        # clone: an in-place op after the layer (DenseNet's F.relu(features, inplace=True)) changes
        # the clone and the map sees the output as the layer produced it.
        torch.set_grad_enabled(True)
        a = out.detach().requires_grad_(True)
        captured.append(a)
        return a.clone()

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad(), autocast_context(x.device, amp):  # no_grad restores the grad mode the hook set
            logits = model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {lname!r} did not run in the model's forward pass")
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError("model must return logits [N, classes]")
    t = t.to(logits.device)
    if int(t.min()) < 0 or int(t.max()) >= logits.shape[1]:
        raise ValueError(
            f"targets must be class indices in [0, {logits.shape[1] - 1}]; got {int(t.min())}..{int(t.max())}"
        )
    act = captured[0]
    with torch.enable_grad():
        score = logits.gather(1, t[:, None]).sum()
        (grad,) = torch.autograd.grad(score, act)
    with torch.no_grad():
        a, g = act.detach(), grad
        if reshape is not None:
            a, g = reshape(a), reshape(g)
        if a.dim() != 4:
            raise ValueError(
                f"layer {lname!r} gives a {a.dim()}-D output {tuple(a.shape)}; Grad-CAM needs "
                "[N, C, h, w]: pass reshape_transform= (e.g. cam_layers.vit_reshape_transform)"
            )
        a, g = a.float(), g.float()
        weights = g.mean(dim=(2, 3))  # alpha_k^c: global-average-pooled gradients
        cam_map = (weights[:, :, None, None] * a).sum(1).clamp_min(0)
        return _scale(cam_map, (x.shape[-2], x.shape[-1]))


def gradcam(
    model: nn.Module,
    images: ImageData,
    targets: Targets,
    layer: LayerSpec = None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    batch_size: int | None = None,
    channels_last: bool | None = None,
    autocast: str | None = None,
) -> Tensor:
    """Grad-CAM maps (Selvaraju et al., 2017): the paper's ``A(x, M, c)`` of Eq. 4.

    For each image, the gradient of the target logit with respect to ``layer``'s output is averaged
    over space into channel weights; the ReLU of the weighted channel sum is min-max scaled, resized
    bilinearly to the input's ``H x W`` and scaled again, exactly as pytorch-grad-cam's ``GradCAM``.

    ``images``: ``[N, C, H, W]`` tensor (or any ``ImageData``); ``targets``: one class index per
    image (or one int for all); ``layer``: module, qualified name, or ``None`` for the default
    of ``cam_layers``; ``reshape_transform`` maps the layer output to ``[N, C, h, w]`` (a default
    ViT layer brings its own); ``batch_size``: images per forward pass (all at once when ``None``);
    ``channels_last``: feed batches channels-last (``None``: on CPU, where oneDNN runs them ~20%
    faster). The layout changes float rounding only, but for a layer followed by more ReLUs or
    max-pools (not the default layers) such rounding can flip activation masks downstream and move
    maps by ~1e-3; pass ``channels_last=False`` to reproduce pytorch-grad-cam to ~1e-6 there.

    ``autocast``: ``None``/``"fp32"`` (default) runs in float32; ``"bf16"`` runs the forward (and so
    the backward to ``layer``) under bfloat16 autocast, for GPUs (ValueError where unsupported); the
    channel weights, the map and its scaling are computed in float32 and the maps come back
    float32. Stated tolerance of the scaled maps in [0, 1], checked by tests/test_precision.py on a
    small random CNN (64 images at 32 px, 8x8 maps): mean |bf16 - fp32| over all pixels <= 0.01
    (measured 0.003-0.004 over 20 seeds); per image max |diff| <= 0.05 on average over images
    (measured 0.019-0.031) and <= 0.1 for 90% of images (measured <= 0.051; single images reach
    0.21); top-20% masks (Eq. 4's P_0.8) with IoU >= 0.9 on average (measured 0.962-0.980) and
    >= 0.8 for 95% of images (measured 98-100%).

    In a distributed run (:mod:`lingerlab.distributed`) each process computes the maps of its
    contiguous shard of the images, and the maps are gathered: every process returns all ``N``
    maps in the original order, equal to one process's up to float rounding (a different batching).

    Returns float32 maps ``[N, H, W]`` in ``[0, 1]`` on the device of ``images`` (a tensor) or of
    the model (other data). The model runs in eval mode; its train/eval flags are restored, no
    parameter ``.grad`` is touched, and the backward pass stops at ``layer``.
    """
    lmod, lname, suggested = _resolve(model, layer)
    reshape = reshape_transform if reshape_transform is not None else suggested
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
    dev = model_device(model)
    amp = check_autocast(autocast, dev)
    if isinstance(images, Tensor):
        _check_images(images)
        out_dev = images.device
        n = images.shape[0]
    else:
        out_dev = dev
        n = num_items(images)
    t_all = _targets_tensor(targets, n)
    if not _dist.is_distributed():
        return _gradcam_pass(model, images, t_all, lmod, lname, reshape, batch_size, channels_last, dev, out_dev, amp)
    idx = _dist.shard_indices(n)
    shard = _dist.shard_data(images, idx)
    t_shard = t_all[idx.start : idx.stop]

    def local() -> Tensor:
        if len(idx) == 0:
            return torch.empty(0, dtype=torch.float32, device=out_dev)
        return _gradcam_pass(model, shard, t_shard, lmod, lname, reshape, batch_size, channels_last, dev, out_dev, amp)

    return _dist.all_gather_cat(_dist.run_local(local), n)


def _gradcam_pass(
    model: nn.Module,
    images: ImageData,
    t_all: Tensor,
    lmod: nn.Module,
    lname: str,
    reshape: ReshapeTransform | None,
    batch_size: int | None,
    channels_last: bool | None,
    dev: torch.device,
    out_dev: torch.device,
    amp: str | None,
) -> Tensor:
    """Grad-CAM maps of all ``images`` (targets ``t_all``), batch by batch, concatenated."""
    if isinstance(images, Tensor):
        n = images.shape[0]
        bs = n if batch_size is None else batch_size
        chunks = ((images[i : i + bs], None) for i in range(0, n, bs))
    else:
        chunks = batches(images, batch_size or 64)
    outs: list[Tensor] = []
    with eval_mode(model):
        i = 0
        for x, _ in chunks:
            _check_images(x)
            if x.is_inference():
                x = x.clone()
            x = x.to(dev)
            if channels_last or (channels_last is None and x.device.type == "cpu"):
                # oneDNN convolutions run ~20% faster on channels-last batches; the maps move by
                # float rounding only (median 2e-6, worst 4e-5 seen on random ResNet-18 weights)
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(_gradcam_batch(model, x, t_all[i : i + len(x)], lmod, lname, reshape, amp).to(out_dev))
            i += len(x)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


# --------------------------------------------------------------------------- pytorch-grad-cam methods


def cam(
    model: nn.Module,
    images: Tensor,
    targets: Targets,
    method: str = "gradcam++",
    layer: LayerSpec = None,
    reshape_transform: ReshapeTransform | None = None,
    **method_kwargs: Any,
) -> Tensor:
    """Class activation maps ``[N, H, W]`` by a pytorch-grad-cam method (see :data:`CAM_METHODS`).

    The same ``A(x, M, c)`` role as :func:`gradcam` (Eq. 4), with another attribution method:
    Grad-CAM++, LayerCAM, Score-CAM, Ablation-CAM, Eigen-CAM, ... ``method_kwargs`` go to the
    method's constructor. Returns a float32 tensor on the device of ``images``; restores the model's
    train/eval flags and its parameters' ``.grad``, and removes the library's hooks.
    """
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    classes = {k: getattr(pgc, v) for k, v in _CAM_CLASSES.items() if hasattr(pgc, v)}
    if key not in classes:
        raise ValueError(f"method must be one of {', '.join(classes)}; got {method!r}")
    if not isinstance(images, Tensor):
        raise ValueError("images must be a [N, C, H, W] tensor for cam(); use gradcam() for datasets")
    _check_images(images)
    lmod, _, suggested = _resolve(model, layer)
    reshape = reshape_transform if reshape_transform is not None else suggested
    t = _targets_tensor(targets, images.shape[0]).tolist()
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    obj = None
    with eval_mode(model):
        try:
            for p in params:
                p.grad = None
            obj = classes[key](model, [lmod], reshape_transform=reshape, **method_kwargs)
            x = images.to(model_device(model))
            if x.is_inference():
                x = x.clone()
            with torch.enable_grad():
                maps = obj(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in t])
        finally:
            if obj is not None:
                obj.activations_and_grads.release()
            for p, g in zip(params, saved_grads):
                p.grad = g
    return torch.as_tensor(maps, dtype=torch.float32).to(images.device)
