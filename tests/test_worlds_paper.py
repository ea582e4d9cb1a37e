"""The ``paper`` and ``custom`` worlds on tiny fixtures laid out like the real downloads (no network)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet18

from lingerlab.models import Normalized
from lingerlab.inference import evaluate
from lingerlab.training import finetune, train_scratch
from lingerlab.worlds import World, load_world
from lingerlab.worlds.custom import ImageFiles
from lingerlab.worlds.paper import imagenet_wnids, resnet18_source_model, resnet18_weights_path

SIZE = 32


def _photo(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _odd_files(folder: Path, stem) -> None:
    """A corrupt JPEG, a greyscale JPEG, a CMYK JPEG and an RGBA PNG, named by ``stem(i)``."""
    (folder / stem(90, "jpg")).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    _photo(91).convert("L").save(folder / stem(91, "jpg"))
    _photo(92).convert("CMYK").save(folder / stem(92, "jpg"))
    _photo(93).convert("RGBA").save(folder / stem(93, "png"))


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kaggle")
    train = root / "train"
    train.mkdir()
    for c in ("cat", "dog"):
        for i in range(6):
            _photo(hash((c, i)) % 1000).save(train / f"{c}.{i}.jpg")
    _odd_files(train, lambda i, ext: f"cat.{i}.{ext}")
    (root / "test1").mkdir()
    _photo(5).save(root / "test1" / "1.jpg")
    return root


@pytest.fixture(scope="module")
def microsoft(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ms")
    for c in ("Cat", "Dog"):
        d = root / "PetImages" / c
        d.mkdir(parents=True)
        for i in range(6):
            _photo(100 + hash((c, i)) % 1000).save(d / f"{i}.jpg")
        _odd_files(d, lambda i, ext: f"{i}.{ext}")
    (root / "PetImages" / "Cat" / "Thumbs.db").write_bytes(b"junk")
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> dict[str, Path]:
    wnids = imagenet_wnids()
    roots = {}
    for layout in ("imagefolder", "val", "v2"):
        root = tmp_path_factory.mktemp(layout)
        for cid in (1, 7, 281):
            name = str(cid) if layout == "v2" else wnids[cid]
            d = (root / "val" / name) if layout == "val" else (root / name)
            d.mkdir(parents=True)
            for i in range(3):
                _photo(cid * 10 + i).save(d / f"img_{i}.{'jpeg' if layout == 'v2' else 'JPEG'}")
        roots[layout] = root
    return roots


@pytest.fixture(scope="module")
def tiny_source() -> nn.Module:
    torch.manual_seed(0)
    return Normalized(resnet18(num_classes=1000)).eval()


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LINGERLAB_DOGSCATS", raising=False)
    monkeypatch.delenv("LINGERLAB_IMAGENET", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache


def _paper(root, imagenet_root, source, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        world = load_world(
            "paper",
            "smoke",
            source_model=source,
            dogscats_root=root,
            imagenet_root=imagenet_root,
            image_size=SIZE,
            n_train=6,
            n_val=4,
            dc_per_class=2,
            device="cpu",
            **kw,
        )
    return world, [str(x.message) for x in w]


@pytest.mark.parametrize("layout", ["kaggle", "microsoft"])
def test_paper_world_on_both_layouts(layout, kaggle, microsoft, imagenet, tiny_source):
    root = kaggle if layout == "kaggle" else microsoft
    world, msgs = _paper(root, imagenet["imagefolder"], tiny_source)
    prov = world.spec.provenance
    assert isinstance(world, World) and world.name == "paper" and prov["dogscats_layout"] == layout
    skipped = [m for m in msgs if "skipped" in m and "Dogs-vs-Cats" in m]
    n_bad = 1 if layout == "kaggle" else 2  # the corrupt JPEG(s); Thumbs.db is not an image file at all
    assert len(skipped) == 1 and f"skipped {n_bad} unreadable" in skipped[0]
    assert len(prov["skipped_files"]) == n_bad
    assert all(p.endswith("90.jpg") for p in prov["skipped_files"])
    assert len(world.target_train) == 6 and len(world.target_val) == 4
    assert sorted(set(world.target_train.targets)) == [0, 1] and world.target_classes == ["cat", "dog"]
    assert world.source_classes[281] == "tabby" and len(world.source_classes) == 1000
    assert sorted(set(world.source_data.targets)) == [1, 7, 281] and len(world.source_data) == 6
    # lazy datasets: file paths, not tensors
    assert isinstance(world.target_train, ImageFiles) and not hasattr(world.target_train, "tensors")
    x, y = world.target_train[0]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert world.spec.recipes["M^t"].head == "model.fc" and world.fingerprint
    assert world.make_scratch().eval()(x[None]).shape == (1, 2)


def test_odd_images_are_converted_to_rgb(kaggle):
    train = kaggle / "train"
    files = [train / "cat.91.jpg", train / "cat.92.jpg", train / "cat.93.png"]
    assert [Image.open(p).mode for p in files] == ["L", "CMYK", "RGBA"]
    ds = ImageFiles(files, [0, 0, 0], SIZE, root=kaggle)
    for i in range(3):
        assert ds[i][0].shape == (3, SIZE, SIZE)


def test_split_and_fingerprint_are_seeded(kaggle, imagenet, tiny_source):
    a, _ = _paper(kaggle, imagenet["imagefolder"], tiny_source)
    b, _ = _paper(kaggle, imagenet["imagefolder"], tiny_source)
    assert a.target_train.paths == b.target_train.paths and a.fingerprint == b.fingerprint
    c = load_world(
        "paper",
        "smoke",
        seed=1,
        source_model=tiny_source,
        dogscats_root=kaggle,
        imagenet_root=imagenet["imagefolder"],
        image_size=SIZE,
        n_train=6,
        n_val=4,
        device="cpu",
    )
    assert c.fingerprint != a.fingerprint
    assert not set(a.target_train.paths) & set(a.target_val.paths)


@pytest.mark.parametrize(
    "layout, name", [("imagefolder", "imagefolder"), ("val", "imagenet-val"), ("v2", "imagenetv2")]
)
def test_imagenet_layouts(layout, name, kaggle, imagenet, tiny_source):
    world, _ = _paper(kaggle, imagenet[layout], tiny_source)
    assert world.spec.provenance["imagenet_layout"] == name
    assert sorted(set(world.source_data.targets)) == [1, 7, 281]


def test_env_vars(kaggle, imagenet, tiny_source, monkeypatch):
    monkeypatch.setenv("LINGERLAB_DOGSCATS", str(kaggle))
    monkeypatch.setenv("LINGERLAB_IMAGENET", str(imagenet["v2"]))
    world = load_world("paper", "smoke", source_model=tiny_source, image_size=SIZE, n_train=4, n_val=2, device="cpu")
    assert world.spec.provenance["dogscats_layout"] == "kaggle"


def test_missing_data_says_what_to_download(tmp_path, kaggle, imagenet, tiny_source):
    with pytest.raises(FileNotFoundError, match="LINGERLAB_DOGSCATS.*kaggle.com.*PetImages"):
        load_world("paper", source_model=tiny_source, imagenet_root=imagenet["v2"])
    with pytest.raises(FileNotFoundError, match="LINGERLAB_IMAGENET.*ImageNetV2"):
        load_world("paper", source_model=tiny_source, dogscats_root=kaggle)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_world("paper", source_model=tiny_source, dogscats_root=tmp_path / "nowhere", imagenet_root=imagenet["v2"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="neither layout"):
        load_world("paper", source_model=tiny_source, dogscats_root=empty, imagenet_root=imagenet["v2"])
    with pytest.raises(ValueError, match="n_train"):
        load_world(
            "paper", source_model=tiny_source, dogscats_root=kaggle, imagenet_root=imagenet["v2"], n_train=100, n_val=4
        )


@pytest.fixture
def no_network(monkeypatch):
    """Every way out (urllib, torch.hub, raw sockets, DNS) raises and is recorded."""
    import socket
    import urllib.request

    import torch.hub

    calls: list[str] = []

    def refuse(what):
        def f(*args, **kwargs):
            calls.append(f"{what}{args[:2]!r}")
            raise OSError(f"network access attempted in a test: {what}")

        return f

    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    monkeypatch.setattr(torch.hub, "urlopen", refuse("torch.hub.urlopen"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    return calls


WEIGHTS_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def _weights_path(tmp_path) -> Path:
    return tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_missing_weights_say_where_to_put_them(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as e:
        resnet18_source_model()  # download=False is the default
    msg = str(e.value)
    assert WEIGHTS_URL in msg and str(_weights_path(tmp_path)) in msg and "download=True" in msg
    assert resnet18_weights_path() == _weights_path(tmp_path)
    assert no_network == [] and not _weights_path(tmp_path).exists()


def test_download_true_reports_a_failed_download(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="could not be downloaded") as e:
        resnet18_source_model(download=True)
    assert WEIGHTS_URL in str(e.value) and str(_weights_path(tmp_path)) in str(e.value)
    assert no_network  # it did try


def test_cached_weights_load_without_network(tmp_path, no_network):
    path = _weights_path(tmp_path)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), path)
    model = resnet18_source_model()
    assert isinstance(model, Normalized) and model.model.fc.out_features == 1000 and no_network == []
    path.write_bytes(b"truncated")
    with pytest.raises(OSError, match="cannot be read.*delete the file"):
        resnet18_source_model()


def test_download_must_be_a_bool():
    with pytest.raises(TypeError, match="download must be True or False"):
        resnet18_source_model(download="yes")


def test_no_network_without_download(tmp_path, kaggle, imagenet, no_network):
    """download=False with nothing local: FileNotFoundErrors naming what to fetch and the exact path, no network."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:  # no data: the Dogs-vs-Cats folder is checked first
        load_world("paper", dogscats_root=empty, imagenet_root=empty)
    msg = str(e.value)
    assert "kaggle.com/c/dogs-vs-cats" in msg and "microsoft.com" in msg
    assert f"{empty}/train/cat.0.jpg" in msg and f"{empty}/PetImages/Cat/0.jpg" in msg
    with pytest.raises(FileNotFoundError) as e:  # Dogs-vs-Cats present, ImageNet folder empty
        load_world("paper", dogscats_root=kaggle, imagenet_root=empty, download=False, n_train=4, n_val=2)
    msg = str(e.value)
    assert "huggingface.co/datasets/vaishaal/ImageNetV2" in msg and f"{empty}/<class index>/*.jpeg" in msg
    with pytest.raises(FileNotFoundError) as e:  # data present, weights missing
        load_world(
            "paper",
            dogscats_root=kaggle,
            imagenet_root=imagenet["v2"],
            image_size=SIZE,
            n_train=4,
            n_val=2,
            device="cpu",
        )
    assert WEIGHTS_URL in str(e.value) and str(_weights_path(tmp_path)) in str(e.value)
    assert no_network == []


