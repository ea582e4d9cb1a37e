"""The arguments of ``lingerlab audit``, checked before anything heavy loads: model specs, folders,
the class file and the output folder; a bad one raises :class:`UsageError` (exit status 2)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

# the same list as worlds.custom.IMAGE_EXTENSIONS (kept here so that argument checks need no torch;
# tests/test_cli.py checks that the two agree)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

IMAGEFOLDER_HELP = "an ImageFolder: DIR/<class>/<images>, or DIR/train/<class>/... and DIR/val/<class>/..."
_EXTENSIONS = ", ".join(IMAGE_EXTENSIONS)
_SOURCE_LAYOUT = "DIR/<class name or index>/<images>"


class UsageError(Exception):
    """A bad argument (exit status 2): ``flag`` is the option it is about ("" when none)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag, self.message = flag, message

    def line(self, prog: str) -> str:
        text = " ".join(str(self.message).split())  # one line, always
        return f"{prog}: error: {self.flag + ': ' if self.flag else ''}{text}"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` is ``torchvision``, ``timm`` or ``file``; ``name`` the
    architecture or the file path; ``text`` what was typed."""

    kind: str
    name: str
    text: str


_SPEC_RE = re.compile(r"(torchvision|timm):([A-Za-z0-9_.\-]+)")


def parse_model_spec(text: str, flag: str, *, download_hint: bool = True) -> ModelSpec:
    """Parse a model spec (no torch needed); a bad one raises :class:`UsageError` for ``flag``."""
    wflag = flag.replace("-model", "-weights").replace("--baseline", "--baseline-weights")
    valid = (
        f"torchvision:<name>, timm:<name> (with {wflag} FILE{' or --download' if download_hint else ''}) "
        "or the path of a file saved with torch.save(model)"
    )
    m = _SPEC_RE.fullmatch(text.strip())
    if m:
        return ModelSpec(m.group(1), m.group(2), text)
    path = Path(text[5:] if text.startswith("file:") else text).expanduser()
    if path.is_file():
        return ModelSpec("file", str(path), text)
    prefix = re.match(r"([A-Za-z][A-Za-z0-9_+\-]*):(?![\\/])", text)
    if prefix and prefix.group(1) not in ("torchvision", "timm"):
        raise UsageError(flag, f"unknown model source {prefix.group(1)!r} in {text!r}: use {valid}")
    if prefix:
        raise UsageError(flag, f"{text!r} names no architecture: use {valid}")
    if path.suffix or "/" in text or os.sep in text:
        raise UsageError(flag, f"model file {text!r} does not exist: use {valid}")
    raise UsageError(flag, f"{text!r} is not a model spec: use {valid}")


def _image_folders(root: Path) -> dict[str, int]:
    """``{class folder: number of image files}`` for non-empty class folders of ``root``."""
    out = {}
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            n = sum(
                1
                for f in d.iterdir()
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
            )
            if n:
                out[d.name] = n
    return out


def _folder(text: str, flag: str, missing: str, not_dir: str) -> Path:
    """``text`` as an existing folder; ``missing`` and ``not_dir`` end the error otherwise."""
    root = Path(text).expanduser()
    if not root.exists():
        raise UsageError(flag, f"folder {text!r} does not exist ({missing})")
    if not root.is_dir():
        raise UsageError(flag, f"{text!r} is not a folder ({not_dir})")
    return root


def check_target_dir(text: str) -> dict[str, Any]:
    """The layout of ``--target-dir``: ``layout``, ``classes`` and image counts per split."""
    flag = "--target-dir"
    root = _folder(text, flag, f"pass {IMAGEFOLDER_HELP}", f"pass {IMAGEFOLDER_HELP}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        splits = {s: _image_folders(root / s) for s in ("train", "val")}
        for s, f in splits.items():
            if not f:
                raise UsageError(
                    flag,
                    f"{str(root / s)!r} has no class folders with images ({_EXTENSIONS}): "
                    f"expected {s}/<class>/<images>",
                )
        classes = sorted(set(splits["train"]) | set(splits["val"]))
        layout = "train/ and val/"
    else:
        f = _image_folders(root)
        if not f:
            raise UsageError(
                flag,
                f"folder {text!r} has no class folders with images ({_EXTENSIONS}) (pass {IMAGEFOLDER_HELP})",
            )
        splits = {"all": f}
        classes = sorted(f)
        layout = "one folder per class (a seeded, stratified validation split is held out)"
    if len(classes) < 2:
        raise UsageError(
            flag,
            f"folder {text!r} has {len(classes)} class folder with images ({classes}): "
            "a classifier's target data need at least 2 classes",
        )
    return {"root": str(root), "layout": layout, "classes": classes, "files": splits}


def check_source_dir(text: str) -> dict[str, int]:
    """``{class folder: image files}`` of ``--source-dir`` (non-empty)."""
    flag = "--source-dir"
    root = _folder(text, flag, f"pass a folder of source-class folders: {_SOURCE_LAYOUT}", f"pass {_SOURCE_LAYOUT}")
    folders = _image_folders(root)
    if not folders:
        raise UsageError(
            flag,
            f"folder {text!r} is empty: it has no class folders with images ({_EXTENSIONS}); expected {_SOURCE_LAYOUT}",
        )
    return folders


def read_class_file(text: str) -> list[str]:
    """Class names from ``--source-classes FILE``: one per line (blank lines at the end dropped)."""
    flag = "--source-classes"
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(
            flag,
            f"{text!r} is neither a text file nor 'imagenet' (pass a file with one class name "
            "per line, in the order of the source model's outputs, or 'imagenet')",
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(flag, f"cannot read {text!r} as UTF-8 text ({e}): pass one class name per line") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [ln.strip() for ln in lines]
    if not names:
        raise UsageError(flag, f"{text!r} is empty: pass one class name per line, in output order")
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise UsageError(flag, f"{text!r} has blank lines ({blank[:5]}): every line names one output, in order")
    return names


def check_folder_names(folders: Sequence[str], classes: Sequence[str], root: str) -> None:
    """Every ``--source-dir`` folder must be a class name or an index into ``classes``."""
    known = set(classes)
    bad = [f for f in folders if f not in known and not (f.isdigit() and int(f) < len(classes))]
    if bad:
        raise UsageError(
            "--source-dir",
            f"folder {str(Path(root) / bad[0])!r} names no source class"
            f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}: name each folder by a class "
            f"name from --source-classes (e.g. {classes[0]!r}) or an index in [0, {len(classes) - 1}]",
        )


@dataclass
class Checked:
    """Everything validated before anything heavy is loaded."""

    args: argparse.Namespace
    source: ModelSpec
    target: ModelSpec
    baseline: str | ModelSpec  # "scratch", "none" or a spec
    target_dir: dict[str, Any]
    source_folders: dict[str, int]
    class_names: list[str] | None  # None: 'imagenet' or not given (resolved once torch is imported)
    out: Path
    models_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)  # head and cam_layer: name, how


def validate(args: argparse.Namespace) -> Checked:
    """All checks that need no model: folders, class file, specs, files, output folder."""
    target_dir = check_target_dir(args.target_dir)
    source_folders = check_source_dir(args.source_dir)
    names = None
    if args.source_classes is not None and args.source_classes != "imagenet":
        names = read_class_file(args.source_classes)  # folder names are checked once the count is known
    source = parse_model_spec(args.source_model, "--source-model")
    target = parse_model_spec(args.target_model, "--target-model", download_hint=False)
    if args.baseline in ("scratch", "none"):
        baseline: str | ModelSpec = args.baseline
    else:
        try:
            baseline = parse_model_spec(args.baseline, "--baseline", download_hint=False)
        except UsageError as e:
            raise UsageError(
                "--baseline", e.message.replace("use torchvision", "use scratch, none, torchvision")
            ) from None
    for spec, wflag, wtext in (
        (source, "--source-weights", args.source_weights),
        (target, "--target-weights", args.target_weights),
        (baseline if isinstance(baseline, ModelSpec) else None, "--baseline-weights", args.baseline_weights),
    ):
        mflag = wflag.replace("-weights", "-model").replace("--baseline-model", "--baseline")
        if wtext is None:
            if spec is not None and spec.kind != "file" and mflag != "--source-model":
                raise UsageError(
                    wflag,
                    f"{mflag} {spec.text} names an architecture only: pass its weights with "
                    f"{wflag} FILE (a state dict or TorchScript, or with --trust-pickle a file saved with "
                    "torch.save(model))",
                )
            continue
        if spec is None:
            raise UsageError(
                wflag, f"is only for {mflag} torchvision:<name> or timm:<name>; --baseline is {args.baseline!r}"
            )
        if spec.kind == "file":
            raise UsageError(
                wflag, f"is only for {mflag} torchvision:<name> or timm:<name>: {spec.text!r} is a model file already"
            )
        if not Path(wtext).expanduser().is_file():
            raise UsageError(
                wflag,
                f"file {wtext!r} does not exist (pass a state dict saved with torch.save(model.state_dict(), FILE))",
            )
    if source.kind == "timm" and args.source_weights is None and not args.download:
        raise UsageError(
            "--source-weights",
            f"--source-model {source.text} has no weights: pass --source-weights FILE "
            "(a state dict) or --download to fetch its pretrained weights",
        )
    if args.baseline_seeds is not None and baseline != "scratch":
        raise UsageError("--baseline-seeds", f"is only for --baseline scratch; --baseline is {args.baseline!r}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        raise UsageError("--device", f"{args.device!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{args.out!r} exists and is not a folder: pass a folder to write the report into")
    return Checked(
        args=args,
        source=source,
        target=target,
        baseline=baseline,
        target_dir=target_dir,
        source_folders=source_folders,
        class_names=names,
        out=out,
    )
