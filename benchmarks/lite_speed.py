"""Two CPU levers of the `lite` worlds, each as a ratio against its reference measured in the same run.

    python benchmarks/lite_speed.py                # Lite0 and Lite2 at the smoke profile's 112 px
    python benchmarks/lite_speed.py --repeats 5 --variants lite0

1. **Inference batch** (``inference.predict``'s default on a CPU, ``inference.CPU_EVAL_BATCH``): eval-mode
   milliseconds per image of M^s (1000 classes) over 256 images in batches of ``CPU_EVAL_BATCH``
   against batches of 256; ratio small / large (< 1: the small batch
   is faster).
2. **Folded 'same' padding** (``worlds.lite_models.fold_same_padding``, applied by ``make_lite``): milliseconds
   per Adam step (batch 16, 2 classes, channels-last, train mode) of the model as ``make_lite`` builds
   it against the package's own model with its separate pads (same weights); ratio folded / package.

Repeats are interleaved (A, B, A, B, ...) and medians compared, so a drift of the shared CPU hits both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lingerlab.profiles import get_profile  # noqa: E402
from lingerlab.inference import CPU_EVAL_BATCH  # noqa: E402
from lingerlab.worlds.lite_models import VARIANTS, lite_source_model  # noqa: E402


def _infer_ms(model: torch.nn.Module, x: torch.Tensor, batch: int) -> float:
    with torch.inference_mode():
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i : i + batch].contiguous(memory_format=torch.channels_last))
        return (time.perf_counter() - t) / len(x) * 1000


def _package_model(variant: str, size: int, state: dict) -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(VARIANTS[variant].model_name, image_size=size, num_classes=2)
    net.load_state_dict(state)
    return net


def _step_ms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["lite0", "lite2"], choices=sorted(VARIANTS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="training steps timed per repeat")
    a = ap.parse_args(argv)
    size = get_profile("lite0", "smoke").image_size
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {size} px")
    for v in a.variants:
        src = lite_source_model(v, size).to(memory_format=torch.channels_last)
        x = torch.rand(256, 3, size, size, generator=g)
        small, large = [], []
        for _ in range(a.repeats):
            small.append(_infer_ms(src, x, CPU_EVAL_BATCH))
            large.append(_infer_ms(src, x, 256))
        s, lg = statistics.median(small), statistics.median(large)
        print(
            f"{v} inference: batch {CPU_EVAL_BATCH} {s:.2f} ms/image, batch 256 {lg:.2f} ms/image, ratio {s / lg:.2f}",
            flush=True,
        )

        torch.manual_seed(0)
        ours = lite_source_model(v, size)
        ours.model._fc = torch.nn.Linear(ours.model._fc.in_features, 2)
        theirs = _package_model(v, size, ours.model.state_dict())
        xb = torch.rand(16, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
        yb = torch.randint(0, 2, (16,), generator=g)
        nets = {
            "folded": ours.model.to(memory_format=torch.channels_last),
            "package": theirs.to(memory_format=torch.channels_last),
        }
        times: dict[str, list[float]] = {k: [] for k in nets}
        for _ in range(a.repeats):
            for k, net in nets.items():
                times[k].append(_step_ms(net, xb, yb, a.steps))
        f, p = statistics.median(times["folded"]), statistics.median(times["package"])
        print(f"{v} training step: folded {f:.0f} ms, package {p:.0f} ms, ratio {f / p:.2f}", flush=True)


if __name__ == "__main__":
    main()