def test_missing_folders_name_the_exact_paths(tmp_path, kaggle, tiny_source):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_world("paper", source_model=tiny_source, dogscats_root=kaggle, imagenet_root=nowhere, n_train=4, n_val=2)
    assert "does not exist" in str(e.value) and f"{nowhere}/281/*.jpeg" in str(e.value)
    classes = tmp_path / "classes"
    (classes / "281").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="class folders but no images") as e:
        load_world("paper", source_model=tiny_source, dogscats_root=kaggle, imagenet_root=classes, n_train=4, n_val=2)
    assert f"{classes}/<class index>/*.jpeg" in str(e.value)


def test_allow_download_is_gone(kaggle, imagenet, tiny_source):
    with pytest.raises(ValueError, match="unknown option.*'allow_download'.*download"):
        load_world(
            "paper", source_model=tiny_source, dogscats_root=kaggle, imagenet_root=imagenet["v2"], allow_download=True
        )


def test_paper_world_trains(kaggle, imagenet, tiny_source):
    world, _ = _paper(kaggle, imagenet["imagefolder"], tiny_source)
    rt = world.spec.recipes["M^t"].replace(epochs=1, batch_size=4)
    mt, h = finetune(
        world.source_model, world.target_train, world.target_val, rt, progress=False, device="cpu", num_classes=2
    )
    assert len(h) == 1 and 0 <= evaluate(mt, world.target_val) <= 1
    mb, hb = train_scratch(
        world.make_scratch,
        world.target_train,
        world.target_val,
        world.spec.recipes["M^b"].replace(epochs=1, batch_size=4),
        progress=False,
        device="cpu",
    )
    assert len(hb) == 1


