"""Class activation maps: the attribution maps ``A(x, M, c)`` of the paper's Eq. 4.

The paper compares Grad-CAM maps (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization", ICCV 2017) of the fine-tuned model for the target class with those
of the source model for the source class. :func:`gradcam` is a fast batched Grad-CAM equal to
pytorch-grad-cam's ``GradCAM`` to float rounding; :func:`cam` runs the other pytorch-grad-cam methods.
``layer=None`` picks the last feature layer of known architectures (:mod:`lingerlab.cam_layers`).
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
    c.lower().replace("plusplus", "++").replace("_", ""): c
    for c in [
        "GradCAM",
        "GradCAMPlusPlus",
        "HiResCAM",
        "GradCAMElementWise",
        "XGradCAM",
        "LayerCAM",
        "EigenCAM",
        "EigenGradCAM",
        "ScoreCAM",
        "AblationCAM",
        "FullGrad",
        "KPCA_CAM",
        "RandomCAM",
        "ShapleyCAM",
        "FEM",
    ]
}
#: the methods :func:`cam` knows (those the installed pytorch-grad-cam lacks are refused when called)
CAM_METHODS: tuple[str, ...] = tuple(_CAM_CLASSES)


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
    """ReLU'd maps ``[N, h, w]`` -> min-max scaled, bilinearly resized (as ``cv2.resize`` to ~3e-7) and
    scaled again ``[N, H, W]``, as pytorch-grad-cam does."""
    x = _minmax(cam_map)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(x)


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
        # gradients start at a fresh leaf here, so the backward stops at the layer; the model goes on
        # with a clone, so an in-place op after the layer (DenseNet's ReLU) leaves the map's input alone
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

    Per image, the target logit's gradient at ``layer``'s output, averaged over space, weighs its
    channels; the ReLU of the weighted sum is min-max scaled, resized bilinearly to ``H x W`` and
    scaled again, exactly as pytorch-grad-cam's ``GradCAM``. ``targets``: one class index per image
    (or one int); ``layer``: module, qualified name or ``None`` (``cam_layers``' default, which may
    bring its own ``reshape_transform`` to ``[N, C, h, w]``); ``batch_size``: images per pass (all
    when ``None``); ``channels_last``: channels-last batches (``None``: on CPU; float rounding only).
    ``autocast="bf16"`` runs the forward and backward in bfloat16 (tolerances: tests/test_precision.py).
    Distributed, each process maps its shard and every process gets all ``N`` maps in order.

    Returns float32 maps ``[N, H, W]`` in ``[0, 1]`` on the device of ``images`` (a tensor) or of the
    model; train/eval flags are restored, no parameter ``.grad`` is touched.
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

    def run(data: ImageData, t: Tensor) -> Tensor:
        """Grad-CAM maps of all ``data`` (targets ``t``), batch by batch, concatenated."""
        if isinstance(data, Tensor):
            bs = data.shape[0] if batch_size is None else batch_size
            chunks = ((data[i : i + bs], None) for i in range(0, data.shape[0], bs))
        else:
            chunks = batches(data, batch_size or 64)
        outs: list[Tensor] = []
        with eval_mode(model):
            i = 0
            for x, _ in chunks:
                _check_images(x)
                if x.is_inference():
                    x = x.clone()
                x = x.to(dev)
                if channels_last or (channels_last is None and x.device.type == "cpu"):
                    # oneDNN runs channels-last batches ~20% faster; the maps move by float rounding only
                    x = x.contiguous(memory_format=torch.channels_last)
                outs.append(_gradcam_batch(model, x, t[i : i + len(x)], lmod, lname, reshape, amp).to(out_dev))
                i += len(x)
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    if not _dist.is_distributed():
        return run(images, t_all)
    idx = _dist.shard_indices(n)
    shard = _dist.shard_data(images, idx)
    t_shard = t_all[idx.start : idx.stop]

    def local() -> Tensor:
        return torch.empty(0, dtype=torch.float32, device=out_dev) if len(idx) == 0 else run(shard, t_shard)

    return _dist.all_gather_cat(_dist.run_local(local), n)


def cam(
    model: nn.Module,
    images: Tensor,
    targets: Targets,
    method: str = "gradcam++",
    layer: LayerSpec = None,
    reshape_transform: ReshapeTransform | None = None,
    **method_kwargs: Any,
) -> Tensor:
    """Class activation maps ``[N, H, W]`` by a pytorch-grad-cam method (:data:`CAM_METHODS`): Eq. 4's
    ``A(x, M, c)`` by another attribution method; ``method_kwargs`` go to its constructor. Returns
    float32 maps on the device of ``images``; restores train/eval flags and ``.grad``, removes hooks."""
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
