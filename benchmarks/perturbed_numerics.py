"""Which CPU numeric settings change a trained model's bits, and what does each cost?

    python benchmarks/perturbed_numerics.py            # 40 Adam steps of the shapes smoke CNN
    python benchmarks/perturbed_numerics.py --steps 80

Trains ``shapes``' ``SmallResNet`` (width 16, batch 64 of 32 px images, seeded data and weights)
in a fresh child process per setting: the machine's defaults (twice: the run-to-run check), then one
change each (ATen's vector kernels off, oneDNN capped at SSE4.1, MKL's conditional-numerical-
reproducibility mode, one thread instead of two). For each it prints the wall time as a ratio to the
defaults' (measured in the same run), whether the final weights are bit-identical to the defaults',
and the largest weight difference. A setting that changes the bits at a small ratio is a cheap way to
rerun a world under perturbed numerics (what another CPU type would do to it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "defaults": {},
    "defaults again": {},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "1 thread": {"LINGERLAB_BENCH_THREADS": "1"},
}

_CHILD = r"""
import json, os, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from lingerlab.worlds.shapes import SmallResNet
torch.set_num_threads(int(os.environ.get("LINGERLAB_BENCH_THREADS", "2")))
steps, out = int(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(0)
x = torch.rand(steps, 64, 3, 32, 32, generator=g)
y = torch.randint(0, 24, (steps, 64), generator=g)
torch.manual_seed(0)
net = SmallResNet(24, 16)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
t0 = time.perf_counter()
for i in range(steps):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
    opt.step()
wall = time.perf_counter() - t0
torch.save({k: v.clone() for k, v in net.state_dict().items()}, out)
print(json.dumps({"wall_s": wall}))
"""


def run(setting: dict[str, str], steps: int, out: Path) -> float:
    env = {**os.environ, **setting}
    src = str(Path(__file__).resolve().parents[1] / "src")
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, src, str(steps), str(out)], env=env, capture_output=True, text=True, check=True
    )
    return float(json.loads(res.stdout.strip().splitlines()[-1])["wall_s"])


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        walls, weights = {}, {}
        for name, setting in SETTINGS.items():
            path = Path(tmp) / f"{len(walls)}.pt"
            walls[name] = run(setting, args.steps, path)
            weights[name] = torch.load(path, weights_only=True)
        base = weights["defaults"]
        print(f"{'setting':32s} {'wall ratio':>10s}  bit-identical  max |weight difference|")
        for name in SETTINGS:
            w = weights[name]
            same = all(torch.equal(base[k], w[k]) for k in base)
            floats = [k for k in base if base[k].is_floating_point()]
            diff = max(float((base[k].double() - w[k].double()).abs().max()) for k in floats)
            print(f"{name:32s} {walls[name] / walls['defaults']:10.2f}  {str(same):13s}  {diff:.2e}")


if __name__ == "__main__":
    main()
