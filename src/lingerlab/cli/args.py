"""Arguments of ``lingerlab audit``: the parser, its types and every check made before a model loads."""

from __future__ import annotations

import argparse
import math
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


PROG = "lingerlab"

# the same list as worlds.custom.IMAGE_EXTENSIONS (kept here so that argument checks need no torch;
# tests/test_cli.py checks that the two agree)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

IMAGEFOLDER_HELP = "an ImageFolder: DIR/<class>/<images>, or DIR/train/<class>/... and DIR/val/<class>/..."
SPEC_HELP = (
    "torchvision:<name> or timm:<name> (with --{role}-weights FILE, a state dict{download}), or the path "
    "of a file saved with torch.save(model) (with --trust-pickle)"
)

EXAMPLES = """\
examples:
  # 1. Your ResNet-18 fine-tuned from torchvision's ImageNet weights, saved as a state dict
  #    (torch.save(model.state_dict(), "pets_resnet18.pt")); ImageNet images of some classes in
  #    imagenet_bits/<class name or index>/; a scratch baseline M^b trained by the printed recipe.
  lingerlab audit \\
      --source-model torchvision:resnet18 --download \\
      --target-model torchvision:resnet18 --target-weights pets_resnet18.pt \\
      --target-dir data/pets --source-dir data/imagenet_bits --source-classes imagenet \\
      --image-size 224 --profile full --out audit_pets

  # 2. A fine-tuned model saved whole with torch.save(model) (a pickle: --trust-pickle, for files you
  #    trust), the source weights from a local state dict, your own class list (one name per line, in
  #    output order), no baseline, CPU.
  lingerlab audit \\
      --source-model torchvision:resnet50 --source-weights resnet50_in1k.pth \\
      --target-model my_finetuned_model.pt --trust-pickle --baseline none \\
      --target-dir data/xray --source-dir data/source_images --source-classes classes.txt \\
      --device cpu --out audit_xray

model specs: torchvision:<name> (torchvision.models.get_model) or timm:<name> (timm.create_model) with
  --*-weights FILE: a state dict (also a checkpoint dict holding one under "state_dict" or "model", a
  TorchScript file, or with --trust-pickle a file saved with torch.save(model), whose weights are read
  into the named architecture); its head is resized to the state dict's. Or the path of a file saved
  with torch.save(model), which loads only with --trust-pickle: unpickling runs code from the file
  (PyTorch loads with weights_only=True for this reason). A bare TorchScript file cannot be audited:
  the method splits the model into backbone and head and hooks a layer for Grad-CAM, which TorchScript
  does not allow; name its architecture and pass it as weights.
  Named pretrained weights (torchvision:<name> without --source-weights) are used from the torch hub
  cache, and fetched only with --download.
head and Grad-CAM layer: without --head, the head is the last nn.Linear whose outputs are the model's
  (one per class); without --cam-layer, the layer is the last one whose output is a spatial map
  [C, H, W] before global pooling (ViT/Swin: their known token layer). Both are found on one zero
  image of --image-size px, printed, and written to results.json; a choice that is not unique is an
  error listing the candidates.
images: every image is converted to RGB (greyscale, CMYK, palette, alpha), resized and centre-cropped
  to --image-size and fed in [0, 1]; models get ImageNet normalisation (models.Normalized) unless
  --no-normalize (then they must normalise their own inputs). A file that does not decode is skipped
  and listed in the report.
"""


