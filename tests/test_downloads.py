"""lingerlab.downloads and load_paper(download=True) against a local HTTP server on 127.0.0.1.

The server (started and stopped by a fixture) serves fixture archives laid out like the real ones,
answers ``Range:`` requests with 206 + Content-Range, counts requests, and can cut a response short
(an interrupted download) or ignore ranges (the restart case). Every connection is checked to go to
127.0.0.1; nothing else is ever contacted.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lingerlab import downloads as dl
from lingerlab.downloads import ASSETS, ArchiveError, Asset, extract, fetch, fetch_asset
from lingerlab.models import Normalized
from lingerlab.worlds import load_world
from lingerlab.worlds.paper import imagenet_wnids, resnet18_source_model, resnet18_weights_path

SIZE = 32
MS_PATH = "/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
V2_PATH = "/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz"
WEIGHTS_PATH = "/models/resnet18-f37072fd.pth"
V2_TOP = "imagenetv2-matched-frequency-format-val"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------------------------ fixture archives


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), "RGB").save(buf, "JPEG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # stored: a flipped byte is a CRC error
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz", links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    ms = {f"PetImages/{c}/{i}.jpg": _jpeg(10 * k + i) for k, c in enumerate(("Cat", "Dog")) for i in range(4)}
    ms["PetImages/Cat/666.jpg"] = b"\xff\xd8\xff\xe0 not a jpeg"  # Microsoft's archive has unreadable files too
    ms["readme[1].txt"] = b"readme"
    ms["CDLA-Permissive-2.0.pdf"] = b"%PDF licence"
    ms_zip = _zip(ms)
    first = ms["PetImages/Cat/0.jpg"]
    at = ms_zip.index(first) + len(first) // 2
    corrupt = ms_zip[:at] + bytes([ms_zip[at] ^ 0xFF]) + ms_zip[at + 1 :]  # bad CRC-32 in one member
    kaggle = _zip(
        {f"train/{c}.{i}.jpg": _jpeg(50 + 10 * k + i) for k, c in enumerate(("cat", "dog")) for i in range(4)}
    )
    v2 = _tar(
        {
            f"{V2_TOP}/{cid}/{sha(str((cid, i)).encode())[:40]}.jpeg": _jpeg(100 + cid * 3 + i)
            for cid in (1, 7, 281)
            for i in range(2)
        }
    )
    wnids = imagenet_wnids()
    val = _tar(
        {
            f"val/{wnids[cid]}/ILSVRC2012_val_{cid * 10 + i:08d}.JPEG": _jpeg(300 + cid * 3 + i)
            for cid in (1, 7, 281)
            for i in range(2)
        },
        mode="w",
    )
    pth = io.BytesIO()
    torch.save({"w": torch.arange(1000.0)}, pth)
    blob = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    return {
        "ms": ms_zip,
        "ms_corrupt": corrupt,
        "ms_truncated": ms_zip[: len(ms_zip) // 2],
        "kaggle": kaggle,
        "v2": v2,
        "val": val,
        "pth": pth.getvalue(),
        "blob": blob,
    }


# ------------------------------------------------------------------------------------------ the local server


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut = 0  # cut the next `cut` responses short (half the body, then close)
        self.ignore_range = False  # answer 200 + the whole file to a Range request
        self.lock = threading.Lock()
        self.base = ""

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                cut = state.cut > 0
                state.cut -= cut
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and not state.ignore_range:
                m = re.fullmatch(r"bytes=(\d+)-", rng)
                assert m, rng
                start = int(m.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(chunk[: len(chunk) // 2] if cut else chunk)
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch, tmp_path):
    """Every connection must go to 127.0.0.1; no proxy, no mirror or hash from the environment."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"a test tried to connect to {address!r}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for var in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "LINGERLAB_DOWNLOAD_BASE",
        "LINGERLAB_DOGSCATS",
        "LINGERLAB_IMAGENET",
    ):
        monkeypatch.delenv(var, raising=False)
    for a in ASSETS:
        monkeypatch.delenv(f"LINGERLAB_SHA256_{dl.env_name(a)}", raising=False)
        monkeypatch.delenv(f"LINGERLAB_URL_{dl.env_name(a)}", raising=False)
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def server(archives):
    state = _State()
    state.files = {
        MS_PATH: archives["ms"],
        V2_PATH: archives["v2"],
        WEIGHTS_PATH: archives["pth"],
        "/blob.bin": archives["blob"],
        "/kaggle/train.zip": archives["kaggle"],
        "/imagenet/val.tar": archives["val"],
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or ".extracting-" in p.name)


