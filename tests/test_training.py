"""finetune / train_scratch by a recipe: determinism, the on-disk cache, BatchNorm policy, freezing,
validation; predict / evaluate; precise BatchNorm statistics."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.identities import callable_key
from lingerlab.inference import CPU_EVAL_BATCH, EVAL_BATCH, eval_batch_size, evaluate, precise_bn_statistics, predict
from lingerlab.models import Normalized
from lingerlab.recipe import Recipe
from lingerlab.training import finetune, train_scratch


class Tiny(nn.Module):
    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


def make_tiny() -> nn.Module:
    return Normalized(Tiny(2), (0.5,) * 3, (0.25,) * 3)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 2
    x = torch.rand(48, 3, 8, 8, generator=g) * 0.5 + y.view(-1, 1, 1, 1) * 0.4  # class 1 is brighter
    return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(1)
    return Normalized(Tiny(4), (0.5,) * 3, (0.25,) * 3).eval()


_CALLS: list[int] = []


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


R = Recipe("t", lr=0.05, epochs=3, batch_size=8)
KW = dict(num_classes=2, progress=False, device="cpu")


def test_finetune_is_deterministic_and_cached(source, data, tmp_path):
    train, val = data
    m1, h1 = finetune(source, train, val, R, cache=False, **KW)
    m2, h2 = finetune(source, train, val, R, cache=False, **KW)
    assert _same(m1, m2)
    pd.testing.assert_frame_equal(h1.drop(columns=["epoch_s", "wall_s"]), h2.drop(columns=["epoch_s", "wall_s"]))
    cold, hc = finetune(source, train, val, R, **KW)  # fills the cache
    warm, hw = finetune(source, train, val, R, **KW)  # reads it
    assert _same(cold, m1) and _same(warm, cold)
    pd.testing.assert_frame_equal(hc, hw)
    assert str(hc) == str(hw)  # prints the same, warm or cold
    assert list(hc.columns) == ["train_loss", "train_acc", "val_acc", "epoch_s", "wall_s"]
    assert list(hc.index) == [1, 2, 3] and (hc["wall_s"].diff().dropna() > 0).all()
    assert any((tmp_path / "cache" / "finetune").iterdir())
    assert not warm.training and warm.model.fc.out_features == 2
    assert source.model.fc.out_features == 4  # the source is untouched
    # CNNs train in channels_last; the trained model comes back in the layout a cached one has, so a
    # cold and a warm run give bit-identical outputs (notebook outputs do not depend on the cache)
    assert all(p.is_contiguous() for p in cold.parameters())
    x = val.tensors[0]
    assert torch.equal(cold(x), warm(x))


def test_seed_and_hyperparameters_change_the_result(source, data):
    train, val = data
    a, _ = finetune(source, train, val, R, seed=0, **KW)
    b, _ = finetune(source, train, val, R, seed=1, **KW)
    c, _ = finetune(source, train, val, R.replace(lr=0.01), seed=0, **KW)
    assert not _same(a, b) and not _same(a, c)


def test_bn_freeze_keeps_running_stats(source, data):
    train, val = data
    frozen, _ = finetune(source, train, val, R.replace(bn="freeze"), **KW)
    updated, _ = finetune(source, train, val, R.replace(bn="update"), **KW)
    s = source.model.bn
    assert torch.equal(frozen.model.bn.running_mean, s.running_mean)
    assert torch.equal(frozen.model.bn.running_var, s.running_var)
    assert not torch.equal(updated.model.bn.running_mean, s.running_mean)
    assert not torch.equal(frozen.model.bn.weight, s.weight)  # affine weights still train


def test_freeze_prefixes(source, data):
    train, val = data
    m, _ = finetune(source, train, val, R.replace(freeze=("conv", "model.bn")), **KW)
    assert torch.equal(m.model.conv.weight, source.model.conv.weight)
    assert torch.equal(m.model.bn.weight, source.model.bn.weight)
    assert not torch.equal(m.model.fc.weight[:2], source.model.fc.weight[:2])
    with pytest.raises(ValueError, match="freeze prefix 'nope'.*model.conv"):
        finetune(source, train, val, R.replace(freeze=("nope",)), **KW)


def test_extra_loss_and_augment_are_part_of_the_key(source, data):
    train, val = data
    calls = _CALLS  # a module global: closure contents are part of a callable's identity

    def l1(model, x, y):
        _CALLS.append(len(x))
        return 1e-2 * sum(p.abs().sum() for p in model.parameters())

    def flip(x, g):
        return x.flip(-1) if torch.rand(1, generator=g) < 0.5 else x

    base, _ = finetune(source, train, val, R, **KW)
    reg, _ = finetune(source, train, val, R.replace(extra_loss=l1), **KW)
    assert calls and not _same(base, reg)
    n = len(calls)
    again, _ = finetune(source, train, val, R.replace(extra_loss=l1), **KW)  # cached: l1 not called again
    assert len(calls) == n and _same(again, reg)
    aug, _ = finetune(source, train, val, R.replace(augment=flip), **KW)
    assert not _same(aug, base)
    # a captured hyper-parameter is part of a callable's identity
    assert callable_key(functools.partial(pow, 2)) != callable_key(functools.partial(pow, 3))
    w1, w2 = 0.1, 0.2
    f1 = lambda m, x, y: w1 * x.sum()  # noqa: E731
    f2 = lambda m, x, y: w2 * x.sum()  # noqa: E731
    assert callable_key(f1) != callable_key(f2)
    assert callable_key(None) is None and callable_key(f1) == callable_key(f1)


def test_an_unhashable_callable_is_refused_before_training(source, data):
    train, val = data

    class Opaque:  # no cache_key, not plain data: its identity cannot be hashed without a memory address
        pass

    thing = Opaque()

    def loss(model, x, y):
        return 0.0 * x.sum() if thing else x.sum()

    with pytest.raises(TypeError, match="Opaque.*cache_key"):
        finetune(source, train, val, R.replace(extra_loss=loss), **KW)


def test_layout_is_an_argument_and_part_of_the_key(source, data):
    train, val = data
    r1 = R.replace(epochs=1)
    cl, h_cl = finetune(source, train, val, r1, **KW)  # default: channels_last
    cl2, h_cl2 = finetune(source, train, val, r1, layout="channels_last", **KW)
    nc, h_nc = finetune(source, train, val, r1, layout="contiguous", **KW)
    assert h_cl.attrs["cache_key"] == h_cl2.attrs["cache_key"] != h_nc.attrs["cache_key"]
    assert _same(cl, cl2)
    x = val.tensors[0]
    assert torch.allclose(cl(x), nc(x), atol=1e-4)  # the same run up to rounding
    assert torch.allclose(predict(nc, x, layout="contiguous")[0], predict(nc, x)[0], atol=1e-5)
    for bad in (
        lambda: predict(nc, x, layout="nhwc"),
        lambda: evaluate(nc, val, layout="nhwc"),
        lambda: train_scratch(make_tiny, train, val, r1, layout="nhwc", progress=False, device="cpu"),
    ):
        with pytest.raises(ValueError, match="layout"):
            bad()


def test_predict_does_not_depend_on_the_batch_size(source, data):
    x = torch.cat([data[0].tensors[0], data[1].tensors[0]])  # 48 images
    ref = torch.cat([source(x[i : i + 1]) for i in range(len(x))]).detach()  # one image at a time
    for bs in (None, 1, 5, 32, 256):
        assert torch.allclose(predict(source, x, batch_size=bs)[0], ref, atol=1e-5)
    assert evaluate(source, data[1], batch_size=3) == evaluate(source, data[1])
    assert eval_batch_size("cpu") == eval_batch_size(None) == CPU_EVAL_BATCH
    assert eval_batch_size(torch.device("cuda", 0)) == eval_batch_size("mps") == EVAL_BATCH
    assert predict(source, x, batch_size=__import__("numpy").int64(7))[0].shape == (48, 4)  # NumPy ints accepted
    for bad, err in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="batch_size"):
            predict(source, x, batch_size=bad)


def test_train_subset(source, data):
    train, val = data
    sub, h = finetune(source, train, val, R.replace(train_subset=range(16)), **KW)
    full, h_full = finetune(source, train, val, R, **KW)
    assert not _same(sub, full)
    # every index in order is no subset: the same run under the same cache key (arms.Zoo.matched's
    # first try is the competent baseline itself, trained once)
    every, h_every = finetune(source, train, val, R.replace(train_subset=range(len(train))), **KW)
    assert _same(every, full) and h_every.attrs["cache_key"] == h_full.attrs["cache_key"]
    shuffled, h_shuffled = finetune(source, train, val, R.replace(train_subset=range(len(train))[::-1]), **KW)
    assert h_shuffled.attrs["cache_key"] != h_full.attrs["cache_key"]
    with pytest.raises(ValueError, match="train_subset"):
        finetune(source, train, val, R.replace(train_subset=(0, 99)), **KW)


def test_train_scratch(data):
    train, val = data
    r = Recipe("s", init="scratch", lr=0.05, epochs=5, batch_size=8, optimizer="adam")
    kw = dict(progress=False, device="cpu")
    a, ha = train_scratch(make_tiny, train, val, r, **kw)
    b, hb = train_scratch(make_tiny, train, val, r, **kw)
    c, _ = train_scratch(make_tiny, train, val, r, cache=False, **kw)
    assert _same(a, b) and _same(a, c)
    pd.testing.assert_frame_equal(ha, hb)
    assert evaluate(a, val) == pytest.approx(ha["val_acc"].iloc[-1])
    assert evaluate(a, val) >= 0.8
    d, _ = train_scratch(make_tiny, train, val, r, seed=3, **kw)
    assert not _same(a, d)
    e, _ = train_scratch(make_tiny, train, val, r.replace(lr_schedule="cosine"), **kw)
    assert not _same(a, e)


def test_progress_goes_to_stderr(source, data, capsys):
    train, val = data
    finetune(source, train, val, R.replace(epochs=1), cache=False, **{**KW, "progress": True})
    out = capsys.readouterr()
    assert out.out == "" and "finetune" in out.err


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"lr": 0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"bn": "eval"}, "bn"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_recipe_errors(bad, word):
    """The recipe validates its fields once, when it is made."""
    with pytest.raises(ValueError, match=word):
        R.replace(**bad)


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"device": "gpu"}, "device"),
        ({"layout": "bogus"}, "layout"),
        ({"seed": -1}, "seed"),
    ],
)
def test_run_errors(source, data, bad, word):
    train, val = data
    with pytest.raises(ValueError, match=word):
        finetune(source, train, val, R, **{**KW, **bad})
    with pytest.raises(TypeError, match="recipe"):
        finetune(source, train, val, {"lr": 0.05}, **KW)


def test_cache_key_follows_the_recipe_fields():
    """Every field that shapes the weights is in the key; names, descriptions and workers are not."""
    key = R.cache_key()
    assert key == R.replace(name="other", description="x", num_workers=2).cache_key()
    assert {"lr", "epochs", "optimizer", "bn", "freeze", "augment", "extra_loss", "precise_bn"} <= set(key)
    assert not {"name", "description", "train_subset", "num_workers"} & set(key)
    assert key["momentum"] == 0.9 and R.replace(optimizer="adam").cache_key()["momentum"] is None
    assert R.replace(freeze=("b", "a")).cache_key()["freeze"] == ["a", "b"]
    assert R.replace(freeze="conv").freeze == ("conv",)


def test_world_as_source(source, data):
    train, val = data

    class W:
        source_model = source

    a, _ = finetune(W(), train, val, R, **KW)
    b, _ = finetune(source, train, val, R, **KW)
    assert _same(a, b)
    with pytest.raises(ValueError, match="model_or_source"):
        finetune("resnet", train, val, R, **KW)


def test_validation_schedule_never_changes_the_weights(source, data):
    train, val = data
    kw = {**KW, "cache": False}
    r5 = R.replace(epochs=5)
    every, default, once = (finetune(source, train, val, r5, val_every=v, **kw) for v in (1, None, 5))
    assert _same(every[0], default[0]) and _same(every[0], once[0])
    assert every[1]["val_acc"].notna().all()
    assert list(default[1]["val_acc"].notna()) == [False, True, False, True, True]  # every 2nd and the last
    assert list(once[1]["val_acc"].notna()) == [False, False, False, False, True]
    assert once[1]["val_acc"].iloc[-1] == every[1]["val_acc"].iloc[-1]
    with pytest.raises(ValueError, match="val_every"):
        finetune(source, train, val, r5, val_every=0, **kw)


def test_precise_bn_statistics_are_the_mean_of_batch_statistics():
    """Wu & Johnson (2021): the running mean becomes the mean of the batch means (equal batches: the
    data mean), the running variance the mean of the unbiased batch variances; weights, momentum and
    training flags are left as they were; a trailing batch of one is skipped."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(65, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + 5
    net = nn.Sequential(nn.BatchNorm2d(3, momentum=0.3), nn.Conv2d(3, 2, 1))
    net.eval()
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    precise_bn_statistics(
        net, TensorDataset(x, torch.zeros(65, dtype=torch.long)), batch_size=16, device="cpu", layout="contiguous"
    )
    bn = net[0]
    batches = x[:64].split(16)
    want_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    want_var = torch.stack([b.transpose(0, 1).flatten(1).var(1, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, want_var, atol=1e-4)
    assert bn.momentum == 0.3 and not net.training and not bn.training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())


def test_precise_bn_replaces_the_lagging_running_average(data):
    """After four steps at momentum 0.1 the running mean is a third of the way to the data; with
    precise_bn=True it is the mean of the BatchNorm layer's input over the training images (weights
    barely move at lr 1e-9); bn='freeze' with it, or a non-bool, is refused."""
    train, val = data
    r = Recipe("s", init="scratch", epochs=1, lr=1e-9, batch_size=8, optimizer="adam")
    kw = dict(seed=0, cache=False, progress=False, device="cpu", layout="contiguous")
    m0, _ = train_scratch(make_tiny, train, val, r, **kw)
    m1, _ = train_scratch(make_tiny, train, val, r.replace(precise_bn=True), **kw)
    seen = []
    hook = m1.model.bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    with torch.no_grad():
        m1(train.tensors[0])
    hook.remove()
    want = seen[0].mean((0, 2, 3))
    assert torch.allclose(m1.model.bn.running_mean, want, atol=1e-5)
    assert not torch.allclose(m0.model.bn.running_mean, want, atol=1e-2)
    with pytest.raises(ValueError, match="precise_bn"):
        r.replace(bn="freeze", precise_bn=True)
    with pytest.raises(TypeError, match="precise_bn"):
        r.replace(precise_bn="yes")
    with pytest.raises(ValueError, match="batch_size >= 2"):  # in the recipe, not after the last epoch
        r.replace(precise_bn=True, batch_size=1)
