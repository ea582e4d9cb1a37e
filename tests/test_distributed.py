"""Sharding the batched passes across processes (lingerlab.distributed): one process gives the same
numbers as two.

The 2-process run is real: ``python -m torch.distributed.run --nproc-per-node 2`` on this file, on
the CPU with the gloo backend, over loopback only (127.0.0.1, a free port). Each process runs Eq. 1
counts, Eq. 3 class means (and the lingering table) and Grad-CAM maps on the same small
deterministic CNN and data (N odd, so the shards are unequal) and writes what it got; the test
compares both processes' results with this process's single-process ones: counts exactly, means
and maps within 1e-6, maps in the same order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lingerlab import distributed as D
from lingerlab.attribution import gradcam
from lingerlab.features import source_class_counts
from lingerlab.lingering import class_mean_probs, lingering

N, C, SIZE, K, BS = 37, 7, 16, 2, 8
LAYER = "features"
TOL = 1e-6


# --------------------------------------------------------------------------- shared fixtures


class PlainDataset(Dataset):
    """A map-style dataset that is not a TensorDataset (so sharding goes through Subset)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def make_model() -> nn.Module:
    """A small CNN whose top-k classes vary from image to image: the pooled features are
    standardised (BatchNorm1d with statistics of calibration images) before the classifier."""
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.BatchNorm2d(16),
    )
    m = nn.Sequential()
    m.add_module("features", features)
    m.add_module("act", nn.ReLU())
    m.add_module("pool", nn.AdaptiveAvgPool2d(1))
    m.add_module("flat", nn.Flatten())
    m.add_module("norm", nn.BatchNorm1d(16))
    m.add_module("fc", nn.Linear(16, C))
    m.eval()
    with torch.no_grad():
        for bn in (features[1], features[4]):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        calib = torch.rand(64, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
        f = m.flat(m.pool(m.act(features(calib))))
        m.norm.running_mean.copy_(f.mean(0))
        m.norm.running_var.copy_(f.var(0))
        m.fc.bias.zero_()
    return m


def make_data(n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    t = torch.randint(0, C, (n,), generator=g)
    return x, y, t


def compute() -> dict[str, torch.Tensor]:
    """Every pass under test, on the shared model and data (run alike by 1 and by 2 processes)."""
    model = make_model()
    x, y, t = make_data()
    tds, pds = TensorDataset(x, y), PlainDataset(x, y)
    out: dict[str, torch.Tensor] = {}
    out["counts_tensor"] = source_class_counts(model, x, k=K, batch_size=BS)
    out["counts_tds"] = source_class_counts(model, tds, k=K, batch_size=BS)
    out["counts_plain"] = source_class_counts(model, pds, k=K, batch_size=BS)
    out["counts_loader"] = source_class_counts(model, DataLoader(tds, batch_size=5), k=K, batch_size=BS)
    out["counts_one"] = source_class_counts(model, x[:1], k=K)  # the second process's shard is empty
    for name, data in (("tds", tds), ("plain", pds)):
        means, counts = class_mean_probs(model, data, batch_size=BS)
        out[f"means_{name}"], out[f"nimg_{name}"] = means, counts
    table = lingering(model, tds, list(range(C)), p_lo=0.2, source_model=make_model(), batch_size=BS)
    out["table_p_st"] = torch.as_tensor(table["p_st"].to_numpy().copy())
    out["table_n"] = torch.as_tensor(table["n_images"].to_numpy().copy())
    out["maps_tensor"] = gradcam(model, x, t, LAYER, batch_size=BS)
    out["maps_whole"] = gradcam(model, x, t, LAYER)  # batch_size=None: each process's shard at once
    out["maps_dataset"] = gradcam(model, PlainDataset(x, t), t, LAYER, batch_size=BS)
    out["maps_one"] = gradcam(model, x[:1], t[:1], LAYER)
    return out


# --------------------------------------------------------------------------- the worker (torchrun runs this file)


def _worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    assert D.init_from_env(backend="gloo"), "expected a 2-process group"
    r, w = D.rank(), D.world_size()
    assert w == 2
    checks: dict[str, object] = {"rank": r, "world_size": w}
    # all_gather_cat: contiguous shards of unequal length (19 + 18), back in order
    idx = D.shard_indices(N)
    checks["shard"] = list(idx)
    full = torch.arange(N, dtype=torch.float32)[:, None] * torch.tensor([1.0, -1.0])
    checks["gather_contiguous"] = D.all_gather_cat(full[idx.start : idx.stop], N)
    # ... one rank holding everything of a bool tensor, the other nothing
    flags = torch.arange(5) % 2 == 0
    checks["gather_bool"] = D.all_gather_cat(flags if r == 0 else flags[:0], 5)
    # all_reduce_sum: exact for int64
    checks["reduce"] = D.all_reduce_sum(torch.tensor([r + 1, 10 * (r + 1)], dtype=torch.long))

    # an error on one rank reaches both, instead of a hang in the next collective
    def fail_on_1() -> int:
        if r == 1:
            raise ValueError("boom on rank 1")
        return 0

    try:
        D.run_local(fail_on_1)
        checks["error"] = "none"
    except ValueError as e:
        checks["error"] = f"ValueError: {e}"
    except RuntimeError as e:
        checks["error"] = f"RuntimeError: {e}"
    checks["results"] = compute()
    torch.save(checks, Path(out_dir) / f"rank{r}.pt")
    torch.distributed.destroy_process_group()


# --------------------------------------------------------------------------- tests


def test_shard_indices_every_index_once() -> None:
    for n in range(0, 23):
        for w in range(1, 6):
            parts = [D.shard_indices(n, r, w) for r in range(w)]
            flat = [i for p in parts for i in p]
            assert flat == list(range(n))  # contiguous, in rank order, each index exactly once
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1
    assert D.shard_indices(5) == range(5)  # not distributed: everything
    with pytest.raises(ValueError):
        D.shard_indices(5, 2, 2)
    with pytest.raises(TypeError):
        D.shard_indices(5.0)  # type: ignore[arg-type]


def test_helpers_are_no_ops_in_one_process() -> None:
    assert not D.is_distributed() and D.rank() == 0 and D.world_size() == 1
    t = torch.tensor([1, 2, 3])
    assert D.all_reduce_sum(t) is t and t.tolist() == [1, 2, 3]
    assert D.all_gather_cat(t, 3) is t
    with pytest.raises(ValueError):
        D.all_gather_cat(t, 4)
    x = torch.zeros(4, 3, 2, 2)
    assert D.shard_data(x) is not None and torch.equal(D.shard_data(x), x)
    with pytest.raises(ValueError, match="sequentially"):
        D.shard_data(DataLoader(TensorDataset(x), batch_size=2, shuffle=True))
    assert not D.init_from_env()  # no launcher environment: nothing to do


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    loopback = "lo0" if sys.platform == "darwin" else "lo"
    env = dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", loopback),
    )
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        __file__,
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def single() -> dict[str, torch.Tensor]:
    return compute()


def test_collectives_with_unequal_shards(two_process_results) -> None:
    full = torch.arange(N, dtype=torch.float32)[:, None] * torch.tensor([1.0, -1.0])
    for r, res in enumerate(two_process_results):
        assert res["rank"] == r and res["world_size"] == 2
        assert res["shard"] == list(D.shard_indices(N, r, 2))
        assert len(res["shard"]) == (19 if r == 0 else 18)
        assert torch.equal(res["gather_contiguous"], full)
        assert res["gather_bool"].dtype == torch.bool
        assert res["gather_bool"].tolist() == [True, False, True, False, True]
        assert res["reduce"].tolist() == [3, 30]
    assert two_process_results[1]["error"] == "ValueError: boom on rank 1"
    assert two_process_results[0]["error"].startswith("RuntimeError: 1 other process(es) failed")


def test_counts_are_exactly_one_process(two_process_results, single) -> None:
    for res in two_process_results:
        got = res["results"]
        for key in ("counts_tensor", "counts_tds", "counts_plain", "counts_loader", "counts_one"):
            assert got[key].dtype == torch.long
            assert torch.equal(got[key], single[key]), key
        assert int(got["counts_tensor"].sum()) == K * N
        for key in ("nimg_tds", "nimg_plain", "table_n"):
            assert torch.equal(got[key], single[key]), key
    assert int((single["counts_tensor"] > 0).sum()) >= 5  # top-k varies over images: counts are not trivial


def test_class_means_match_one_process(two_process_results, single) -> None:
    for res in two_process_results:
        got = res["results"]
        for key in ("means_tds", "means_plain", "table_p_st"):
            a, b = got[key], single[key]
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            diff = float((a - b).abs().nan_to_num(0).max())
            assert diff <= TOL, f"{key}: {diff}"


def test_maps_match_one_process_in_order(two_process_results, single) -> None:
    for res in two_process_results:
        got = res["results"]
        for key in ("maps_tensor", "maps_whole", "maps_dataset", "maps_one"):
            a, b = got[key], single[key]
            assert a.dtype == torch.float32 and a.shape == b.shape, key
            diff = float((a - b).abs().max())
            assert diff <= TOL, f"{key}: {diff}"
    # the order is the images' order, not an artefact of equal maps: distinct images differ
    m = single["maps_tensor"]
    assert float((m[0] - m[1]).abs().max()) > 1e-2


if __name__ == "__main__":
    _worker(sys.argv[1])
