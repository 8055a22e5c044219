"""`agegender download`: fetch a public dataset resumably, verify it and unpack it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a dataset (imdb, wiki; utkface from a file you fetched)")
    p.add_argument("name", help="imdb, wiki or utkface")
    p.add_argument("-o", "--out", default="datasets", help="folder to download and extract into")
    p.add_argument("--url", help="download from this URL instead (a mirror)")
    p.add_argument("--sha256", help="expected SHA-256 of the archive")
    p.add_argument("--file", help="use an archive you already downloaded")
    p.add_argument("--no-extract", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_download)


def cmd_download(a: argparse.Namespace) -> int:
    from ..data.download import DownloadError, download_dataset

    try:
        archives = download_dataset(a.name, a.out, url=a.url, sha256=a.sha256, local_file=a.file,
                                    do_extract=not a.no_extract, progress=not a.no_progress)
    except DownloadError as exc:
        print(f"agegender download: {exc}")
        return 1
    for path in archives:
        print(f"{path}: ok ({path.stat().st_size} bytes, SHA-256 in {path.name}.sha256)")
    return 0