# ------------------------------------------------------------------------------------------ fetch


def test_fetch_checks_sha256_and_a_second_call_makes_no_request(server, archives, tmp_path):
    body = archives["blob"]
    dest = tmp_path / "d" / "blob.bin"
    assert fetch(f"{server.base}/blob.bin", dest, sha256=sha(body)) == dest
    assert dest.read_bytes() == body and _leftovers(dest.parent) == [] and len(server.requests) == 1
    assert server.requests[0][1] is None  # nothing to resume: no Range
    assert fetch(f"{server.base}/blob.bin", dest, sha256=sha(body)) == dest
    assert fetch(f"{server.base}/blob.bin", dest, sha256=sha(body)[:8]) == dest  # a prefix, as torchvision checks
    assert len(server.requests) == 1


def test_wrong_hash_names_both_hashes_and_leaves_no_file(server, archives, tmp_path):
    dest = tmp_path / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(ValueError) as e:
        fetch(f"{server.base}/blob.bin", dest, sha256=wrong)
    msg = str(e.value)
    assert "blob.bin" in msg and wrong in msg and sha(archives["blob"]) in msg
    assert not dest.exists() and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="sha256 prefix mismatch.*expected deadbeef"):
        fetch(f"{server.base}/blob.bin", dest, sha256="deadbeef")
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_an_interrupted_download_resumes_with_a_range_request(server, archives, tmp_path):
    body = archives["blob"]
    server.cut = 1
    dest = fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", sha256=sha(body))  # retried within the call
    assert dest.read_bytes() == body and len(server.requests) == 2
    assert server.requests[1][1] == f"bytes={len(body) // 2}-"


def test_an_interrupted_download_resumes_on_the_next_call(server, archives, tmp_path):
    body = archives["blob"]
    dest = tmp_path / "blob.bin"
    server.cut = 1
    with pytest.raises(ConnectionError, match="interrupted|failed") as e:
        fetch(f"{server.base}/blob.bin", dest, sha256=sha(body), attempts=1)
    part = tmp_path / "blob.bin.part"
    assert "next call resumes" in str(e.value) and part.stat().st_size == len(body) // 2 and not dest.exists()
    fetch(f"{server.base}/blob.bin", dest, sha256=sha(body))
    assert server.requests[-1][1] == f"bytes={len(body) // 2}-" and len(server.requests) == 2
    assert dest.read_bytes() == body and not part.exists()


def test_a_server_that_ignores_range_restarts_cleanly(server, archives, tmp_path):
    body = archives["blob"]
    dest = tmp_path / "blob.bin"
    server.cut, server.ignore_range = 1, True
    with pytest.raises(ConnectionError):
        fetch(f"{server.base}/blob.bin", dest, sha256=sha(body), attempts=1)
    fetch(f"{server.base}/blob.bin", dest, sha256=sha(body))
    assert server.requests[-1][1] == f"bytes={len(body) // 2}-"  # it asked, got 200 + everything
    assert dest.read_bytes() == body and _leftovers(tmp_path) == []


def test_an_oversized_part_file_is_discarded(server, archives, tmp_path):
    body = archives["blob"]
    (tmp_path / "blob.bin.part").write_bytes(b"x" * (len(body) + 10))  # the server answers 416
    dest = fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", sha256=sha(body))
    assert dest.read_bytes() == body and [r for _, r in server.requests] == [f"bytes={len(body) + 10}-", None]


def test_resume_false_starts_from_zero(server, archives, tmp_path):
    body = archives["blob"]
    (tmp_path / "blob.bin.part").write_bytes(b"junk")
    fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", sha256=sha(body), resume=False)
    assert server.requests == [("/blob.bin", None)] and (tmp_path / "blob.bin").read_bytes() == body


def test_unknown_hash_is_refused_unless_allowed(server, archives, tmp_path):
    dest = tmp_path / "blob.bin"
    with pytest.raises(ValueError, match="no sha256 known.*LINGERLAB_SHA256_BLOB.*allow_unverified=True"):
        fetch(f"{server.base}/blob.bin", dest, sha256=None, name="blob")
    assert server.requests == [] and not dest.exists()
    with pytest.warns(UserWarning, match=f"unverified.*{sha(archives['blob'])}"):
        fetch(f"{server.base}/blob.bin", dest, sha256=None, allow_unverified=True)
    assert dest.read_bytes() == archives["blob"]


