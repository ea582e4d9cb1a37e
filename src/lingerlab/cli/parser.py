"""The parser of ``lingerlab audit``: its options, their help and the types that check each value."""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Callable

from .args import IMAGEFOLDER_HELP

PROG = "lingerlab"

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
