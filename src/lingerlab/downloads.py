"""Downloads (only when asked: ``load_paper(download=True)``): hash-checked, resumable HTTP(S) fetches
(:func:`fetch`), safe archive extraction (:func:`extract`) and the paper world's assets (:data:`ASSETS`).

An asset whose sha256 is unknown (``None``; none is invented) is refused unless the hash is passed
(``sha256=`` or ``$LINGERLAB_SHA256_<NAME>``) or ``allow_unverified=True``. A sha256 shorter than 64
hex digits is a prefix, as torch hub checks ``resnet18-f37072fd.pth``. ``base_url=`` or
``$LINGERLAB_DOWNLOAD_BASE`` replaces every URL's scheme and host (a mirror, the tests' local server);
``$LINGERLAB_URL_<NAME>`` replaces one asset's whole URL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from .http_transfer import transfer

__all__ = [
    "Asset",
    "ASSETS",
    "ArchiveError",
    "fetch",
    "fetch_asset",
    "extract",
    "rebase",
    "sha256_of",
    "asset_url",
    "asset_sha256",
    "env_name",
]

_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


class ArchiveError(ValueError):
    """An archive that cannot be unpacked: corrupt, truncated, unsafe, or not laid out as expected."""


@dataclasses.dataclass(frozen=True)
class Asset:
    """One downloadable file: ``sha256`` a full digest, a prefix (8+ hex digits) or None; ``layout`` for
    humans; for archives, ``strip`` the top folder whose contents become the target and ``expect``
    the paths it must contain."""

    name: str
    url: str | None
    sha256: str | None
    size: int | None = None
    layout: str = ""
    strip: str | None = None
    expect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _HEX.match(self.sha256):
            raise ValueError(f"asset {self.name!r}: sha256 must be 8 to 64 lowercase hex digits; got {self.sha256!r}")

    @property
    def filename(self) -> str:
        """The file name the asset is saved under (the last part of its URL, else its name)."""
        if self.url:
            tail = PurePosixPath(urllib.parse.urlsplit(self.url).path).name
            if tail:
                return tail
        return self.name


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "resnet18-imagenet1k-v1",
            "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            "f37072fd",
            layout="torchvision's ResNet-18 IMAGENET1K_V1 state dict (a torch hub checkpoint). The sha256 is the "
            "8-hex-digit prefix in the file name, which is all torchvision itself checks",
        ),
        Asset(
            "dogscats-microsoft",
            "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
            None,
            layout="Microsoft's zip (page: https://www.microsoft.com/en-us/download/details.aspx?id=54765): "
            "PetImages/Cat/<n>.jpg, PetImages/Dog/<n>.jpg (some unreadable), a readme and a licence. "
            "Its sha256 is not published: pass it or allow_unverified=True",
            expect=("PetImages/Cat", "PetImages/Dog"),
        ),
        Asset(
            "dogscats-kaggle",
            None,
            None,
            layout="Kaggle's train.zip (inside dogs-vs-cats.zip from https://www.kaggle.com/c/dogs-vs-cats/data; "
            "needs a Kaggle account, so no public URL: set LINGERLAB_URL_DOGSCATS_KAGGLE to a copy): "
            "train/cat.<n>.jpg, train/dog.<n>.jpg",
            expect=("train",),
        ),
        Asset(
            "imagenetv2-matched-frequency",
            "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
            None,
            layout="tar.gz: imagenetv2-matched-frequency-format-val/<class index>/*.jpeg (10 images for each "
            "of the 1000 classes). Its sha256 is not known here: pass it or allow_unverified=True",
            strip="imagenetv2-matched-frequency-format-val",
        ),
        Asset(
            "imagenet-val",
            None,
            None,
            layout="an archive (zip or tar) of ILSVRC2012 validation images sorted into class folders, "
            "val/<wnid>/*.JPEG or <wnid>/*.JPEG. ImageNet needs a registration "
            "(https://image-net.org/download.php), so no public URL: set LINGERLAB_URL_IMAGENET_VAL to "
            "your copy. The official flat ILSVRC2012_img_val.tar must first be sorted into class folders "
            "(torchvision.datasets.ImageNet(root, split='val') does it with the devkit)",
        ),
    )
}


def env_name(name: str) -> str:
    """``"dogscats-microsoft"`` -> ``"DOGSCATS_MICROSOFT"`` (for ``LINGERLAB_SHA256_*`` / ``LINGERLAB_URL_*``)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper()