_RECIPE_KEYS = (
    "lr epochs optimizer batch_size bn lr_schedule augment head momentum weight_decay freeze num_workers".split()
)


def _check_spec(world, arch, head, cam_layer, scratch_head):
    """The spec is complete, and its recipes hold the profile's values."""
    from lingerlab.arms import recipe_table
    from lingerlab.recipe import Recipe

    spec, p = world.spec, world.profile
    modules = dict(world.source_model.named_modules())
    assert (spec.arch, spec.head, spec.cam_layer) == (arch, head, cam_layer)
    assert isinstance(modules[spec.head], nn.Linear) and (cam_layer is None or spec.cam_layer in modules)
    assert spec.input_size == p.image_size and spec.planted is None
    assert spec.comparison_arms == ("M^t", "M^b (same data)", "M^b (competent)")
    assert all(isinstance(r, Recipe) for r in spec.recipes.values())
    assert isinstance(hash(spec.recipes["M^t"]), int) and len(set(spec.recipes.values())) == 2
    assert len(recipe_table(spec.recipes.values(), len(world.target_train))) == 2
    kt, kb = vars(spec.recipes["M^t"]), vars(spec.recipes["M^b"])
    assert spec.recipes["M^t"].init == "source" and spec.recipes["M^b"].init == "scratch"
    assert {k: kt[k] for k in _RECIPE_KEYS} == dict(
        lr=p.finetune.lr,
        epochs=p.finetune.epochs,
        optimizer=p.finetune.optimizer,
        batch_size=p.finetune.batch_size,
        bn=p.finetune.bn,
        lr_schedule="constant",
        augment=None,
        head=head,
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=p.num_workers,
    )
    assert {k: kb[k] for k in _RECIPE_KEYS} == dict(
        lr=p.scratch.lr,
        epochs=p.scratch.epochs,
        optimizer="adam",
        batch_size=p.scratch.batch_size,
        bn="update",
        lr_schedule="constant",
        augment=None,
        head=scratch_head,
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=p.num_workers,
    )
    assert kt["train_subset"] is None and kb["train_subset"] is None


