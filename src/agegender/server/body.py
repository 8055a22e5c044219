"""Reading an uploaded image from a request, in memory only: a raw image body or a multipart form.

Nothing from a request is ever written to disk and no request-supplied name is used as a path: an
uploaded filename only becomes the "image" label of the result (its last path component, sanitised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from .errors import ApiError

#: raw body content types accepted besides image/* (some clients send images as octet-stream)
RAW_TYPES = ("application/octet-stream",)


@dataclass
class Upload:
    """One uploaded image: its bytes and the name to report ("upload" or the sent filename)."""

    data: bytes
    name: str


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The whole request body, refusing (413) a declared or actual size over max_bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > max_bytes:
            raise ApiError(413, f"upload of {size} bytes exceeds the limit of {max_bytes} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, f"upload exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def safe_name(filename: str | None) -> str:
    """A display name from a client filename: last path component, printable, at most 200 characters."""
    if not filename:
        return "upload"
    base = re.split(r"[\\/]", filename)[-1]
    base = "".join(c for c in base if c.isprintable()).strip().lstrip(".")
    return base[:200] or "upload"


def parse_multipart(body: bytes, content_type: str) -> Upload:
    """The first file part of a multipart/form-data body (field "file" preferred), parsed in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart body without a boundary")
    parts: list[dict] = []
    header: dict = {}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] = header.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] = header.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header.pop("field", b"").lower()] = header.pop("value", b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data,
    })
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for malformed bodies
        raise ApiError(400, f"malformed multipart body ({exc})") from None
    files = []
    for part in parts:
        _, disp = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in disp or part["headers"].get(b"content-type", b"").startswith(b"image/"):
            field = disp.get(b"name", b"").decode("utf-8", "replace")
            filename = disp.get(b"filename", b"").decode("utf-8", "replace")
            files.append((field != "file", Upload(bytes(part["data"]), safe_name(filename))))
    if not files:
        raise ApiError(400, "multipart body has no file part (send the image as field 'file')")
    return min(files, key=lambda f: f[0])[1]


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The image of a POST: multipart/form-data (first file part) or a raw body with an image content type."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return parse_multipart(await read_capped(request, max_bytes), content_type)
    if media.startswith("image/") or media in RAW_TYPES:
        return Upload(await read_capped(request, max_bytes), "upload")
    shown = media or "none"
    raise ApiError(415, f"unsupported content type {shown}: send an image/* body or multipart/form-data")