def test_http_errors_are_connection_errors(server, tmp_path):
    with pytest.raises(ConnectionError, match="HTTP 404"):
        fetch(f"{server.base}/missing.zip", tmp_path / "missing.zip", sha256="0" * 64)
    assert len(server.requests) == 1 and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="http:// and https://"):
        fetch("file:///etc/hostname", tmp_path / "x", sha256="0" * 64)


def test_base_url_and_env_vars(server, archives, tmp_path, monkeypatch):
    asset = Asset("my-blob", "https://files.example.invalid/blob.bin", None)
    body = archives["blob"]
    assert dl.rebase(asset.url, server.base) == f"{server.base}/blob.bin"
    assert dl.rebase(asset.url, "http://mirror:8/pre/") == "http://mirror:8/pre/blob.bin"
    with pytest.raises(ValueError, match="LINGERLAB_SHA256_MY_BLOB"):
        fetch_asset(asset, tmp_path / "a.bin", base_url=server.base)
    fetch_asset(asset, tmp_path / "a.bin", base_url=server.base, sha256=sha(body))
    monkeypatch.setenv("LINGERLAB_DOWNLOAD_BASE", server.base)
    monkeypatch.setenv("LINGERLAB_SHA256_MY_BLOB", sha(body))
    assert fetch_asset(asset, tmp_path / "b.bin").read_bytes() == body
    assert server.paths() == ["/blob.bin", "/blob.bin"]
    with pytest.raises(ValueError, match="no public URL.*LINGERLAB_URL_DOGSCATS_KAGGLE"):
        fetch_asset("dogscats-kaggle", tmp_path / "train.zip")
    monkeypatch.setenv("LINGERLAB_URL_DOGSCATS_KAGGLE", "https://elsewhere.invalid/kaggle/train.zip")
    monkeypatch.setenv("LINGERLAB_SHA256_DOGSCATS_KAGGLE", sha(archives["kaggle"]))
    assert fetch_asset("dogscats-kaggle", tmp_path / "train.zip").read_bytes() == archives["kaggle"]
    assert server.paths()[-1] == "/kaggle/train.zip"


def test_the_registry_invents_no_hash():
    from torchvision.models import ResNet18_Weights

    w = ASSETS["resnet18-imagenet1k-v1"]
    assert w.url == ResNet18_Weights.IMAGENET1K_V1.url and w.sha256 == "f37072fd" and w.filename in w.url
    assert {a.sha256 for n, a in ASSETS.items() if n != w.name} == {None}
    assert ASSETS["dogscats-microsoft"].url.endswith("kagglecatsanddogs_5340.zip")
    assert ASSETS["imagenetv2-matched-frequency"].url.endswith(V2_PATH)
    with pytest.raises(ValueError, match="hex"):
        Asset("x", "http://127.0.0.1/x", "f3707")


# ------------------------------------------------------------------------------------------ extract


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_extract_microsoft_and_imagenetv2_layouts(archives, tmp_path):
    out = extract(
        _write(tmp_path, "ms.zip", archives["ms"]), tmp_path / "dc", expect=("PetImages/Cat", "PetImages/Dog")
    )
    assert (out / "PetImages" / "Cat" / "0.jpg").read_bytes() == zipfile.ZipFile(io.BytesIO(archives["ms"])).read(
        "PetImages/Cat/0.jpg"
    )
    (tmp_path / "in").mkdir()  # an empty folder is fine
    out = extract(_write(tmp_path, "v2.tar.gz", archives["v2"]), tmp_path / "in", strip=V2_TOP)
    assert sorted(d.name for d in out.iterdir()) == ["1", "281", "7"] and len(list((out / "7").glob("*.jpeg"))) == 2
    assert _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError, match="not an empty folder"):
        extract(tmp_path / "ms.zip", tmp_path / "dc")


@pytest.mark.parametrize("which", ["ms_corrupt", "ms_truncated"])
def test_a_corrupt_archive_leaves_nothing(which, archives, tmp_path):
    archive = _write(tmp_path, "ms.zip", archives[which])
    with pytest.raises(ArchiveError, match="corrupt or truncated") as e:
        extract(archive, tmp_path / "dc")
    assert "download it again" in str(e.value)
    assert not (tmp_path / "dc").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ms.zip"]