def test_paper_world_spec_is_complete(kaggle, imagenet, tiny_source):
    from lingerlab.models import IMAGENET_MEAN, IMAGENET_STD

    world, _ = _paper(kaggle, imagenet["imagefolder"], tiny_source)
    _check_spec(world, "ResNet-18", "model.fc", "model.layer4", scratch_head="model.fc")
    assert (world.spec.mean, world.spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert world.spec.v_lo == round(6 / 1000) and world.spec.n_composites_per_class is None
    assert set(world.spec.provenance) == {"dogscats_layout", "imagenet_layout", "skipped_files"}


# ------------------------------------------------------------------------------------------ custom


class SmallNet(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(8, n)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.fixture(scope="module")
def custom_roots(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("custom")
    for c in ("ants", "bees"):
        d = root / "target" / c
        d.mkdir(parents=True)
        for i in range(5):
            _photo(hash((c, i)) % 997).save(d / f"{i}.jpg")
    (root / "target" / "bees" / "broken.jpg").write_bytes(b"nope")
    for name in ("apple", "3"):
        d = root / "source" / name
        d.mkdir(parents=True)
        for i in range(3):
            _photo(500 + hash((name, i)) % 997).save(d / f"{i}.png")
    return root / "target", root / "source"


def test_custom_world(custom_roots):
    target_root, source_root = custom_roots
    torch.manual_seed(0)
    src = Normalized(SmallNet(5), (0.5,) * 3, (0.25,) * 3).eval()
    classes = ["apple", "banana", "cherry", "date", "elder"]
    opts = dict(source_model=src, source_classes=classes, target_root=target_root, source_root=source_root)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        world = load_world("custom", **opts, image_size=SIZE, device="cpu")
    assert world.target_classes == ["ants", "bees"]
    assert len(world.target_train) + len(world.target_val) == 10 and len(world.target_val) == 2
    assert sorted(set(world.source_data.targets)) == [0, 3]
    scratch = world.make_scratch()
    assert scratch.model.fc.out_features == 2
    assert not torch.equal(scratch.model.fc.weight[:2], src.model.fc.weight[:2])
    _check_spec(world, "SmallNet", "model.fc", None, scratch_head=None)
    assert world.spec.provenance == {
        "target_root": str(target_root),
        "source_root": str(source_root),
        "skipped_files": [str(target_root / "bees" / "broken.jpg")],
    }
    assert world.spec.given == {}
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        w2 = load_world("custom", **opts, image_size=SIZE, device="cpu", cam_layer="model.features.0")
    assert w2.spec.cam_layer == "model.features.0" and w2.spec.recipes["M^t"] == world.spec.recipes["M^t"]
    mt, _ = finetune(
        world.source_model,
        world.target_train,
        world.target_val,
        world.spec.recipes["M^t"].replace(epochs=1, batch_size=4),
        progress=False,
        device="cpu",
        num_classes=2,
    )
    mb, _ = train_scratch(
        world.make_scratch,
        world.target_train,
        world.target_val,
        world.spec.recipes["M^b"].replace(epochs=1, batch_size=4),
        progress=False,
        device="cpu",
    )
    assert mt.model.fc.out_features == 2 and mb.model.fc.out_features == 2
    # the method's first steps run on it unchanged
    from lingerlab.features import source_class_counts, source_only

    v = source_class_counts(world.source_model, world.target_train)
    assert v.shape == (5,) and int(v.sum()) == len(world.target_train)
    assert len(source_only(v, 0)) >= 1


def test_custom_world_errors(custom_roots, tmp_path):
    target_root, source_root = custom_roots
    src = Normalized(SmallNet(5)).eval()
    with pytest.raises(ValueError, match="source_model, source_classes"):
        load_world("custom", target_root=target_root, source_root=source_root)
    with pytest.raises(ValueError, match="2 names but the source model's head has 5 outputs"):
        load_world(
            "custom", source_model=src, source_classes=["a", "b"], target_root=target_root, source_root=source_root
        )
    with pytest.raises(ValueError, match="names no source class"):
        load_world(
            "custom", source_model=src, source_classes=list("vwxyz"), target_root=target_root, source_root=source_root
        )
    with pytest.raises(FileNotFoundError, match="target_root"):
        load_world(
            "custom",
            source_model=src,
            source_classes=list("vwxyz"),
            target_root=tmp_path / "none",
            source_root=source_root,
        )
