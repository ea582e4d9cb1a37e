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

``layer=None`` picks the last feature layer of known architectures (torchvision, timm,
``efficientnet_lite_pytorch``), seeing through wrappers that keep the network in ``.model`` or
``.module``: see :func:`default_layer`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._data import ImageData, batches, model_device, num_items
from . import distributed as _dist
from .distributed import autocast_context, check_autocast
from ._validation import check_int_range
from .models import unwrap

__all__ = ["gradcam", "cam", "default_layer", "locate_layer", "vit_reshape_transform", "CAM_METHODS"]

LayerSpec = Union[nn.Module, str, None]
Targets = Union[Tensor, Sequence[int], int]
ReshapeTransform = Callable[[Tensor], Tensor]

_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (x - min) / (1e-7 + max)


# --------------------------------------------------------------------------- reshape transforms


def vit_reshape_transform(
    tokens: Tensor, grid: tuple[int, int] | int | None = None, *, num_prefix_tokens: int = 1
) -> Tensor:
    """Turn ViT tokens ``[B, 1 + h*w, C]`` into a feature map ``[B, C, h, w]``.

    Drops the ``num_prefix_tokens`` leading tokens (the class token of torchvision's
    ``VisionTransformer``; timm models with register tokens have more) and lays the patch tokens out
    on a ``grid`` (``(h, w)``; square when ``None``). Pass it as ``reshape_transform`` to
    :func:`gradcam`, :func:`cam` or pytorch-grad-cam itself.
    """
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be [B, tokens, C]; got shape {tuple(tokens.shape)}")
    patches = tokens[:, num_prefix_tokens:, :]
    n = patches.shape[1]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"grid: {n} patch tokens (after dropping {num_prefix_tokens} prefix "
                "tokens) do not form a square; pass grid=(h, w)"
            )
        h, w = side, side
    else:
        h, w = (grid, grid) if isinstance(grid, int) else grid
        if h * w != n:
            raise ValueError(f"grid {h}x{w} does not hold the {n} patch tokens")
    return patches.reshape(patches.shape[0], h, w, patches.shape[2]).permute(0, 3, 1, 2)


def _nhwc_to_nchw(x: Tensor) -> Tensor:
    """Channels-last feature maps ``[B, H, W, C]`` (torchvision Swin) to ``[B, C, H, W]``."""
    return x.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- choosing the layer


def _last_index(seq: nn.Module) -> str:
    """Name of the last child (an index, or a key of an OrderedDict-built Sequential)."""
    return list(seq.named_children())[-1][0]


def _pick(model: nn.Module) -> tuple[str, ReshapeTransform | None] | None:
    """The last feature layer of a known architecture (qualified name, reshape transform), or None."""
    name = type(model).__name__
    mod = type(model).__module__
    children = dict(model.named_children())
    # efficientnet_lite_pytorch (lukemelas-style EfficientNet): conv head -> _bn1 -> shared _swish.
    if "_conv_head" in children and "_bn1" in children:
        return "_bn1", None
    # torchvision ViT: encoder.layers[-1].ln_1 with the class token dropped (pytorch-grad-cam's
    # recipe for ViTs: the last block's first LayerNorm).
    if name == "VisionTransformer" and mod.startswith("torchvision"):
        layers = model.encoder.layers  # type: ignore[union-attr]
        return f"encoder.layers.{_last_index(layers)}.ln_1", vit_reshape_transform
    # Swin (torchvision and timm): the stages end channels-last; `norm` is the last [B, H, W, C] map.
    if name == "SwinTransformer" and "norm" in children:
        return "norm", _nhwc_to_nchw
    # timm token models (ViT, DeiT, DINOv2, MLP-Mixer): blocks[-1].norm1, prefix tokens dropped.
    if isinstance(children.get("blocks"), nn.Sequential) and len(children["blocks"]) > 0:
        blocks = children["blocks"]
        last_name = _last_index(blocks)
        last = blocks.get_submodule(last_name)
        if hasattr(last, "norm1") and (
            "patch_embed" in children or hasattr(model, "cls_token") or hasattr(last, "mlp_tokens")
        ):
            k = int(getattr(model, "num_prefix_tokens", 1 if hasattr(model, "cls_token") else 0))
            return f"blocks.{last_name}.norm1", (lambda t: vit_reshape_transform(t, num_prefix_tokens=k))
    # ResNet family (torchvision and timm ResNet/ResNeXt/Wide ResNet).
    if "layer4" in children:
        return "layer4", None
    # DenseNet: `features` ends with norm5; forward then applies an in-place ReLU.
    if name == "DenseNet" and "features" in children:
        return "features", None
    # timm EfficientNet/MixNet: conv_head -> bn2 (BatchNormAct) is the final feature map.
    if "conv_head" in children and "bn2" in children:
        return "bn2", None
    # torchvision VGG/EfficientNet/MobileNet/ConvNeXt/AlexNet/SqueezeNet: features[-1].
    if isinstance(children.get("features"), nn.Sequential) and len(children["features"]) > 0:
        return f"features.{_last_index(children['features'])}", None
    # timm ConvNeXt/RegNet/CSPNet...: stages[-1]; timm MobileNetV3 etc.: blocks[-1].
    for attr in ("stages", "blocks"):
        if isinstance(children.get(attr), nn.Sequential) and len(children[attr]) > 0:
            return f"{attr}.{_last_index(children[attr])}", None
    # torchvision odds and ends.
    for attr in ("trunk_output", "conv5", "Mixed_7c", "inception5b", "layers", "s4"):
        if attr in children:
            return attr, None
    return None


