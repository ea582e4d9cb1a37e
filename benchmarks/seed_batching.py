"""Would training the seeds of one arm together be faster than one after another?

    python benchmarks/seed_batching.py            # K = 5 seeds of the shapes smoke CNN, 30 steps each
    python benchmarks/seed_batching.py --k 3 --steps 50 --width 16

Two ways of running K independent copies of ``shapes``' ``SmallResNet`` (each with its own weights,
its own batch of 64 images of 32 px, forward + backward + Adam step), timed in the same process:

- ``sequential``: K models, one after the other (what ``arms.Zoo`` does);
- ``grouped``: one model whose convolutions have ``groups=K`` (the K copies' channels side by side),
  BatchNorm over the K x C channels (per channel, so per copy), and a grouped head: the K copies in
  one set of kernels, which is exactly K independent models fed K batches.

``torch.func.stack_module_state`` + ``vmap`` is not timed: BatchNorm's running statistics are
updated in place, which ``vmap`` refuses unless they are removed (``replace_all_batch_norm_modules_``),
and a model without them is not the model the book trains.

Prints the seconds per step of each and the ratio grouped / sequential (< 1: grouping is faster).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lingerlab.worlds.shapes import SmallResNet  # noqa: E402


class _GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, k: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(k * cin, k * cout, 3, stride, 1, bias=False, groups=k)
        self.bn1 = nn.BatchNorm2d(k * cout)
        self.conv2 = nn.Conv2d(k * cout, k * cout, 3, 1, 1, bias=False, groups=k)
        self.bn2 = nn.BatchNorm2d(k * cout)
        self.short = (
            nn.Sequential(nn.Conv2d(k * cin, k * cout, 1, stride, bias=False, groups=k), nn.BatchNorm2d(k * cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class GroupedResNet(nn.Module):
    """K copies of ``SmallResNet`` as one network with grouped convolutions (input ``[B, K*3, H, W]``,
    output ``[B, K, num_classes]``)."""

    def __init__(self, num_classes: int, width: int, k: int) -> None:
        super().__init__()
        self.k, self.width = k, width
        self.stem = nn.Sequential(
            nn.Conv2d(3 * k, width * k, 3, 1, 1, bias=False, groups=k), nn.BatchNorm2d(width * k), nn.ReLU(inplace=True)
        )
        self.layer1 = _GBlock(width, width, 1, k)
        self.layer2 = _GBlock(width, 2 * width, 2, k)
        self.layer3 = _GBlock(2 * width, 4 * width, 2, k)
        self.fc = nn.Conv1d(4 * width * k, num_classes * k, 1, groups=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        x = x.mean(dim=(2, 3))[:, :, None]
        return self.fc(x).view(x.shape[0], self.k, -1)


def _time(step, n: int) -> float:
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=5, help="seeds trained together (default 5)")
    ap.add_argument("--steps", type=int, default=30, help="optimisation steps timed per variant")
    ap.add_argument("--width", type=int, default=16, help="SmallResNet width (shapes smoke: 16)")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(a.k, a.batch, 3, 32, 32, generator=g)
    ys = torch.randint(0, 2, (a.k, a.batch), generator=g)

    models = [SmallResNet(2, a.width).to(memory_format=torch.channels_last) for _ in range(a.k)]
    opts = [torch.optim.Adam(m.parameters(), 1e-3) for m in models]

    def sequential() -> None:
        for m, o, x, y in zip(models, opts, xs, ys):
            o.zero_grad()
            F.cross_entropy(m(x.contiguous(memory_format=torch.channels_last)), y).backward()
            o.step()

    grouped_model = GroupedResNet(2, a.width, a.k).to(memory_format=torch.channels_last)
    gopt = torch.optim.Adam(grouped_model.parameters(), 1e-3)
    gx = xs.permute(1, 0, 2, 3, 4).reshape(a.batch, a.k * 3, 32, 32).contiguous(memory_format=torch.channels_last)

    def grouped() -> None:
        gopt.zero_grad()
        out = grouped_model(gx)  # [B, K, classes]
        F.cross_entropy(out.permute(0, 2, 1), ys.T).backward()  # the mean over K copies: same gradients x 1/K
        gopt.step()

    t_seq = _time(sequential, a.steps)
    t_grp = _time(grouped, a.steps)
    print(
        f"K = {a.k} copies of SmallResNet(width={a.width}), batch {a.batch} of 32 px, {torch.get_num_threads()} threads"
    )
    print(f"sequential: {t_seq * 1000:.1f} ms per step of all K")
    print(f"grouped:    {t_grp * 1000:.1f} ms per step of all K")
    print(f"ratio grouped / sequential: {t_grp / t_seq:.2f} (< 1: training the seeds together is faster)")


if __name__ == "__main__":
    main()
