"""The layer Grad-CAM reads (Eq. 4's maps): the last feature layer of known architectures, or one found
from outputs (:func:`locate_layer`). Wrappers that keep the network in ``.model`` or ``.module`` are seen
through; token models bring a reshape transform (:func:`vit_reshape_transform`).
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
from torch import Tensor, nn

from ._validation import check_int_range
from .models import eval_mode, unwrap

__all__ = ["locate_layer", "vit_reshape_transform", "LayerSpec", "ReshapeTransform"]

LayerSpec = Union[nn.Module, str, None]
ReshapeTransform = Callable[[Tensor], Tensor]


def vit_reshape_transform(
    tokens: Tensor, grid: tuple[int, int] | int | None = None, *, num_prefix_tokens: int = 1
) -> Tensor:
    """ViT tokens ``[B, prefix + h*w, C]`` as a feature map ``[B, C, h, w]``: the ``num_prefix_tokens``
    leading tokens (class, register) dropped, the patches laid on ``grid`` (``(h, w)``; square when
    ``None``). A ``reshape_transform`` for ``attribution.gradcam``/``cam`` or pytorch-grad-cam."""
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
        return "norm", lambda x: x.permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]
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


def locate_layer(model: nn.Module, image_size: int = 224) -> tuple[str, tuple[int, int, int]]:
    """The layer Grad-CAM reads, found from outputs: ``(qualified name, (C, H, W) of its output)``.

    The last leaf or ``nn.Sequential`` module, in execution order, whose output on one zero image is a
    map ``[1, C, H, W]`` with ``H * W > 1`` (as torchcam's ``locate_candidate_layer``); ValueError if none.
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
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    x = torch.zeros(1, 3, image_size, image_size, device=device, dtype=dtype)
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    for name, shape in reversed(seen):
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            return name, (shape[1], shape[2], shape[3])
    raise ValueError(
        f"no layer of {type(unwrap(model)[1]).__name__} gives a spatial map [1, C, H, W] with H * W > 1 "
        f"on a {image_size} px image; candidates: {', '.join(_candidates(model))}"
    )