def test_a_wrong_layout_is_refused_before_writing(archives, tmp_path):
    archive = _write(tmp_path, "k.zip", archives["kaggle"])
    with pytest.raises(ArchiveError, match="lacks PetImages/Cat.*top-level entries: train"):
        extract(archive, tmp_path / "dc", expect=("PetImages/Cat",))
    with pytest.raises(ArchiveError, match=f"no top folder '{V2_TOP}'"):
        extract(archive, tmp_path / "dc", strip=V2_TOP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.zip"]


@pytest.mark.parametrize(
    "kind, member",
    [
        ("zip", "../evil.txt"),
        ("zip", "/abs/evil.txt"),
        ("zip", "a/../../evil.txt"),
        ("zip", "C:/evil.txt"),
        ("tar", "../evil.txt"),
        ("tar", "/abs/evil.txt"),
        ("symlink", "/etc/passwd"),
        ("symlink", "../../evil"),
    ],
)
def test_path_traversal_is_refused(kind, member, tmp_path):
    ok = {"good/0.jpg": b"x"}
    if kind == "zip":
        data = _zip({**ok, member: b"evil"})
    elif kind == "tar":
        data = _tar({**ok, member: b"evil"})
    else:
        data = _tar(ok, links={"good/link": member})
    sub = tmp_path / "sub"
    sub.mkdir()
    archive = _write(sub, f"a.{'zip' if kind == 'zip' else 'tar.gz'}", data)
    with pytest.raises(ArchiveError, match="unsafe"):
        extract(archive, sub / "out")
    assert sorted(p.name for p in sub.iterdir()) == [archive.name] and not (tmp_path / "evil.txt").exists()


# ------------------------------------------------------------------------------------------ download=False


@pytest.fixture
def no_connections(monkeypatch):
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access attempted with download=False")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


class TinySource(nn.Module):
    """A 1000-way source model small enough for the end-to-end tests."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 1000)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.fixture(scope="module")
def tiny_source() -> nn.Module:
    torch.manual_seed(0)
    return Normalized(TinySource()).eval()


def _paper(dc, inet, source, **kw):
    return load_world(
        "paper",
        "smoke",
        source_model=source,
        dogscats_root=dc,
        imagenet_root=inet,
        image_size=SIZE,
        n_train=4,
        n_val=2,
        dc_per_class=2,
        device="cpu",
        progress=False,
        **kw,
    )


def test_download_false_never_connects(tmp_path, tiny_source, no_connections, server, archives, monkeypatch):
    monkeypatch.setenv("LINGERLAB_DOWNLOAD_BASE", server.base)
    with pytest.raises(FileNotFoundError, match="does not exist.*download=True"):
        _paper(tmp_path / "dc", tmp_path / "in", tiny_source)
    with pytest.raises(FileNotFoundError, match="download=False"):
        resnet18_source_model()
    blob = _write(tmp_path, "blob.bin", archives["blob"])
    assert fetch(f"{server.base}/blob.bin", blob, sha256=sha(archives["blob"])) == blob  # present: no request
    assert no_connections == [] and server.requests == []
    assert not (tmp_path / "dc").exists() and not (tmp_path / "in").exists()


# ------------------------------------------------------------------------------------------ load_paper(download=True)


def test_load_paper_downloads_microsoft_and_imagenetv2(tmp_path, server, archives, tiny_source, monkeypatch):
    monkeypatch.setenv("LINGERLAB_DOWNLOAD_BASE", server.base)
    monkeypatch.setenv("LINGERLAB_SHA256_DOGSCATS_MICROSOFT", sha(archives["ms"]))
    monkeypatch.setenv("LINGERLAB_SHA256_IMAGENETV2_MATCHED_FREQUENCY", sha(archives["v2"]))
    dc, inet = tmp_path / "data" / "dogscats", tmp_path / "data" / "imagenetv2"
    server.cut = 1  # the first response is cut short: resumed within the call
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        world = _paper(dc, inet, tiny_source, download=True)
    assert server.paths() == [MS_PATH, MS_PATH, V2_PATH]  # the real URLs' paths, on the local server
    assert server.requests[1][1] == f"bytes={len(archives['ms']) // 2}-"
    prov = world.spec.provenance
    assert prov["dogscats_layout"] == "microsoft" and prov["imagenet_layout"] == "imagenetv2"
    assert [Path(p).name for p in prov["skipped_files"]] == ["666.jpg"]
    assert any("skipped 1 unreadable" in str(x.message) for x in w)
    assert sorted(set(world.source_data.targets)) == [1, 7, 281] and len(world.target_train) == 4
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dogscats", "imagenetv2"]  # archives deleted
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        again = _paper(dc, inet, tiny_source, download=True)
    assert len(server.requests) == 3 and again.fingerprint == world.fingerprint  # a second call downloads nothing


def test_load_paper_downloads_kaggle_and_an_imagenet_val_archive(tmp_path, server, archives, tiny_source):
    kaggle = Asset("dogscats-kaggle", f"{server.base}/kaggle/train.zip", sha(archives["kaggle"]), expect=("train",))
    val = Asset("imagenet-val", "https://imagenet.example.invalid/imagenet/val.tar", None)
    (tmp_path / "in").mkdir()  # an empty folder is filled
    with pytest.warns(UserWarning, match="unverified"):
        world = _paper(
            tmp_path / "dc",
            tmp_path / "in",
            tiny_source,
            download=True,
            dogscats_asset=kaggle,
            imagenet_asset=val,
            allow_unverified=True,
            base_url=server.base,
        )
    assert server.paths() == ["/kaggle/train.zip", "/imagenet/val.tar"]
    prov = world.spec.provenance
    assert prov["dogscats_layout"] == "kaggle" and prov["imagenet_layout"] == "imagenet-val"
    assert (tmp_path / "dc" / "train" / "cat.0.jpg").is_file() and sorted(set(world.source_data.targets)) == [1, 7, 281]


def test_load_paper_refuses_unknown_hashes_before_any_request(tmp_path, server, tiny_source):
    with pytest.raises(
        ValueError,
        match="nothing was downloaded.*LINGERLAB_SHA256_DOGSCATS_MICROSOFT.*"
        "LINGERLAB_SHA256_IMAGENETV2_MATCHED_FREQUENCY",
    ):
        _paper(tmp_path / "dc", tmp_path / "in", tiny_source, download=True, base_url=server.base)
    with pytest.raises(ValueError, match="LINGERLAB_URL_IMAGENET_VAL"):
        _paper(
            tmp_path / "dc",
            tmp_path / "in",
            tiny_source,
            download=True,
            base_url=server.base,
            imagenet_asset="imagenet-val",
            allow_unverified=True,
        )
    full = tmp_path / "full"
    (full / "something").mkdir(parents=True)
    with pytest.raises(ValueError, match="exists, is not empty"):
        _paper(full, tmp_path / "in", tiny_source, download=True, base_url=server.base, allow_unverified=True)
    assert server.requests == [] and not (tmp_path / "dc").exists() and not (tmp_path / "in").exists()


def test_load_paper_corrupt_archive(tmp_path, server, archives, tiny_source, monkeypatch):
    server.files[MS_PATH] = archives["ms_corrupt"]
    monkeypatch.setenv("LINGERLAB_SHA256_DOGSCATS_MICROSOFT", sha(archives["ms_corrupt"]))
    monkeypatch.setenv("LINGERLAB_SHA256_IMAGENETV2_MATCHED_FREQUENCY", sha(archives["v2"]))
    data = tmp_path / "data"
    with pytest.raises(ArchiveError, match="Dogs-vs-Cats.*corrupt.*the archive was deleted"):
        _paper(data / "dc", data / "in", tiny_source, download=True, base_url=server.base)
    assert list(data.iterdir()) == []  # no folder, no temporary folder, no archive


def test_weights_download(tmp_path, server, monkeypatch):
    """The weights: fetched into torch hub's folder from base_url, checked against torchvision's prefix."""
    path = resnet18_weights_path()
    with pytest.raises(ValueError, match="sha256 prefix mismatch.*expected f37072fd, got"):
        resnet18_source_model(download=True, base_url=server.base)  # the fixture is not the real file
    assert not path.exists() and _leftovers(path.parent) == []
    from torchvision.models import resnet18

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in resnet18().state_dict().items()}, buf)
    server.files[WEIGHTS_PATH] = buf.getvalue()
    monkeypatch.setenv("LINGERLAB_SHA256_RESNET18_IMAGENET1K_V1", sha(buf.getvalue()))  # pin the stand-in
    model = resnet18_source_model(download=True, base_url=server.base)
    assert isinstance(model, Normalized) and path.read_bytes() == buf.getvalue()
    n = len(server.requests)
    resnet18_source_model(download=True, base_url=server.base)  # cached: no request
    assert len(server.requests) == n == 2 and server.paths() == [WEIGHTS_PATH] * 2
