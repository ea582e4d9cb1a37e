"""Loading the user's models from their specs (torchvision/timm names, state dicts, saved modules), and
finding each one's classification head and Grad-CAM layer."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .args import ModelSpec, UsageError


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _read_file(path: str, flag: str, trust_pickle: bool = False) -> Any:
    """The object in a model/weights file: a state dict (``weights_only=True``), a TorchScript module,
    or, only with ``trust_pickle``, a pickled object (``torch.save(model)``)."""
    import zipfile

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - not a plain state dict: try the other formats
            first = e
        if zipfile.is_zipfile(path):
            try:
                return torch.jit.load(path, map_location="cpu")
            except Exception:  # noqa: BLE001 - a torch.save archive, not TorchScript
                pass
        if not trust_pickle:  # a torch.save archive with more than tensors, or not a torch file at all
            what = (
                f"is neither a state dict nor TorchScript ({type(first).__name__})"
                if not zipfile.is_zipfile(path)
                else "holds pickled Python objects (e.g. a model saved with torch.save(model)), not only weights"
            )
            raise UsageError(
                flag,
                f"{path!r} {what}. Loading it means unpickling it, and unpickling runs code from "
                "the file, which is why PyTorch loads with weights_only=True by default. Pass "
                "--trust-pickle if you trust the file, or save a state dict (torch.save("
                "model.state_dict(), FILE)) or TorchScript (torch.jit.save) instead",
            ) from None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise UsageError(
                flag,
                f"cannot load {path!r} ({_first_line(e)}): pass a state dict, a file saved with "
                "torch.save(model) or TorchScript",
            ) from None


def _state_dict(obj: Any, path: str, flag: str) -> tuple[dict[str, Any], tuple[Any, Any] | None]:
    """A state dict from a weights file's object (checkpoint wrappers, ``module.`` and ``Normalized`` prefixes
    removed), and the (mean, std) of a ``Normalized`` it was saved from."""
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
        raise UsageError(
            flag,
            f"{path!r} holds no state dict (a {type(obj).__name__}): save one with "
            "torch.save(model.state_dict(), FILE)",
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    norm = None
    if "mean" in sd and "std" in sd and all(k.startswith("model.") for k in sd if k not in ("mean", "std")):
        norm = (sd.pop("mean").flatten().tolist(), sd.pop("std").flatten().tolist())
        sd = {k[len("model.") :]: v for k, v in sd.items()}
    return sd, norm


def _architecture(spec: ModelSpec, flag: str, pretrained: bool) -> Any:
    """A fresh ``torchvision`` / ``timm`` network (pretrained weights only when asked)."""
    if spec.kind == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if spec.name not in names:
            near = [n for n in names if n.startswith(spec.name[:4])][:6] or names[:6]
            raise UsageError(
                flag,
                f"torchvision has no classification model {spec.name!r} (e.g. {', '.join(near)}; "
                "see torchvision.models.list_models())",
            )
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


def _plain(model: Any, name: str) -> str:
    """``name`` relative to the network inside ``model``'s wrappers (as the user names it)."""
    from ..models import unwrap

    prefix, _ = unwrap(model)
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def find_head_by_outputs(model: Any, image_size: int) -> tuple[str, Any]:
    """The classification head ``(qualified name, nn.Linear)`` found on one zero ``image_size`` px image: the
    last ``nn.Linear`` run whose width is the output's; of several, it must give the output itself (else ValueError)."""
    import torch
    from torch import nn

    from ..models import _candidates

    calls: list[tuple[str, Any, Any]] = []
    handles = [
        m.register_forward_hook(lambda mod, _i, out, n=n: calls.append((n, mod, out)))
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear)
    ]
    param = next(model.parameters(), None)
    x = torch.zeros(1, 3, image_size, image_size, device=param.device if param is not None else None)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError(
            f"its output is {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, not logits [N, classes]"
        )
    width = int(out.shape[1])
    cands = [(n, m, o) for n, m, o in calls if m.out_features == width]
    if not cands:
        raise ValueError(
            f"no nn.Linear has {width} outputs (the model's output width): pass --head NAME; {_candidates(model)}"
        )
    name, mod, last_out = cands[-1]
    names = list(dict.fromkeys(n for n, _, _ in cands))
    if len(names) > 1 and not (
        isinstance(last_out, torch.Tensor) and last_out.shape == out.shape and torch.equal(last_out, out)
    ):
        raise ValueError(
            f"{len(names)} nn.Linear layers have {width} outputs and the last, {name!r}, does not give "
            f"the model's output: pass --head with one of {', '.join(map(repr, names))}"
        )
    return name, mod


