"""Images decoded only as far as the work needs: reduced views for detection, finer ones for face crops.

A `LazyImage` holds an image's encoded bytes (or an already decoded array) and knows its size from the
header. It gives views: the image decoded at 1/1, 1/2, 1/4 or 1/8 of its size (JPEG: scaled decoding in the
DCT domain, a fraction of a full decode's time and memory; other formats: always full size), each with the
map from its pixels to the original image's. A detector runs on the coarsest view it can use
(`detectors.base.detect_faces`); each face is cut from the coarsest view that still gives the model at least
two real pixels per pixel of its crop (`crop_faces_from`), so a small face in a large photo is cut from a
finer view (or the full-size image), decoded for it. A crop cut from a view has the geometry it has on the
full-size image, read from the view's pixels (`ViewSource`). Boxes and landmarks are always in
the original image's pixels, as displayed (after EXIF orientation). Decoding follows `imageio.decode`
exactly: orientation, colour modes, pixel limits and errors are those of `load_image`.

    >>> image = LazyImage.open("phone.jpg")       # header only: image.width, image.height
    >>> view = image.view(480, 640)               # the coarsest view with at least 480 x 640 pixels
    >>> view.pixels.shape, view.reduction         # e.g. (750, 1000, 3), 4
    >>> image.full()                              # what load_image gives (decoded now, then kept)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .align import crop_face, crop_scale
from .imageio import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    TRANSPOSING_ORIENTATIONS,
    ImageTooLargeError,
    array_to_rgb,
    decode,
    pil_to_rgb,
    probe,
    read_image_file,
)
from .types import Detection, Preprocessing

#: the reductions a JPEG can be decoded at (1/8, 1/4, 1/2, full size), coarsest first
REDUCTIONS = (8, 4, 2, 1)
#: EXIF orientations that mirror the displayed x axis, and the displayed y axis, of the stored image
_FLIPS_X, _FLIPS_Y = (2, 3, 6, 7), (3, 4, 7, 8)
#: real image pixels per crop pixel a face is cut from, at the least, at the size the model cuts faces at:
#: the full-size crop path shrinks the face region to twice the crop size before its final warp (see
#: align.crop_face), and 2 keeps that step a true downsampling on the view too
MIN_PIXELS_PER_CROP_PIXEL = 2.0


def as_lazy_image(source: object) -> LazyImage:
    """Any image a caller may hold, as a LazyImage: a file path (str or os.PathLike), encoded image bytes
    (bytes, bytearray, memoryview) or a binary file object (its `read()`; both decoded lazily, as a file is),
    a PIL image (EXIF orientation applied, as for its file), a uint8 array (H, W, 3) RGB, (H, W) grey or
    (H, W, 4) RGBA, or a LazyImage. TypeError for anything else; ImageLoadError for what does not decode."""
    if isinstance(source, LazyImage):
        return source
    if isinstance(source, (str, os.PathLike)):
        return LazyImage.open(source)
    if isinstance(source, np.ndarray):
        return LazyImage.from_array(array_to_rgb(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return LazyImage.from_bytes(bytes(source))
    if callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        data = source.read(MAX_FILE_BYTES + 1)
        if not isinstance(data, bytes):
            raise TypeError("a file object of an image must be opened in binary mode ('rb')")
        name = name if isinstance(name, str) else "<stream>"
        if len(data) > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{name}: over the limit of {MAX_FILE_BYTES} bytes")
        return LazyImage.from_bytes(data, name)
    if isinstance(source, Image.Image):
        return LazyImage.from_array(pil_to_rgb(source), getattr(source, "filename", "") or "<PIL image>")
    raise TypeError(f"expected an image: a file path, encoded bytes, a binary file object, a PIL image or a "
                    f"uint8 array, got {type(source).__name__}")


@dataclass(frozen=True)
class ImageView:
    """An image at 1/`reduction` of its size: (h, w, 3) uint8 RGB `pixels` (read-only), upright.

    A point (x, y) of the view in continuous pixel coordinates (pixel i spans [i, i + 1)) is the point
    (reduction * x + offset[0], reduction * y + offset[1]) of the original image, whose size as displayed is
    original_size (width, height). offset is 0 but on an axis mirrored by EXIF orientation, when the image's
    side is not a multiple of the reduction (then it is reduction * n - side, at most reduction - 1 pixels).
    """

    pixels: np.ndarray
    reduction: int
    original_size: tuple[int, int]
    offset: tuple[float, float] = (0.0, 0.0)

    def points_to_original(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) view points -> original image points (continuous coordinates), float32."""
        return (np.asarray(pts, np.float64) * self.reduction + np.asarray(self.offset)).astype(np.float32)

    def detection_to_original(self, det: Detection) -> Detection:
        """A detection found on this view, in the original image's pixels (box clipped to the image)."""
        if self.reduction == 1 and self.offset == (0.0, 0.0):
            return det
        corners = self.points_to_original(np.array(det.box, np.float64).reshape(2, 2)).astype(np.float64)
        w, h = self.original_size
        box = np.clip(corners.ravel(), 0.0, [w, h, w, h])
        lms = None if det.landmarks is None else self.points_to_original(det.landmarks)
        return Detection(tuple(float(v) for v in box), det.score, lms)


