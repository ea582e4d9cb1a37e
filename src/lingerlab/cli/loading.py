"""Loading the user's models from their specs (torchvision/timm names, state dicts, saved modules) and small helpers."""
from __future__ import annotations

import math
import platform
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .args import ModelSpec, UsageError


# ------------------------------------------------------------------------------------ model loading

def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _read_file(path: str, flag: str) -> Any:
    """The object in a model/weights file: a state dict (weights only), a TorchScript module, or a
    pickled object (``torch.save(model)``)."""
    import zipfile

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - not a plain state dict: try the other formats
            pass
        if zipfile.is_zipfile(path):
            try:
                return torch.jit.load(path, map_location="cpu")
            except Exception:  # noqa: BLE001 - a torch.save archive, not TorchScript
                pass
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise UsageError(flag, f"cannot load {path!r} ({_first_line(e)}): pass a state dict, a file saved with "
                             "torch.save(model) or TorchScript") from None


def _state_dict(obj: Any, path: str, flag: str) -> tuple[dict[str, Any], tuple[Any, Any] | None]:
    """A state dict from a weights file's object (checkpoint wrappers, ``module.`` and
    ``Normalized`` prefixes removed), and the (mean, std) of a ``Normalized`` it was saved from."""
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):  # TorchScript or a pickled model: its weights
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "state_dict_ema"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(flag, f"{path!r} holds no state dict (a {type(obj).__name__}): save one with "
                         "torch.save(model.state_dict(), FILE)")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    norm = None
    if "mean" in sd and "std" in sd and all(k.startswith("model.") for k in sd if k not in ("mean", "std")):
        norm = (sd.pop("mean").flatten().tolist(), sd.pop("std").flatten().tolist())
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd, norm


def _architecture(spec: ModelSpec, flag: str, pretrained: bool) -> Any:
    """A fresh ``torchvision`` / ``timm`` network (pretrained weights only when asked)."""
    if spec.kind == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if spec.name not in names:
            near = [n for n in names if n.startswith(spec.name[:4])][:6] or names[:6]
            raise UsageError(flag, f"torchvision has no classification model {spec.name!r} (e.g. {', '.join(near)}; "
                             "see torchvision.models.list_models())")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.models.get_model(spec.name, weights="DEFAULT" if pretrained else None)
    import timm

    if not timm.is_model(spec.name):
        raise UsageError(flag, f"timm has no model {spec.name!r} (see timm.list_models())")
    try:
        return timm.create_model(spec.name, pretrained=pretrained)
    except Exception as e:  # noqa: BLE001 - a download or a config problem
        raise UsageError(flag, f"cannot build timm model {spec.name!r} ({_first_line(e)})") from None


def _hub_cached(name: str) -> bool:
    """Whether torchvision's DEFAULT weights of ``name`` are in the torch hub cache already."""
    from urllib.parse import urlparse

    import torch
    import torchvision

    try:
        w = torchvision.models.get_model_weights(name).DEFAULT
    except Exception:  # noqa: BLE001 - a model without weights
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name).is_file()


