"""Image decoding with clear errors for bad input.

``load_rgb`` is the one place where source images are opened. It turns every odd input
into either an 8-bit RGB array or an ``ImageError`` that names the file and the problem:
0-byte and truncated files, non-images, grayscale, palette, RGBA/LA (composited on
black, like the endoscope border), CMYK and 16-bit PNGs. Images of more than
``MAX_IMAGE_PIXELS`` pixels (decompression bombs: a few KB of PNG that decode to gigabytes)
are refused from their header, before any decoding. Multi-page files (TIFF, animated PNG) are
refused: which page is the frame is a guess, and PIL silently reads the first. Frames smaller
than ``MIN_FRAME_SIDE_PX`` a side are refused where frames are indexed or predicted on.

``read_image_bytes`` reads a file once and checks it did not change meanwhile; decoding and
hashing those same bytes keeps an image's size and its sha256 from one version of the file.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# Never let PIL silently fill a truncated JPEG with grey: a truncated file is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# PIL's own bomb threshold (~89.5 Mpx, about 270 MB as RGB). Endoscopy frames are ~2 Mpx, so
# anything larger is an error rather than PIL's warning (below 2x) or its exception (above).
MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
# The smallest frame side `data index` and `predict` accept. Endoscopy frames are hundreds of
# pixels a side; a 5x1 frame is a thumbnail, a strip or a broken export, and the models
# (ResNet at 224 px, YOLO at 640 px) would only see it upscaled beyond recognition.
MIN_FRAME_SIDE_PX = 32
# Formats whose extra frames are not alternatives to the first: an MPO's first frame *is* the
# photo (the others are previews or a stereo pair), so it is not refused as multi-page.
_PRIMARY_FIRST_FRAME_FORMATS = {"MPO"}
# How often a file that changes while being read is read again before it is refused.
_STABLE_READ_TRIES = 3


class ImageError(ValueError):
    """An image file cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _to_rgb(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale by the smallest bit depth (8..16) that holds the data, so
        # 12-bit sensor data stored in a 16-bit PNG is not squashed into 0..16.
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        bits = min(16, max(8, int(np.ceil(np.log2(top + 1.0))))) if top > 0 else 8
        scale = 255.0 / (2.0**bits - 1.0)
        grey = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        grey = ((arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr
    return np.asarray(img)


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path; ``ImageError`` when it is missing or empty (before PIL sees it)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise ImageError(path, "file is empty (0 bytes)")
    return path


def read_image_bytes(path: str | Path) -> bytes:
    """All bytes of a file from one read, checked to be one version of it.

    A file rewritten while it is read (in place, or replaced by a rename) is read again, up to
    ``_STABLE_READ_TRIES`` times; decode and hash the returned bytes, never the path again.

    Raises:
        ImageError: missing, empty, or still changing after the retries.
    """
    path = _existing_file(path)
    for _ in range(_STABLE_READ_TRIES):
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
        try:
            after = os.stat(path)  # by path: a rename over the file shows as a new inode
        except FileNotFoundError:
            continue
        if len(data) == before.st_size == after.st_size and _same_version(before, after):
            if not data:
                raise ImageError(path, "file is empty (0 bytes)")
            return data
    raise ImageError(path, f"the file changed while being read ({_STABLE_READ_TRIES} tries): is something still "
                           "writing it? Not used; index it again once it is complete")


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_dev, b.st_size, b.st_mtime_ns)


def load_rgb(path: str | Path, draft_size: tuple[int, int] | None = None, *, data: bytes | None = None,
             min_side_px: int = 0) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array.

    Args:
        path: image file (named in errors; read only when ``data`` is None).
        draft_size: if given, JPEG decoding may downscale (by 1/2, 1/4, 1/8) to no less than
            this ``(width, height)`` — much faster when a small resize follows.
        data: the file's bytes, already read (``read_image_bytes``): decode these.
        min_side_px: refuse a frame with a side shorter than this (``MIN_FRAME_SIDE_PX`` for
            frames that are indexed or predicted on; 0 = any size).

    Raises:
        ImageError: missing, empty, truncated, corrupt, multi-page, too small or unsupported file.
    """
    path = _existing_file(path) if data is None else Path(path)
    with _opened(path, "cannot decode image", data) as img:
        check_frame_size(path, img.size, min_side_px)
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
        if img.width == 0 or img.height == 0:
            raise ImageError(path, f"image has zero size {img.width}x{img.height}")
        return np.ascontiguousarray(_to_rgb(img, path))


def check_frame_size(path: str | Path, size: tuple[int, int], min_side_px: int = MIN_FRAME_SIDE_PX) -> None:
    """Refuse a ``(width, height)`` frame with a side shorter than ``min_side_px``.

    Raises:
        ImageError: naming the file, its size and the minimum.
    """
    width, height = size
    if min(width, height) < min_side_px:
        raise ImageError(path, f"frame is {width}x{height} px, smaller than the minimum of {min_side_px} px a side "
                               "(a thumbnail, a strip or a broken export, not an endoscopy frame)")


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the header only, with the same errors as ``load_rgb``."""
    path = _existing_file(path)
    with _opened(path, "cannot read image header") as img:
        return img.size


@contextmanager
def _opened(path: Path, failure: str, data: bytes | None = None) -> Iterator[Image.Image]:
    """The opened image (from ``data`` when given), its pixel count and page count checked; every
    PIL failure (also inside the ``with`` body) becomes one ``ImageError`` naming the file
    (``failure``: what could not be done)."""
    try:
        with warnings.catch_warnings():  # PIL only warns between 1x and 2x its limit: refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data) if data is not None else path)
        with img:
            _check_pixels(path, img.size)
            _check_single_page(path, img)
            yield img
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not a recognised image format (corrupt or not an image)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"refused: decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        # PIL raises OSError("image file is truncated ...") and friends.
        raise ImageError(path, f"{failure} ({type(exc).__name__}: {exc})") from None


def _check_single_page(path: Path, img: Image.Image) -> None:
    pages = int(getattr(img, "n_frames", 1) or 1)
    if pages > 1 and img.format not in _PRIMARY_FIRST_FRAME_FORMATS:
        raise ImageError(path, f"refused: a multi-page {img.format} with {pages} pages (which one is the frame is a "
                               "guess; the first may be blank or a thumbnail): save the frame as a single-page image")


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(path, f"refused: {width}x{height} = {width * height / 1e6:.0f} Mpx is more than "
                               f"{MAX_IMAGE_PIXELS / 1e6:.0f} Mpx (a decompression bomb, or not an endoscopy frame)")