class UsageError(Exception):
    """A bad argument (exit status 2): ``flag`` is the option it is about ("" when none)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag, self.message = flag, message

    def line(self, prog: str) -> str:
        text = " ".join(str(self.message).split())  # one line, always
        return f"{prog}: error: {self.flag + ': ' if self.flag else ''}{text}"


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line on stderr (no usage block) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------- argument types


def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}; got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}; got {v}")
        return v

    return parse


def _float_in(lo: float, hi: float | None, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    left, right = "(" if lo_open else "[", ")" if hi_open or hi is None else "]"
    interval = f"{left}{lo:g}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}; got {text!r}") from None
        bad = math.isnan(v) or v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}; got {text}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``lingerlab`` parser with its ``audit`` subcommand."""
    top = _Parser(
        prog=PROG,
        description="Measure lingering source memories in fine-tuned image classifiers "
        "(Alnouri, Wroge, Alsallakh, TF2M @ ICML 2024).",
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser(
        "audit",
        help="audit a fine-tuned model against its source model; writes an HTML report",
        description=textwrap.fill(
            "Audit a fine-tuned model M^t against its source model M^s: source-only classes "
            "(Eqs. 1-2), lingering memories (Eq. 3), composites and distraction (Sec. 4, Eq. 4), the "
            "interference flag (Eq. 5) and the book's fair test over L (gates and four verdicts; between "
            "M^t and a baseline M^b when there is one). Writes "
            "OUT/report.html, OUT/results.json and one CSV per stage. Exit status: 0 on success, 2 "
            "on a bad argument, 1 on a failure during the audit.",
            100,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--source-model",
        required=True,
        metavar="SPEC",
        help="the pretrained source model M^s: " + SPEC_HELP.format(role="source", download=", or --download"),
    )
    g.add_argument("--source-weights", metavar="FILE", help="state dict of --source-model torchvision:/timm:")
    g.add_argument(
        "--target-model",
        required=True,
        metavar="SPEC",
        help="your fine-tuned model M^t (same architecture, one output per target class): "
        + SPEC_HELP.format(role="target", download=""),
    )
    g.add_argument("--target-weights", metavar="FILE", help="state dict of --target-model torchvision:/timm:")
    g.add_argument(
        "--baseline",
        default="scratch",
        metavar="scratch|none|SPEC",
        help="M^b: 'scratch' trains the scratch baseline by the profile's recipe (printed; the default), "
        "'none' skips it (only M^t's within-model tests are run), a model spec takes your own "
        "(one output per target class, measured for every seed)",
    )
    g.add_argument("--baseline-weights", metavar="FILE", help="state dict of --baseline torchvision:/timm:")
    g.add_argument(
        "--baseline-seeds",
        type=_int_at_least(1),
        metavar="N",
        help="seeds of the scratch baseline (default: 5 with --profile full, 3 with smoke)",
    )
    g.add_argument(
        "--head",
        metavar="NAME",
        help="qualified name of the classification head (the final "
        "nn.Linear, e.g. fc or classifier.1; default: the last nn.Linear with one output per class)",
    )
    g.add_argument(
        "--cam-layer",
        metavar="NAME",
        help="layer Grad-CAM reads (e.g. layer4; default: the last layer "
        "whose output is a spatial map, before global pooling)",
    )
    g.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow model files saved with torch.save(model): unpickling runs code from the file, so "
        "pass only files you trust (state dicts and TorchScript need no flag)",
    )
    g.add_argument("--download", action="store_true", help="fetch named pretrained weights (torch hub / Hugging Face)")
    g.add_argument(
        "--no-normalize",
        action="store_true",
        help="do not wrap models in ImageNet normalisation: they take [0, 1] images as they are",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--target-dir",
        required=True,
        metavar="DIR",
        help=IMAGEFOLDER_HELP + "; train/ is taken to be what M^t was fine-tuned on (D^t)",
    )
    g.add_argument(
        "--source-dir",
        required=True,
        metavar="DIR",
        help="images of source classes (D^c): DIR/<class name or index>/<images>",
    )
    g.add_argument(
        "--source-classes",
        metavar="FILE|imagenet",
        help="names of the source model's outputs: a text file, one name per line in output order, or "
        "'imagenet' for the ImageNet-1k names (default: imagenet when the source model has 1000 outputs)",
    )
    g.add_argument(
        "--image-size",
        type=_int_at_least(8),
        metavar="PX",
        help="side the images are resized and cropped to (default: the profile's, 128 smoke / 224 full)",
    )
    g = p.add_argument_group("method")
    g.add_argument("--k", type=_int_at_least(1), help="Eq. 1's top-k (default: 5 per 1000 source classes, at least 1)")
    g.add_argument(
        "--v-lo",
        type=_float_in(0, None),
        metavar="V",
        help="Eq. 2's threshold on v(c) (default: 1%% of the training images)",
    )
    g.add_argument(
        "--p-lo",
        type=_float_in(0, 1, lo_open=True, hi_open=True),
        metavar="P",
        help="Eq. 3/5's threshold on a mean probability (default: 10 / number of source classes, at most 0.5)",
    )
    g.add_argument(
        "--scale",
        type=_float_in(0, 1, lo_open=True),
        metavar="S",
        help="side of the pasted target image in a composite, as a fraction (default 0.4)",
    )
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the data split and composites (default 0)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    g.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        metavar="B",
        help="training batch size of the scratch baseline (default: the profile's)",
    )
    g.add_argument(
        "--profile",
        choices=("smoke", "full"),
        default="full",
        help="sizes of the training recipes: smoke (2 epochs, 128 px) or full (the default)",
    )
    g.add_argument("--out", default="lingerlab_audit", metavar="DIR", help="output folder (default ./lingerlab_audit)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the stage cache ($LINGERLAB_CACHE)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--verbose", action="store_true", help="print the traceback of a failure")
    return top


# ----------------------------------------------------------------------------- up-front validation


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
    valid = (
        "torchvision:<name>, timm:<name> (with "
        + flag.replace("-model", "-weights").replace("--baseline", "--baseline-weights")
        + " FILE"
        + (" or --download" if download_hint else "")
        + ") or the path of a file saved with torch.save(model)"
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


def check_target_dir(text: str) -> dict[str, Any]:
    """The layout of ``--target-dir``: ``layout``, ``classes`` and image counts per split."""
    root = Path(text).expanduser()
    flag = "--target-dir"
    if not root.exists():
        raise UsageError(flag, f"folder {text!r} does not exist (pass {IMAGEFOLDER_HELP})")
    if not root.is_dir():
        raise UsageError(flag, f"{text!r} is not a folder (pass {IMAGEFOLDER_HELP})")
    if (root / "train").is_dir() and (root / "val").is_dir():
        splits = {s: _image_folders(root / s) for s in ("train", "val")}
        for s, f in splits.items():
            if not f:
                raise UsageError(
                    flag,
                    f"{str(root / s)!r} has no class folders with images "
                    f"({', '.join(IMAGE_EXTENSIONS)}): expected {s}/<class>/<images>",
                )
        classes = sorted(set(splits["train"]) | set(splits["val"]))
        layout = "train/ and val/"
    else:
        f = _image_folders(root)
        if not f:
            raise UsageError(
                flag,
                f"folder {text!r} has no class folders with images ({', '.join(IMAGE_EXTENSIONS)}) "
                f"(pass {IMAGEFOLDER_HELP})",
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
    root = Path(text).expanduser()
    flag = "--source-dir"
    if not root.exists():
        raise UsageError(
            flag,
            f"folder {text!r} does not exist (pass a folder of source-class folders: "
            "DIR/<class name or index>/<images>)",
        )
    if not root.is_dir():
        raise UsageError(flag, f"{text!r} is not a folder (pass DIR/<class name or index>/<images>)")
    folders = _image_folders(root)
    if not folders:
        raise UsageError(
            flag,
            f"folder {text!r} is empty: it has no class folders with images "
            f"({', '.join(IMAGE_EXTENSIONS)}); expected DIR/<class name or index>/<images>",
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
