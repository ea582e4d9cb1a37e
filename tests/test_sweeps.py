"""sweeps: remedy_table / size_sweep / arch_comparison on a tiny random world (schema and wiring)."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.audit import Audit
from lingerlab.models import Normalized
from lingerlab.sweeps import (REMEDY_COLUMNS, NotFeasible, Remedy, arch_comparison, default_remedies,
                              plot_remedies, remedy_arms, remedy_table, retrain_source, size_sweep,
                              summarize_remedies)
from lingerlab.worlds.base import World

matplotlib.use("Agg")


class Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MakeTiny:
    def __init__(self, n: int) -> None:
        self.n = n
        self.cache_key = ("Tiny", n)

    def __call__(self) -> nn.Module:
        return Normalized(Tiny(self.n), (0.5,) * 3, (0.25,) * 3)


@dataclass(frozen=True)
class TinyProfile:
    name: str = "smoke"
    source_lr: float = 1e-2
    source_epochs: int = 1
    source_batch_size: int = 16


def tiny_world(name: str = "tiny", retrainable: bool = True, seed: int = 0) -> World:
    g = torch.Generator().manual_seed(seed)
    n_src = 6
    torch.manual_seed(seed)
    src = MakeTiny(n_src)().eval()
    with torch.no_grad():
        src.model.fc.bias[0] = 10.0       # M^s puts class 0 first on every image: F = {1, ..., 5}
    xs = torch.rand(n_src * 6, 3, 10, 10, generator=g)
    ys = torch.arange(n_src).repeat_interleave(6)
    xs_tr = torch.rand(n_src * 8, 3, 10, 10, generator=g)
    ys_tr = torch.arange(n_src).repeat_interleave(8)
    xt = torch.rand(40, 3, 10, 10, generator=g)
    yt = torch.arange(40) % 2
    xv = torch.rand(12, 3, 10, 10, generator=g)
    yv = torch.arange(12) % 2
    extra = {"target_layer": "model.features.0", "finetune_subset": list(range(24))}
    if retrainable:
        extra["source_train"] = TensorDataset(xs_tr, ys_tr)
    return World(name=name, profile=TinyProfile() if retrainable else object(), seed=seed, source_model=src,
                 source_classes=[f"c{i}" for i in range(n_src)], source_data=TensorDataset(xs, ys),
                 target_train=TensorDataset(xt, yt), target_val=TensorDataset(xv, yv), target_classes=["a", "b"],
                 make_scratch=MakeTiny(2),
                 finetune_defaults={"num_classes": 2, "lr": 0.05, "epochs": 1, "batch_size": 8, "bn": "update"},
                 fingerprint=f"{name}-{seed}-{retrainable}", extra=extra)


def _audit(world: World) -> Audit:
    return Audit(world, v_lo=0, n_null=2, device="cpu", cache=False)


def test_remedy_table_has_documented_columns_and_one_row_per_remedy_and_seed():
    audit = _audit(tiny_world())
    table = remedy_table(audit, seeds=(0,), n_boot=50)
    assert list(table.columns) == REMEDY_COLUMNS
    names = [r.name for r in default_remedies(audit)]
    assert len(table) == len(names) and set(table["remedy"]) == set(names)
    assert table["feasible"].all()
    plain = table[table["remedy"] == "plain fine-tuning"]
    assert np.allclose(plain["time_overhead"], 1.0)
    ok = table[table["kind"] != "retrain_source"]
    for c in ("target_acc", "composite_acc", "distraction", "distraction_null"):
        assert ok[c].between(0, 1).all(), c
    assert (ok["distraction_ci_lo"] <= ok["distraction"] + 1e-12).all()
    assert (ok["distraction"] <= ok["distraction_ci_hi"] + 1e-12).all()
    assert (table["n_source_only"] == 5).all()
    assert table.loc[table["kind"] == "retrain_source", "n_lingering"].isna().all()
    assert table.loc[table["kind"].isin(["prune", "prune_finetune"]), "n_pruned"].notna().all()
    assert (table["time_overhead"] > 0).all()
    s = summarize_remedies(table)
    assert list(s["remedy"]) == names and np.isclose(s.loc[0, "d_target_acc"], 0.0)
    fig = plot_remedies(table)
    assert len(fig.axes) >= 4


def test_remedy_table_is_deterministic_and_marks_infeasible_retraining():
    audit = _audit(tiny_world(retrainable=False))
    pick = ["plain fine-tuning", "retrain source without F", "unlearning"]
    a = remedy_table(audit, remedies=pick, seeds=(0,), n_boot=50)
    b = remedy_table(_audit(tiny_world(retrainable=False)), remedies=pick, seeds=(0,), n_boot=50)
    row = a[a["remedy"] == "retrain source without F"].iloc[0]
    assert not row["feasible"] and row["note"].startswith("not feasible here")
    assert np.isnan(row["target_acc"])
    cols = ["target_acc", "composite_acc", "distraction", "n_lingering", "mean_p_st"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    with pytest.raises(NotFeasible):
        retrain_source(tiny_world(retrainable=False), [0])


def test_remedy_table_validates():
    audit = _audit(tiny_world())
    with pytest.raises(ValueError, match="remedies"):
        remedy_table(audit, remedies=["nope"], seeds=(0,))
    with pytest.raises(ValueError, match="seeds"):
        remedy_table(audit, seeds=())
    with pytest.raises(ValueError, match="kind"):
        Remedy("x", "magic")
    arms = remedy_arms(audit, ["L1 penultimate"])
    assert isinstance(arms["L1 penultimate"](0), nn.Module)


def test_size_sweep_rows_and_nested_subsets():
    audit = _audit(tiny_world())
    t = size_sweep(audit, sizes=[8, 16], seeds=(0,), n_boot=50)
    assert list(t["n_train"]) == [8, 16]
    assert {"target_acc", "composite_acc", "distraction", "n_lingering", "train_s"} <= set(t.columns)
    with pytest.raises(ValueError, match="sizes"):
        size_sweep(audit, sizes=[1000], seeds=(0,))


def test_arch_comparison_skips_worlds_that_do_not_load():
    def load(name, profile, seed, **opts):
        if name == "paper":
            raise FileNotFoundError("no ImageNet here")
        if "arch" in opts:
            raise ValueError("unknown option(s) 'arch' for world 'tiny'")
        return tiny_world()

    t = arch_comparison([("tiny", None), ("tiny", "Tiny"), ("tiny", "resnet50"), ("paper", "resnet18")], load=load,
                        audit_kwargs={"v_lo": 0, "n_null": 2, "device": "cpu", "cache": False}, n_boot=50)
    assert list(t["available"]) == [True, True, False, False]
    assert "offers only" in t.loc[2, "note"] and "ImageNet" in t.loc[3, "note"]
    assert t.loc[0, "arch"] == "Tiny" and 0 <= t.loc[0, "target_acc"] <= 1