def reduction_for(size: tuple[int, int], need: tuple[int, int]) -> int:
    """The largest of REDUCTIONS r with both sides of `size` at least r times `need` (1 if none)."""
    w, h = size
    nw, nh = max(1, int(math.ceil(need[0]))), max(1, int(math.ceil(need[1])))
    return next(r for r in REDUCTIONS if r == 1 or (w // nw >= r and h // nh >= r))


class LazyImage:
    """An image file, encoded bytes or RGB array, decoded on demand at the resolution asked for.

    width, height: the size as displayed (after EXIF orientation), from the header. Opening checks what
    `load_image` checks before decoding (file type, size, pixel limit); decoding errors (truncated,
    corrupt) come as ImageLoadError from the first view decoded. Views are kept once decoded.
    `np.asarray(image)` is the full-size image, as `load_image` gives it.
    """

    def __init__(self, data: bytes | None, name: str, max_pixels: int = MAX_PIXELS,
                 array: np.ndarray | None = None) -> None:
        self.name = name
        self.max_pixels = max_pixels
        self._data = data
        self._views: dict[int, ImageView] = {}
        self._reducible = data is not None  # until a decode shows the format has no reduced decoding
        if array is not None:
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {array.shape} {array.dtype}")
            pixels = array.view()
            pixels.flags.writeable = False  # read-only view: nothing here writes into the caller's array
            self._stored, self._orientation = (array.shape[1], array.shape[0]), 1
            self._views[1] = ImageView(pixels, 1, self._stored)
        elif data is not None:
            self._stored, self._orientation = probe(data, name, max_pixels)
        else:
            raise ValueError("LazyImage needs encoded bytes or an array")

    @classmethod
    def open(cls, path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> LazyImage:
        """An image file: read and its header checked now, decoded when a view is asked for."""
        return cls(read_image_file(path), str(path), max_pixels)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> LazyImage:
        return cls(data, name, max_pixels)

    @classmethod
    def from_array(cls, rgb: np.ndarray, name: str = "<array>") -> LazyImage:
        """An already decoded (H, W, 3) uint8 RGB image (its only view is the array itself)."""
        return cls(None, name, array=rgb)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        w, h = self._stored
        return (h, w) if self._orientation in TRANSPOSING_ORIENTATIONS else (w, h)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def decoded_reductions(self) -> list[int]:
        """The reductions of the views decoded so far (1: full size)."""
        return sorted(self._views)

    def view(self, min_width: float = 1, min_height: float = 1) -> ImageView:
        """The coarsest view with at least min_width x min_height pixels (as displayed); full size for formats
        without reduced decoding."""
        return self.view_at(reduction_for(self.size, (min_width, min_height)))

    def view_at(self, reduction: int) -> ImageView:
        """The view at 1/reduction (one of REDUCTIONS; full size where the format cannot be reduced)."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction}")
        if not self._reducible:
            reduction = 1
        if reduction in self._views:
            return self._views[reduction]
        view = self._decode(reduction)
        self._views[view.reduction] = view
        return view

    def finest_view_within(self, reduction: int) -> ImageView:
        """A view at most 1/reduction coarse: the finest such view already decoded, else one decoded now."""
        done = [r for r in self._views if r <= reduction]
        return self._views[min(done)] if done else self.view_at(reduction)

    def full(self) -> np.ndarray:
        """The full-size (H, W, 3) uint8 RGB image (read-only; copy it to draw on it)."""
        return self.view_at(1).pixels

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # numpy's array protocol
        arr = self.full()
        return arr.astype(dtype) if dtype is not None else (arr.copy() if copy else arr)

    def _decode(self, reduction: int) -> ImageView:
        assert self._data is not None
        w, h = self._stored
        need = (max(1, w // reduction), max(1, h // reduction)) if reduction > 1 else None
        dec = decode(self._data, self.name, self.max_pixels, min_stored_size=need, writable=False)
        self._orientation = dec.orientation  # as applied (a malformed EXIF block leaves the image as stored)
        if dec.reduction == 1 and reduction > 1:
            self._reducible = False  # not a JPEG: this full-size decode serves every view
        pixels = dec.pixels
        pixels.flags.writeable = False
        r = dec.reduction
        W, H = self.size
        vh, vw = pixels.shape[:2]
        offset = (float(W - r * vw) if dec.orientation in _FLIPS_X else 0.0,
                  float(H - r * vh) if dec.orientation in _FLIPS_Y else 0.0)
        return ImageView(pixels, r, (W, H), offset)


class ViewSource:
    """A view as the `align.PixelSource` of the full-size image: regions are asked for in the original
    image's pixels and read from the view's, so a crop keeps the geometry it has on the full-size image.

    Area averaging is a box filter the size of each output pixel's footprint (in view pixels, less the
    averaging a view pixel has done already) followed by bicubic sampling at the footprint centres;
    bilinear reads sample the view bilinearly at the positions the full-size read samples.
    """

    def __init__(self, view: ImageView) -> None:
        self.view = view
        self.width, self.height = view.original_size
        r, (ox, oy) = view.reduction, view.offset
        # original pixel index p -> view pixel index (p + 0.5 - offset) / r - 0.5 (pixel centres)
        self._to_view = np.array([[1 / r, 0, (0.5 - ox) / r - 0.5], [0, 1 / r, (0.5 - oy) / r - 0.5], [0, 0, 1]])

    def _sample(self, image: np.ndarray, out_to_view: np.ndarray, w: int, h: int, flags: int) -> np.ndarray:
        return cv2.warpAffine(image, out_to_view[:2], (w, h), flags=flags | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def area(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        r, (ox, oy) = self.view.reduction, self.view.offset
        fx, fy = w / (x1 - x0), h / (y1 - y0)  # output pixels per original pixel
        # each footprint is 1 / (f r) view pixels wide; a view pixel already averages r x r original pixels,
        # so the box adds what the footprint has beyond that (the same variance: width^2 - 1)
        kx = box_kernel(math.sqrt(max(1.0 / (fx * r) ** 2 - 1.0, 0.0)))
        ky = box_kernel(math.sqrt(max(1.0 / (fy * r) ** 2 - 1.0, 0.0)))
        reach = max(len(kx), len(ky)) // 2 + 3  # the box's half-width and the bicubic kernel's
        vh, vw = self.view.pixels.shape[:2]
        vx0, vy0 = max(0, math.floor((x0 - ox) / r) - reach), max(0, math.floor((y0 - oy) / r) - reach)
        vx1, vy1 = min(vw, math.ceil((x1 - ox) / r) + reach), min(vh, math.ceil((y1 - oy) / r) + reach)
        sub = cv2.sepFilter2D(self.view.pixels[vy0:vy1, vx0:vx1], cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REPLICATE)
        # output pixel j covers original [x0 + j / fx, x0 + (j + 1) / fx): sample the filtered view at its centre
        out_to_orig = np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5], [0, 0, 1]])
        m = np.array([[1, 0, -vx0], [0, 1, -vy0], [0, 0, 1]]) @ self._to_view @ out_to_orig
        out = self._sample(sub, m, w, h, cv2.INTER_CUBIC)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def resized(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        sx, sy = (x1 - x0) / w, (y1 - y0) / h  # cv2.resize samples output j at (j + 0.5) * sx - 0.5
        out_to_orig = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5], [0, 0, 1]])
        return self._sample(self.view.pixels, self._to_view @ out_to_orig, w, h, cv2.INTER_LINEAR)

    def warped(self, m: np.ndarray, size: int) -> np.ndarray:
        out_to_orig = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
        return self._sample(self.view.pixels, self._to_view @ out_to_orig, size, size, cv2.INTER_LINEAR)


def box_kernel(width: float) -> np.ndarray:
    """Weights of a box `width` samples wide centred on a sample (fractional at its two ends), summing to 1;
    [1] for a box no wider than one sample."""
    if width <= 1.0:
        return np.ones(1, np.float32)
    half = int(math.ceil(width / 2 + 0.5))
    t = np.arange(-half, half + 1, dtype=np.float64)
    w = np.clip(np.minimum(t + 0.5, width / 2) - np.maximum(t - 0.5, -width / 2), 0.0, None)
    return (w / w.sum()).astype(np.float32)


def crop_faces_from(image: LazyImage, detections: list[Detection], prep: Preprocessing,
                    min_pixels: float = MIN_PIXELS_PER_CROP_PIXEL) -> np.ndarray:
    """All faces of a lazy image as an (N, size, size, 3) uint8 RGB batch, cut with the geometry
    `align.crop_faces` has on the full-size image, each from the coarsest view with at least `min_pixels`
    real pixels per pixel of the crop at the size the model cuts faces at (`prep.crop_size`, else
    `prep.size`): views already decoded first, else one decoded for the face. A face that needs the full
    size is cut exactly as from `load_image`'s array. Detections are in the original image's pixels."""
    if not detections:
        return np.zeros((0, prep.size, prep.size, 3), np.uint8)
    return np.stack([crop_face_from(image, det, prep, min_pixels) for det in detections])


def crop_face_from(image: LazyImage, det: Detection, prep: Preprocessing,
                   min_pixels: float = MIN_PIXELS_PER_CROP_PIXEL) -> np.ndarray:
    """One face of a lazy image, (size, size, 3) uint8 RGB; see crop_faces_from."""
    view = image.finest_view_within(crop_reduction(det, prep, min_pixels))
    return crop_face(view.pixels if view.reduction == 1 else ViewSource(view), det, prep)


def crop_reduction(det: Detection, prep: Preprocessing, min_pixels: float = MIN_PIXELS_PER_CROP_PIXEL) -> int:
    """The coarsest reduction that still gives `det`'s crop at least `min_pixels` image pixels per crop pixel."""
    scale = crop_scale(det, prep) * min_pixels  # crop pixels per full-size image pixel, with the margin asked
    return next(r for r in REDUCTIONS if r == 1 or scale * r <= 1.0)
