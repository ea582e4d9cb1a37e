"""Grad-CAM throughput: pytorch-grad-cam's GradCAM vs ``lingerlab.gradcam`` on one model and batch.

    python benchmarks/gradcam.py --model resnet18 --size 224 --batch 16 --repeats 5 --device cpu

Prints maps/s for both, their ratio, the forward-only throughput (inference mode) and the fraction
of it that ``lingerlab.gradcam`` reaches, plus the largest difference between the two sets of maps.
Random weights (no downloads). Each repeat times the three in turn; the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lingerlab.attribution import gradcam  # noqa: E402
from lingerlab.cam_layers import _resolve  # noqa: E402


def build(name: str, num_classes: int = 1000) -> torch.nn.Module:
    import torchvision

    if hasattr(torchvision.models, name):
        return getattr(torchvision.models, name)(num_classes=num_classes)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", help="torchvision (or timm) architecture name")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch CPU threads (default: the CPUs this process may use)",
    )
    ap.add_argument(
        "--contiguous",
        action="store_true",
        help="keep the batch contiguous (gradcam feeds CPU batches channels-last by default)",
    )
    args = ap.parse_args()

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build(args.model).to(dev).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    t = torch.randint(0, 1000, (args.batch,))
    layer, lname, reshape = _resolve(model, None)
    lib = GradCAM(model, [layer], reshape_transform=reshape)
    lib_targets = [ClassifierOutputTarget(int(c)) for c in t]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_lib():
        out = lib(input_tensor=x, targets=lib_targets)
        model.zero_grad(set_to_none=True)
        return out

    def run_ours():
        out = gradcam(model, x, t, channels_last=False if args.contiguous else None)
        sync()
        return out

    cl = not args.contiguous and dev.type == "cpu"  # gradcam's own default layout
    x_fwd = x.contiguous(memory_format=torch.channels_last) if cl else x

    def run_fwd():
        with torch.inference_mode():
            out = model(x_fwd)
        sync()
        return out

    fns = {"pytorch-grad-cam": run_lib, "lingerlab.gradcam": run_ours, "forward only": run_fwd}
    for _ in range(args.warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    diff = (run_ours().cpu() - torch.from_numpy(run_lib())).abs().max().item()
    lib.activations_and_grads.release()

    rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"{args.model} @ {args.size}px, batch {args.batch}, layer {lname}, {name}, torch {torch.__version__}, "
        f"median of {args.repeats}" + (", contiguous" if args.contiguous else "")
    )
    print(f"  pytorch-grad-cam GradCAM : {rate['pytorch-grad-cam']:9.1f} maps/s")
    print(f"  lingerlab.gradcam        : {rate['lingerlab.gradcam']:9.1f} maps/s")
    print(f"  ratio                    : {rate['lingerlab.gradcam'] / rate['pytorch-grad-cam']:9.2f}x")
    print(
        f"  forward only (inference) : {rate['forward only']:9.1f} img/s"
        + ("  (channels-last, as gradcam)" if cl else "")
    )
    print(f"  gradcam / forward        : {rate['lingerlab.gradcam'] / rate['forward only']:9.1%}")
    print(f"  max |maps difference|    : {diff:9.2e}")


if __name__ == "__main__":
    main()
