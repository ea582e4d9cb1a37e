"""Would bfloat16 autocast speed up training on this CPU? A lever for the cold-cache budget, measured.

    python benchmarks/bf16_cpu.py --repeats 3

Times optimiser steps (forward, backward, Adam) of the embedded worlds' architectures in float32 and
under ``torch.autocast("cpu", dtype=torch.bfloat16)``, interleaved, channels-last as the package
trains: the ``shapes`` CNN at 32 px (batch 32 as fine-tuning, batch 64 as the scratch baseline) and
EfficientNet-Lite0 at 128 px (batch 16). Prints images/s and the ratio bf16 / fp32 (> 1: bf16 is
faster). ``lingerlab`` trains in float32; this script only measures (random weights and images).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    step()  # warm-up: oneDNN picks its kernels
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    args = ap.parse_args()
    from lingerlab.worlds.shapes import _MakeModel

    cases = [
        ("shapes SmallResNet, batch 32", lambda: _MakeModel(24, 24)(), 32, 32, 24),
        ("shapes SmallResNet, batch 64", lambda: _MakeModel(24, 24)(), 32, 64, 24),
    ]
    try:
        from lingerlab.worlds.lite_models import make_lite0

        cases.append(("EfficientNet-Lite0, 128 px, batch 16", lambda: make_lite0(128), 128, 16, 1000))
    except ImportError as e:  # pragma: no cover - optional dependency missing
        print(f"skipping EfficientNet-Lite0: {e}")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"oneDNN bf16 supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, threads {torch.get_num_threads()}"
    )
    g = torch.Generator().manual_seed(0)
    for name, make, size, batch, classes in cases:
        torch.manual_seed(0)
        model = make().train().to(memory_format=torch.channels_last)
        x = torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, classes, (batch,), generator=g)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for bf16 in (False, True):
                times[bf16].append(_step_seconds(model, x, y, bf16, args.steps))
        fp32, bf = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name}: fp32 {batch / fp32:.0f} img/s, bf16 {batch / bf:.0f} img/s, ratio bf16/fp32 {fp32 / bf:.2f}")


if __name__ == "__main__":
    main()