def rebase(url: str, base_url: str | None) -> str:
    """``url`` with its scheme and host replaced by ``base_url``'s (a path in ``base_url`` is prepended)."""
    if not base_url:
        return url
    b, u = urllib.parse.urlsplit(base_url), urllib.parse.urlsplit(url)
    if not b.scheme or not b.netloc:
        raise ValueError(f"base_url must look like scheme://host[:port][/path]; got {base_url!r}")
    return urllib.parse.urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))


def asset_url(asset: Asset, base_url: str | None = None) -> str:
    """The URL to fetch ``asset`` from: ``$LINGERLAB_URL_<NAME>``, else the registry's, rebased on
    ``base_url`` (else ``$LINGERLAB_DOWNLOAD_BASE``)."""
    var = f"LINGERLAB_URL_{env_name(asset.name)}"
    url = os.environ.get(var) or asset.url
    if not url:
        raise ValueError(f"asset {asset.name!r} has no public URL ({asset.layout}): set {var} to the URL of a copy")
    return rebase(url, base_url if base_url is not None else os.environ.get("LINGERLAB_DOWNLOAD_BASE") or None)


def asset_sha256(asset: Asset, sha256: str | None = None) -> str | None:
    """The hash to check: ``sha256`` if given, else ``$LINGERLAB_SHA256_<NAME>``, else the registry's."""
    h = sha256 or os.environ.get(f"LINGERLAB_SHA256_{env_name(asset.name)}") or asset.sha256
    return h.strip().lower() if h else None


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    resume: bool = True,
    progress: bool = False,
    timeout: float = 60,
    allow_unverified: bool = False,
    size: int | None = None,
    attempts: int = 3,
    name: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (``http_transfer.transfer``) and return ``dest``.

    An existing ``dest`` with the right hash returns without network access. The sha256 (full or a
    prefix) is checked before the atomic rename; a mismatch deletes the download (ValueError).
    ``sha256=None`` is refused unless ``allow_unverified=True`` (then the actual hash is warned).
    """
    dest = Path(dest).expanduser()
    label = name or dest.name
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not _HEX.match(expected):
        raise ValueError(f"sha256 for {label} must be 8 to 64 hex digits (a full digest or a prefix); got {sha256!r}")
    if expected is None and not allow_unverified:
        var = f"LINGERLAB_SHA256_{env_name(name)}" if name else "LINGERLAB_SHA256_<NAME>"
        raise ValueError(
            f"no sha256 known for {label} ({url}), so it would be downloaded unverified: pass its "
            f"sha256 (sha256= here, or set ${var}), or pass allow_unverified=True to accept it unchecked"
        )
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1; got {attempts}")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"fetch downloads http:// and https:// URLs only; got {url!r}")
    if dest.is_file():
        if expected is None or sha256_of(dest).startswith(expected):
            return dest
        warnings.warn(f"{dest} exists but its sha256 does not match {expected}: downloading it again", stacklevel=2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    transfer(url, part, resume=resume, attempts=attempts, timeout=timeout, progress=progress, label=label, size=size)

    actual = sha256_of(part)
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise ValueError(f"{label}: downloaded {got} bytes from {url}, expected {size}; the download was deleted")
    if expected is not None and not actual.startswith(expected):
        part.unlink()
        kind = "sha256" if len(expected) == 64 else "sha256 prefix"
        raise ValueError(
            f"{kind} mismatch for {label} (from {url}): expected {expected}, got {actual}; the download was deleted"
        )
    if expected is None:
        var = f"LINGERLAB_SHA256_{env_name(name)}" if name else "sha256="
        warnings.warn(
            f"{label} was downloaded unverified from {url}: its sha256 is {actual} (pin it with {var})", stacklevel=2
        )
    os.replace(part, dest)
    return dest


def fetch_asset(
    asset: Asset | str,
    dest: str | os.PathLike,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    progress: bool = False,
) -> Path:
    """:func:`fetch` one registered asset (an :class:`Asset` or a name in :data:`ASSETS`) to ``dest``,
    with its URL from :func:`asset_url` and its hash from :func:`asset_sha256`."""
    if isinstance(asset, str):
        if asset not in ASSETS:
            raise ValueError(f"unknown asset {asset!r}; known: {', '.join(ASSETS)}")
        asset = ASSETS[asset]
    return fetch(
        asset_url(asset, base_url),
        dest,
        sha256=asset_sha256(asset, sha256),
        progress=progress,
        size=asset.size,
        name=asset.name,
    )


# ------------------------------------------------------------------------------------------ extract


def _safe_name(name: str) -> PurePosixPath:
    """The member's relative path, or ArchiveError for an absolute path, a drive or a ``..``."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in p.parts:
        raise ArchiveError(f"unsafe member {name!r} (absolute path or '..'): refusing to extract")
    return PurePosixPath(*[x for x in p.parts if x not in ("", ".")])