def _candidates(model: nn.Module, k: int = 6) -> list[str]:
    names = [
        n
        for n, m in model.named_modules()
        if n and isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.LayerNorm, nn.Sequential))
    ]
    return names[-k:]


def _resolve(model: nn.Module, layer: LayerSpec) -> tuple[nn.Module, str, ReshapeTransform | None]:
    """The layer module, its qualified name and the reshape transform it suggests."""
    if isinstance(layer, nn.Module):
        for n, m in model.named_modules():
            if m is layer:
                return layer, n, None
        raise ValueError("layer is an nn.Module that is not part of model")
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer), layer, None
        except AttributeError:
            raise ValueError(
                f"layer {layer!r} is not a submodule of {type(model).__name__}; "
                f"candidates: {', '.join(_candidates(model))}"
            ) from None
    if layer is not None:
        raise ValueError(f"layer must be an nn.Module, a qualified name or None; got {type(layer).__name__}")
    prefix, inner = unwrap(model)
    picked = _pick(inner)
    if picked is None:
        raise ValueError(
            f"layer=None: no default Grad-CAM layer for {type(inner).__name__}. Pass layer= as a "
            f"module or a qualified name (usually the last convolutional block); candidates: "
            f"{', '.join(prefix + c for c in _candidates(inner))}"
        )
    name, reshape = picked
    return model.get_submodule(prefix + name), prefix + name, reshape


def default_layer(model: nn.Module) -> str:
    """Qualified name of the layer ``layer=None`` uses for ``model`` (raises ValueError if unknown).

    ResNets: ``layer4``; VGG, EfficientNet, MobileNet, ConvNeXt (torchvision): ``features.<last>``;
    DenseNet: ``features``; torchvision ViT: ``encoder.layers.<last>.ln_1`` (with
    :func:`vit_reshape_transform`); timm: ``bn2`` / ``blocks.<last>[.norm1]`` / ``stages.<last>``;
    ``efficientnet_lite_pytorch``: ``_bn1`` (the BatchNorm after ``_conv_head``). A wrapper that keeps
    the network in ``.model`` (``lingerlab.models.Normalized``) or ``.module`` is seen through.
    """
    return _resolve(model, None)[1]


def locate_layer(model: nn.Module, image_size: int = 224) -> tuple[str, tuple[int, int, int]]:
    """The layer Grad-CAM reads, found from outputs: ``(qualified name, (C, H, W) of its output)``.

    Forward hooks on every leaf and ``nn.Sequential`` module record their outputs on one zero image
    ``[1, 3, image_size, image_size]`` (eval mode, no gradients; modes restored after). The layer is
    the last module, in execution order, whose output is a map ``[1, C, H, W]`` with ``H * W > 1``:
    the last spatial map before global pooling (as torchcam's ``locate_candidate_layer``). Raises
    ValueError when no module gives one.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module; got {type(model).__name__}")
    check_int_range("image_size", image_size, 1)
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = [
        m.register_forward_hook(
            lambda _m, _i, out, n=n: seen.append((n, tuple(out.shape) if isinstance(out, Tensor) else ()))
        )
        for n, m in model.named_modules()
        if n and (isinstance(m, nn.Sequential) or next(m.children(), None) is None)
    ]
    modes = _save_modes(model)
    param = next(model.parameters(), None)
    x = torch.zeros(
        1,
        3,
        image_size,
        image_size,
        device=param.device if param is not None else None,
        dtype=param.dtype if param is not None and param.is_floating_point() else None,
    )
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        _restore_modes(modes)
    for name, shape in reversed(seen):
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            return name, (shape[1], shape[2], shape[3])
    raise ValueError(
        f"no layer of {type(unwrap(model)[1]).__name__} gives a spatial map [1, C, H, W] with H * W > 1 "
        f"on a {image_size} px image; candidates: {', '.join(_candidates(model))}"
    )


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


def _save_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


def _restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


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
                "[N, C, h, w]: pass reshape_transform= (e.g. vit_reshape_transform)"
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
    image (or one int for all); ``layer``: module, qualified name, or ``None`` for
    :func:`default_layer`; ``reshape_transform`` maps the layer output to ``[N, C, h, w]`` (a default
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
    modes = _save_modes(model)
    outs: list[Tensor] = []
    try:
        model.eval()
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
    finally:
        _restore_modes(modes)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


# --------------------------------------------------------------------------- pytorch-grad-cam methods


def _cam_classes() -> dict[str, type]:
    import pytorch_grad_cam as pgc

    names = {
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
    return {k: getattr(pgc, v) for k, v in names.items() if hasattr(pgc, v)}


CAM_METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "hirescam",
    "gradcamelementwise",
    "xgradcam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "scorecam",
    "ablationcam",
    "fullgrad",
    "kpcacam",
    "randomcam",
    "shapleycam",
    "fem",
)


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
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    classes = _cam_classes()
    if key not in classes:
        raise ValueError(f"method must be one of {', '.join(classes)}; got {method!r}")
    if not isinstance(images, Tensor):
        raise ValueError("images must be a [N, C, H, W] tensor for cam(); use gradcam() for datasets")
    _check_images(images)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    lmod, _, suggested = _resolve(model, layer)
    reshape = reshape_transform if reshape_transform is not None else suggested
    t = _targets_tensor(targets, images.shape[0]).tolist()
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    modes = _save_modes(model)
    obj = None
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
        _restore_modes(modes)
    return torch.as_tensor(maps, dtype=torch.float32).to(images.device)