def load_model(spec: ModelSpec, weights: str | None, *, flag: str, wflag: str, head: str | None,
               download: bool, normalize: bool) -> tuple[Any, dict[str, Any]]:
    """A model taking [0, 1] images, and what was found about it (for the report)."""
    from torch import nn

    from ..models import IMAGENET_MEAN, IMAGENET_STD, Normalized, find_head, replace_head

    info: dict[str, Any] = {"spec": spec.text, "weights": weights}
    norm = None
    if spec.kind == "file":
        obj = _read_file(spec.name, flag)
        if isinstance(obj, dict):
            raise UsageError(flag, f"{spec.text!r} is a state dict, not a model: name its architecture and pass the file "
                             f"as weights ({flag} torchvision:<name> {wflag} {spec.text})")
        import torch
        if isinstance(obj, torch.jit.ScriptModule):
            raise UsageError(flag, f"{spec.text!r} is TorchScript, which the audit cannot split into backbone and head "
                             f"or hook for Grad-CAM: name its architecture and pass the file as weights "
                             f"({flag} torchvision:<name> {wflag} {spec.text}); its weights are read from it")
        if not isinstance(obj, nn.Module):
            raise UsageError(flag, f"{spec.text!r} holds a {type(obj).__name__}, not a model: save the model with "
                             "torch.save(model, FILE) or its state dict with torch.save(model.state_dict(), FILE)")
        model = obj
        info["format"] = "torch.save(model)"
    elif weights is not None:
        model = _architecture(spec, flag, pretrained=False)
        sd, norm = _state_dict(_read_file(weights, wflag), weights, wflag)
        try:
            hname, hmod = find_head(model, head)
        except ValueError as e:
            raise UsageError("--head" if head else wflag, str(e)) from None
        w = sd.get(hname + ".weight")
        if w is not None and w.ndim == 2 and w.shape[0] != hmod.out_features:
            model = replace_head(model, int(w.shape[0]), head=hname, generator=0)
        try:
            missing, unexpected = model.load_state_dict(sd, strict=False)
        except RuntimeError as e:
            shapes = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
            raise UsageError(wflag, f"{weights!r} does not fit {spec.text}: "
                             f"{shapes[0] if shapes else _first_line(e)}") from None
        if missing or unexpected:
            raise UsageError(wflag, f"{weights!r} does not fit {spec.text}: {len(missing)} missing keys "
                             f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}")
        info["format"] = "state dict"
    else:
        if spec.kind == "torchvision" and not download and not _hub_cached(spec.name):
            _architecture(spec, flag, pretrained=False)  # an unknown name is reported as such
            raise UsageError(wflag, f"{flag} {spec.text} has no weights: pass {wflag} FILE (a state dict) or "
                             "--download to fetch its ImageNet weights")
        model = _architecture(spec, flag, pretrained=True)
        info["format"] = "pretrained (torchvision DEFAULT weights)" if spec.kind == "torchvision" else "pretrained (timm)"
    if isinstance(model, Normalized):
        info["normalisation"] = "inside the saved model (models.Normalized)"
    elif norm is not None:
        model = Normalized(model, *norm)
        info["normalisation"] = f"from the state dict: mean {tuple(round(x, 4) for x in norm[0])}"
    elif normalize:
        model = Normalized(model, IMAGENET_MEAN, IMAGENET_STD)
        info["normalisation"] = "ImageNet mean/std (models.Normalized)"
    else:
        info["normalisation"] = "none (--no-normalize: the model takes [0, 1] images as they are)"
    model.eval()
    try:
        hname, hmod = find_head(model, head)
    except ValueError as e:
        raise UsageError("--head", str(e)) from None
    from ..models import unwrap
    info.update(architecture=type(unwrap(model)[1]).__name__, head=hname, outputs=int(hmod.out_features),
                parameters=int(sum(p.numel() for p in model.parameters())))
    return model, info


def _resolve_layer(model: Any, name: str) -> str | None:
    """``name`` as a qualified layer name of ``model`` (relative to it or to the network inside its
    ``Normalized`` wrapper), or None."""
    from ..models import unwrap

    prefix, _ = unwrap(model)
    for cand in dict.fromkeys((name, prefix + name)):
        try:
            model.get_submodule(cand)
            return cand
        except AttributeError:
            continue
    return None


def check_cam_layer(models: dict[str, Any], layer: str | None) -> str | None:
    """The Grad-CAM layer for every model (``None``: each model's default, which must exist)."""
    from ..attribution import _candidates, default_layer
    from ..models import unwrap

    if layer is None:
        for role, m in models.items():
            try:
                default_layer(m)
            except ValueError as e:
                raise UsageError("--cam-layer", f"no default Grad-CAM layer for the {role} model: {e}") from None
        return None
    resolved = None
    for role, m in models.items():
        r = _resolve_layer(m, layer)
        if r is None:
            prefix, inner = unwrap(m)
            raise UsageError("--cam-layer", f"{layer!r} is not a layer of the {role} model "
                             f"({type(inner).__name__}); candidates: {', '.join(_candidates(inner))}")
        if resolved is None:
            resolved = r
        elif r != resolved:
            raise UsageError("--cam-layer", f"{layer!r} resolves to {resolved!r} in one model and {r!r} in another: "
                             "pass the full qualified name")
    return resolved


# ----------------------------------------------------------------------------------------- helpers

def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("lingerlab", "torch", "torchvision", "timm", "numpy", "pandas", "scipy", "matplotlib", "pillow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if x is None or isinstance(x, (str, int)):
        return x
    try:
        import pandas as pd
        if pd.isna(x):
            return None
    except (TypeError, ValueError):
        pass
    return str(x)


class _Stages:
    """One tqdm bar over the audit's stages (on stderr); training bars appear under it."""

    def __init__(self, names: Sequence[str], enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), desc="audit", file=sys.stderr, disable=not enabled, unit="stage",
                        dynamic_ncols=True, leave=True)
        self.current = ""

    def start(self, name: str) -> None:
        self.current = name
        self.bar.set_description(name)
        self.bar.refresh()

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.set_description("audit done")
        self.bar.close()