def _members(archive: Path) -> tuple[str, list[PurePosixPath]]:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                return "zip", [_safe_name(i.filename) for i in z.infolist()]
        if tarfile.is_tarfile(archive):
            names = []
            with tarfile.open(archive) as t:
                for m in t:
                    rel = _safe_name(m.name)
                    if m.issym() or m.islnk():
                        target = PurePosixPath(m.linkname.replace("\\", "/"))
                        joined = (rel.parent / target) if m.issym() else target
                        if m.linkname.startswith(("/", "\\")) or _escapes(joined):
                            raise ArchiveError(f"unsafe link {m.name!r} -> {m.linkname!r}: refusing to extract")
                    elif not (m.isfile() or m.isdir()):
                        raise ArchiveError(f"unsafe member {m.name!r} (device, fifo...): refusing to extract")
                    names.append(rel)
            return "tar", names
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise ArchiveError(f"archive {archive} is corrupt or truncated ({e}): delete it and download it again") from e
    raise ArchiveError(
        f"{archive} is neither a zip nor a tar archive (corrupt or truncated?): delete it and download it again"
    )


def _escapes(p: PurePosixPath) -> bool:
    depth = 0
    for part in p.parts:
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return False


def _has(names: Iterable[PurePosixPath], want: str) -> bool:
    w = PurePosixPath(want)
    return any(n == w or w in n.parents for n in names)


def extract(
    archive: str | os.PathLike, into: str | os.PathLike, *, expect: Sequence[str] = (), strip: str | None = None
) -> Path:
    """Unpack a zip or tar ``archive`` so that its contents (under top folder ``strip``) are ``into``.

    ``into`` must be absent or empty; ``expect`` lists paths it must hold. Unsafe members (absolute,
    ``..``, outside links, devices) are refused and a corrupt archive leaves nothing behind
    (:class:`ArchiveError`): it is unpacked into a temporary sibling renamed into place when complete.
    """
    archive, into = Path(archive).expanduser(), Path(into).expanduser()
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise FileExistsError(f"cannot unpack {archive.name} into {into}: it exists and is not an empty folder")
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    kind, names = _members(archive)
    if strip is not None:
        top = PurePosixPath(strip)
        if not _has(names, strip):
            tops = sorted({n.parts[0] for n in names if n.parts})[:10]
            raise ArchiveError(
                f"archive {archive} has no top folder {strip!r} (it has: {', '.join(tops) or 'nothing'})"
            )
        names = [n.relative_to(top) for n in names if top in n.parents]
    missing = [e for e in expect if not _has(names, e)]
    if missing:
        tops = sorted({str(n.parts[0]) for n in names if n.parts})[:10]
        raise ArchiveError(
            f"archive {archive} is not laid out as expected: it lacks {', '.join(missing)} "
            f"(its top-level entries: {', '.join(tops) or 'nothing'})"
        )
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.extracting-", dir=into.parent))
    try:
        try:
            if kind == "zip":
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
        except Exception as e:  # noqa: BLE001 - bad CRC, truncated stream, zlib errors...
            raise ArchiveError(
                f"archive {archive} is corrupt or truncated ({type(e).__name__}: {e}); nothing was "
                f"unpacked to {into}: delete the archive and download it again"
            ) from e
        src = tmp / strip if strip is not None else tmp
        if into.is_dir():
            into.rmdir()  # empty (checked above)
        os.rename(src, into)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return into
