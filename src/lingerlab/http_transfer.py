"""A resumable HTTP(S) transfer into a ``.part`` file, standard library only (``downloads.fetch``
checks what arrived)."""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["transfer"]

_CHUNK = 1 << 20


def _progress(label: str, done: int, total: int | None, last: list[int]) -> None:
    step = (total or 0) // 20 or 50 * _CHUNK
    if done - last[0] >= step or (total and done >= total):
        last[0] = done
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"  {label}: {done / 1e6:.1f} MB{pct}", file=sys.stderr, flush=True)


def transfer(
    url: str,
    part: Path,
    *,
    resume: bool = True,
    attempts: int = 3,
    timeout: float = 60,
    progress: bool = False,
    label: str = "",
    size: int | None = None,
) -> None:
    """GET ``url`` into ``part``, continuing an existing ``part`` (and a transfer cut short) with a
    ``Range:`` request when ``resume``, up to ``attempts`` requests; a failure keeps ``part`` and raises
    ConnectionError. ``size``: the expected total for progress lines when the server does not say."""
    label = label or part.name
    last = [0]
    for attempt in range(1, attempts + 1):
        if not resume and part.exists():
            part.unlink()
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "lingerlab", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        received = 0
        try:
            try:
                response = urllib.request.urlopen(request, timeout=timeout)  # looked up at call time (patchable)
            except urllib.error.HTTPError as e:
                if e.code == 416 and offset:  # the .part is complete or longer than the file: start over
                    e.close()
                    part.unlink()
                    continue
                raise
            with response:
                status = response.status
                length = response.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                if status == 206 and offset:
                    m = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != offset:
                        raise ConnectionError(
                            f"{url} answered a range request for bytes {offset}- with "
                            f"Content-Range {response.headers.get('Content-Range')!r}"
                        )
                    mode, start = "ab", offset
                elif status == 200:
                    mode, start = "wb", 0  # no (or an ignored) range request: from zero
                else:
                    raise ConnectionError(f"{url} answered HTTP {status}")
                total = start + length if length is not None else size
                with open(part, mode) as f:
                    while block := response.read(_CHUNK):
                        f.write(block)
                        received += len(block)
                        if progress:
                            _progress(label, start + received, total, last)
                    f.flush()
                    os.fsync(f.fileno())
                if length is not None and received < length:
                    raise http.client.IncompleteRead(b"", length - received)
            return
        except (http.client.HTTPException, OSError) as e:
            if received and attempt < attempts and not isinstance(e, urllib.error.HTTPError):
                continue  # cut short after some bytes arrived: the next attempt resumes with a Range request
            if not resume and part.exists():
                part.unlink()
            have = part.stat().st_size if part.is_file() else 0
            kept = f"; {have} bytes are kept in {part} and the next call resumes from there" if have and resume else ""
            what = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else f"{type(e).__name__}: {e}"
            raise ConnectionError(f"download of {label} from {url} failed ({what}){kept}") from e
    raise ConnectionError(f"download of {label} from {url} did not complete in {attempts} attempts")
