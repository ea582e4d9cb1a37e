"""Training throughput: channels-last vs contiguous layout, and the ``shapes`` CNN's smoke width vs 24.

    python benchmarks/training.py --repeats 3

Trains the embedded worlds' architectures for one epoch through :func:`lingerlab.training.finetune`
(``cache=False``, random weights and images, no downloads): the ``shapes`` CNN at 32 px (batch 32,
Adam, as the smoke fine-tuning) and EfficientNet-Lite0 at 128 px (batch 16, as the ``lite0`` world).
Each repeat times both layouts in turn; the medians and their ratio (contiguous / channels-last, > 1
means channels-last is faster) are printed. Then the ``shapes`` CNN at the smoke profile's width
against width 24 (``SmallResNet``'s default width), both channels-last,
in turn in the same run: the ratio (width 24 / smoke width, > 1 means the smoke width is faster).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lingerlab import training  # noqa: E402
from lingerlab.recipe import Recipe  # noqa: E402


def _smoke_width() -> int:
    from lingerlab.profiles import get_profile

    return get_profile("shapes", "smoke").width


def _shapes_cnn(width: int) -> torch.nn.Module:
    from lingerlab.worlds.shapes import _MakeModel

    return _MakeModel(24, width)().eval()


def _models() -> dict[str, tuple[torch.nn.Module, int, int, int]]:
    """name -> (model, image size, batch size, images per epoch)."""
    w = _smoke_width()
    out = {f"shapes SmallResNet (w={w})": (_shapes_cnn(w), 32, 32, 1024)}
    try:
        from lingerlab.worlds.lite_models import make_lite0

        out["EfficientNet-Lite0"] = (make_lite0(128).eval(), 128, 16, 128)
    except ImportError as e:  # pragma: no cover - optional dependency missing
        print(f"skipping EfficientNet-Lite0: {e}")
    return out


def _epoch_seconds(model: torch.nn.Module, data: TensorDataset, batch: int, layout: str) -> float:
    t = time.perf_counter()
    training.finetune(
        model,
        data,
        None,
        Recipe("bench", lr=1e-4, epochs=1, optimizer="adam", batch_size=batch),
        num_classes=2,
        cache=False,
        progress=False,
        device="cpu",
        layout=layout,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    _run(args.repeats)


def _interleaved_medians(runs: dict[Any, Callable[[], float]], repeats: int) -> dict[Any, float]:
    """Median seconds of each run, timed in turn within every repeat (so load drifts hit all alike)."""
    times: dict[Any, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            times[k].append(run())
    return {k: statistics.median(v) for k, v in times.items()}


def _run(repeats: int) -> None:
    for name, (model, size, batch, n) in _models().items():
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.rand(n, 3, size, size, generator=g), torch.randint(0, 2, (n,), generator=g))
        _epoch_seconds(model, TensorDataset(*(t[: 2 * batch] for t in data.tensors)), batch, "channels_last")  # warm-up
        med = _interleaved_medians(
            {
                layout: functools.partial(_epoch_seconds, model, data, batch, layout)
                for layout in ("contiguous", "channels_last")
            },
            repeats,
        )
        print(
            f"{name}: {n} images, batch {batch}: contiguous {n / med['contiguous']:.0f} img/s, "
            f"channels-last {n / med['channels_last']:.0f} img/s, ratio {med['contiguous'] / med['channels_last']:.2f}"
        )
    _run_width(repeats)


def _run_width(repeats: int, n: int = 1024, batch: int = 32) -> None:
    w = _smoke_width()
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 2, (n,), generator=g))
    med = _interleaved_medians(
        {k: functools.partial(_epoch_seconds, _shapes_cnn(k), data, batch, "channels_last") for k in (24, w)}, repeats
    )
    print(
        f"shapes SmallResNet width 24 vs smoke width {w}: {n} images, batch {batch}, channels-last: "
        f"{n / med[24]:.0f} vs {n / med[w]:.0f} img/s, ratio {med[24] / med[w]:.2f}"
    )


if __name__ == "__main__":
    main()
