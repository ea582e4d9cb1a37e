"""Flat memory: the streaming passes keep only what their equation needs, whatever the number of images.

Each pass (Eq. 1 ``source_class_counts``, Eq. 3 ``lingering``, the maps of ``gradcam``) runs over N
and over 4N lazily rendered images in a fresh process on a tiny CNN; the peak resident set size of
each pass (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``, else the RSS sampled every 2 ms
by a thread, so tensor memory is seen, not only Python objects) may grow by at most ``TOL_MB`` from N
to 4N (the maps pass: by twice the extra maps it returns, plus ``TOL_MB``). A pass that keeps every
input batch runs the same way as a control: the measurement must see it grow, or the test proves
nothing. Sensitivity: at 64 px and N = 1000, anything kept per image above about 11 kB (32 MB over
3000 extra images; an input is 48 kB, a row of 1000 logits 4 kB) fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

N = 1000
TOL_MB = 32
SIZE = 64

CHILD = r'''
import gc, json, os, sys, threading, time
import torch
from torch import nn
from torch.utils.data import Dataset
from lingerlab import gradcam, lingering, source_class_counts
from lingerlab._data import batches

torch.set_num_threads(1)
n, size = int(sys.argv[1]), int(sys.argv[2])


class Lazy(Dataset):
    """Item i rendered from its index when read: the dataset holds no pixels."""
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, size, size, generator=g), i % 10


torch.manual_seed(0)
def cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1000)).eval()
ms, mst = cnn(), cnn()


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))


try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    def reset():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    def peak():
        return max(hwm(), rss())
    method = "VmHWM"
except OSError:
    state = {"max": rss()}
    def sample():
        while True:
            state["max"] = max(state["max"], rss())
            time.sleep(0.002)
    threading.Thread(target=sample, daemon=True).start()
    def reset():
        state["max"] = rss()
    def peak():
        return max(state["max"], rss())
    method = "sampled"


def leak(data):  # the control: keeps every input batch
    kept = [x for x, _ in batches(data, 64)]
    return len(kept)


passes = {
    "eq1": lambda d: source_class_counts(ms, d, batch_size=64),
    "eq3": lambda d: lingering(mst, d, range(10), p_lo=0.01, source_model=ms, batch_size=64),
    "maps": lambda d: gradcam(ms, d, [0] * len(d), layer="2", batch_size=64),
    "leak": leak,
}
for f in passes.values():  # warm-up: one-off allocations land before the measurement
    f(Lazy(128))
out = {"method": method}
for name, f in passes.items():
    gc.collect()
    reset()
    res = f(Lazy(n))
    out[name] = peak()
    out[name + "_out"] = res.numel() * res.element_size() if isinstance(res, torch.Tensor) else 0
    del res
print("JSON " + json.dumps(out))
'''


def _peaks(n: int) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    # A fixed mmap threshold makes glibc return every freed buffer of 64 kB or more to the OS at
    # once, so the RSS shows what the pass holds, not heap fragmentation (without it, the maps pass
    # measured 30 MB above its two copies of the maps at 4N, in a heap of 1 MB chunks).
    env = {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(SIZE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, f"child for N = {n} failed:\n{res.stderr[-3000:]}"
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("JSON ")][-1]
    return json.loads(line[5:])


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read the RSS")
def test_peak_memory_flat_from_n_to_4n():
    small, large = _peaks(N), _peaks(4 * N)
    mb = 2**20
    grow = {k: (large[k] - small[k]) / mb for k in ("eq1", "eq3", "maps", "leak")}
    report = ", ".join(f"{k} {small[k] / mb:.0f} -> {large[k] / mb:.0f} MB ({grow[k]:+.0f})" for k in grow)
    leak_mb = 3 * N * 3 * SIZE * SIZE * 4 / mb
    assert grow["leak"] > TOL_MB, (
        f"the control that keeps all {4 * N} inputs ({leak_mb:.0f} MB more than for {N}) grew by only "
        f"{grow['leak']:.0f} MB: the peak-RSS measurement ({small['method']}) does not see tensor memory. {report}"
    )
    for k in ("eq1", "eq3"):
        assert grow[k] <= TOL_MB, (
            f"{k}: peak RSS over {4 * N} images is {grow[k]:.0f} MB above the peak over {N} (allowed {TOL_MB} MB): "
            f"the pass keeps something per image instead of streaming. {report}"
        )
    # gradcam returns one map per image: the maps it was asked for may grow, twice (the per-batch
    # chunks and their torch.cat coexist for a moment), nothing else.
    maps_mb = 2 * (large["maps_out"] - small["maps_out"]) / mb
    assert grow["maps"] <= maps_mb + TOL_MB, (
        f"maps: peak RSS over {4 * N} images is {grow['maps']:.0f} MB above the peak over {N}; allowed: "
        f"2 x the {maps_mb / 2:.0f} MB of extra maps returned + {TOL_MB} MB. {report}"
    )
