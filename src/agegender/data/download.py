"""Downloading the public datasets (as the original project's download.sh did), resumably.

HTTP range requests continue a partial download after a dropped connection or a killed run; the file is
checked (size, and SHA-256 when known) and then extracted safely. Nothing here runs unless asked.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_write_text, sha256_of


@dataclass(frozen=True)
class Remote:
    """A downloadable archive. sha256 is None where the publisher gives none."""

    url: str
    filename: str
    sha256: str | None = None
    note: str = ""


IMDB_WIKI = "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static/"
DATASETS: dict[str, list[Remote]] = {
    "imdb": [Remote(IMDB_WIKI + "imdb_crop.tar", "imdb_crop.tar", note="IMDB faces + imdb.mat, about 7 GB")],
    "wiki": [Remote(IMDB_WIKI + "wiki_crop.tar", "wiki_crop.tar", note="WIKI faces + wiki.mat, about 0.8 GB")],
}
MANUAL = {
    "utkface": "UTKFace is shared through Google Drive links on https://susanqq.github.io/UTKFace/ that need a "
               "browser; download 'UTKFace.tar.gz' (Aligned & Cropped) there and run: "
               "agegender download utkface --file UTKFace.tar.gz -o DIR",
}


class DownloadError(RuntimeError):
    """A download that could not complete; the message says why and what was kept."""


def _total_from_headers(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr and not cr.endswith("*"):
        return int(cr.rsplit("/", 1)[1])
    cl = resp.headers.get("Content-Length")
    return int(cl) + offset if cl is not None else None


def fetch(url: str, dest: Path, retries: int = 5, timeout: float = 30.0, progress: bool = True,
          chunk: int = 1 << 16) -> Path:
    """Download `url` to `dest`, continuing `dest`.part if present; returns `dest`.

    Each dropped connection is retried (up to `retries` times in a row) from where it stopped.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures, total = 0, None
    bar = None
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if total is not None and offset >= total:
            break
        req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if offset and resp.status != 206:  # the server ignored the range: start again
                    offset = 0
                    part.unlink(missing_ok=True)
                total = _total_from_headers(resp, offset) if resp.status in (200, 206) else None
                if bar is None:
                    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                               disable=not progress)
                else:
                    bar.reset(total=total)
                    bar.update(offset)
                with open(part, "ab" if offset else "wb") as f:
                    while True:
                        block = resp.read(chunk)
                        if not block:
                            break
                        f.write(block)
                        bar.update(len(block))
                        failures = 0
            if total is None or part.stat().st_size >= total:
                break
            raise ConnectionError("connection closed early")
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and total is None:  # range past the end: the part is complete
                break
            raise DownloadError(f"{url}: server answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DownloadError(f"cannot reach {url} ({exc.reason}); are you offline? "
                                f"{part.name} keeps what was downloaded; rerun to continue") from None
        except (ConnectionError, TimeoutError, OSError) as exc:
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: {exc}; {part.name} keeps {part.stat().st_size} bytes; rerun to "
                                    "continue") from None
            time.sleep(min(2.0 ** failures * 0.1, 5.0))
    if bar is not None:
        bar.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} bytes, expected {total}")
    os.replace(part, dest)
    return dest


def verify(path: Path, expected: str | None) -> str:
    """Compute the file's SHA-256, write it beside the file, compare with `expected` if given."""
    digest = sha256_of(path)
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    if expected and digest != expected.lower():
        bad = path.with_name(path.name + ".corrupt")
        os.replace(path, bad)
        raise DownloadError(f"{path.name}: SHA-256 {digest} does not match the expected {expected}; "
                            f"moved to {bad.name}")
    return digest


def extract(archive: Path, out_dir: Path) -> Path:
    """Unpack a tar/tar.gz/zip into out_dir (members outside it are refused); idempotent."""
    marker = out_dir / f".{archive.name}.extracted"
    if marker.exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            root = out_dir.resolve()
            for name in z.namelist():
                if not (out_dir / name).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive.name}: refusing member outside the folder: {name}")
            z.extractall(out_dir)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(out_dir, filter="data")
    else:
        raise DownloadError(f"{archive.name}: not a tar or zip archive")
    atomic_write_text(marker, "done\n")
    return out_dir


def download_dataset(name: str, out_dir: str | os.PathLike[str], *, url: str | None = None,
                     sha256: str | None = None, local_file: str | None = None, do_extract: bool = True,
                     progress: bool = True) -> list[Path]:
    """Fetch (or take `local_file`), verify and extract a dataset; returns the archives."""
    out = Path(out_dir)
    if local_file:
        src = Path(local_file)
        if not src.is_file():
            raise DownloadError(f"{src}: no such file")
        dest = out / src.name
        if not dest.exists():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        remotes = [Remote(str(src), src.name, sha256)]
        archives = [dest]
    else:
        if url:
            remotes = [Remote(url, Path(url.split("?")[0]).name or f"{name}.archive", sha256)]
        elif name in DATASETS:
            remotes = DATASETS[name]
        elif name in MANUAL:
            raise DownloadError(MANUAL[name])
        else:
            raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS) + sorted(MANUAL))}")
        archives = [fetch(r.url, out / r.filename, progress=progress) for r in remotes]
    for r, a in zip(remotes, archives):
        verify(a, sha256 or r.sha256)
        if do_extract:
            extract(a, out)
    return archives