def load_model(
    spec: ModelSpec,
    weights: str | None,
    *,
    flag: str,
    wflag: str,
    head: str | None,
    download: bool,
    normalize: bool,
    image_size: int = 224,
    trust_pickle: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """A model taking [0, 1] images, and what was found about it (for the report). Without ``head`` the head
    is found by :func:`find_head_by_outputs`; a pickled file loads only with ``trust_pickle``."""
    from torch import nn

    from ..models import IMAGENET_MEAN, IMAGENET_STD, Normalized, find_head, replace_head, unwrap

    info: dict[str, Any] = {"spec": spec.text, "weights": weights}
    norm = None
    if spec.kind == "file":
        import torch

        obj = _read_file(spec.name, flag, trust_pickle)
        as_weights = (
            f"name its architecture and pass the file as weights ({flag} torchvision:<name> {wflag} {spec.text})"
        )
        if isinstance(obj, dict):
            raise UsageError(flag, f"{spec.text!r} is a state dict, not a model: {as_weights}")
        if isinstance(obj, torch.jit.ScriptModule):
            raise UsageError(
                flag,
                f"{spec.text!r} is TorchScript, which the audit cannot split into backbone and head "
                f"or hook for Grad-CAM: {as_weights}; its weights are read from it",
            )
        if not isinstance(obj, nn.Module):
            raise UsageError(
                flag,
                f"{spec.text!r} holds a {type(obj).__name__}, not a model: save the model with "
                "torch.save(model, FILE) or its state dict with torch.save(model.state_dict(), FILE)",
            )
        model = obj
        info["format"] = "torch.save(model)"
    elif weights is not None:
        model = _architecture(spec, flag, pretrained=False)
        sd, norm = _state_dict(_read_file(weights, wflag, trust_pickle), weights, wflag)
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
            raise UsageError(
                wflag, f"{weights!r} does not fit {spec.text}: {shapes[0] if shapes else _first_line(e)}"
            ) from None
        if missing or unexpected:
            raise UsageError(
                wflag,
                f"{weights!r} does not fit {spec.text}: {len(missing)} missing keys "
                f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}",
            )
        info["format"] = "state dict"
    else:
        if spec.kind == "torchvision" and not download and not _hub_cached(spec.name):
            _architecture(spec, flag, pretrained=False)  # an unknown name is reported as such
            raise UsageError(
                wflag,
                f"{flag} {spec.text} has no weights: pass {wflag} FILE (a state dict) or "
                "--download to fetch its ImageNet weights",
            )
        model = _architecture(spec, flag, pretrained=True)
        info["format"] = (
            "pretrained (torchvision DEFAULT weights)" if spec.kind == "torchvision" else "pretrained (timm)"
        )
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
    if head is not None:
        try:
            hname, hmod = find_head(model, head)
        except ValueError as e:
            raise UsageError("--head", str(e)) from None
    else:
        try:
            hname, hmod = find_head_by_outputs(model, image_size)
        except ValueError as e:
            raise UsageError("--head", f"cannot find the head of {spec.text}: {e}") from None
        except Exception as e:  # noqa: BLE001 - the model does not run on such an image
            raise UsageError(
                flag, f"{spec.text} does not run on a zero {image_size} px image ({_first_line(e)}): check --image-size"
            ) from None
    info.update(
        architecture=type(unwrap(model)[1]).__name__,
        head=hname,
        outputs=int(hmod.out_features),
        parameters=int(sum(p.numel() for p in model.parameters())),
        head_how="given" if head is not None else "found",
    )
    return model, info


def _resolve_layer(model: Any, name: str) -> str | None:
    """``name`` as a qualified layer name of ``model`` (relative to it or to its wrapped network), or None."""
    from ..models import unwrap

    prefix, _ = unwrap(model)
    for cand in dict.fromkeys((name, prefix + name)):
        try:
            model.get_submodule(cand)
            return cand
        except AttributeError:
            continue
    return None


def check_cam_layer(
    models: dict[str, Any], layer: str | None, image_size: int = 224
) -> tuple[str | None, dict[str, Any]]:
    """The Grad-CAM layer of every model as ``load_world`` takes it (None: attribution's default), and how it
    was chosen: ``given``, ``found`` (:func:`cam_layers.locate_layer`, one for all models) or ``known`` (ViT, Swin)."""
    from ..cam_layers import _candidates, _resolve, locate_layer
    from ..models import unwrap

    first = next(iter(models.values()))
    if layer is not None:
        resolved = None
        for role, m in models.items():
            r = _resolve_layer(m, layer)
            if r is None:
                inner = unwrap(m)[1]
                raise UsageError(
                    "--cam-layer",
                    f"{layer!r} is not a layer of the {role} model "
                    f"({type(inner).__name__}); candidates: {', '.join(_candidates(inner))}",
                )
            if resolved is None:
                resolved = r
            elif r != resolved:
                raise UsageError(
                    "--cam-layer",
                    f"{layer!r} resolves to {resolved!r} in one model and {r!r} in "
                    "another: pass the full qualified name",
                )
        return resolved, {"name": _plain(first, str(resolved)), "how": "given", "output": None}
    found: dict[str, tuple[str | None, str, str | None]] = {}  # role: (name for load_world, name, output C x H x W)
    for role, m in models.items():
        try:
            _, name, reshape = _resolve(m, None)
        except ValueError:
            reshape = None
        if reshape is not None:  # tokens or channels-last maps: Grad-CAM reshapes them at the known layer
            found[role] = (None, name, None)
            continue
        try:
            name, (c, h, w) = locate_layer(m, image_size)
        except ValueError as e:
            raise UsageError(
                "--cam-layer", f"cannot find the Grad-CAM layer of the {role} model: {e}; pass --cam-layer NAME"
            ) from None
        found[role] = (name, name, f"{c}x{h}x{w}")
    if len({v[1] for v in found.values()}) > 1:
        raise UsageError(
            "--cam-layer",
            "the Grad-CAM layer found differs between the models ("
            + ", ".join(f"{role}: {_plain(models[role], v[1])!r}" for role, v in found.items())
            + "): pass --cam-layer NAME",
        )
    world_name, name, shape = next(iter(found.values()))
    return world_name, {"name": _plain(first, name), "how": "found" if world_name else "known", "output": shape}
