"""Image decoding with clear errors for bad input.

``load_rgb`` is the one place where source images are opened. It turns every odd input
into either an 8-bit RGB array or an ``ImageError`` that names the file and the problem:
0-byte and truncated files, non-images, grayscale, palette, RGBA/LA (composited on
black, like the endoscope border), CMYK and 16-bit PNGs. Images of more than
``MAX_IMAGE_PIXELS`` pixels (decompression bombs: a few KB of PNG that decode to gigabytes)
are refused from their header, before any decoding.
"""

from __future__ import annotations

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


def load_rgb(path: str | Path, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array.

    Args:
        path: image file.
        draft_size: if given, JPEG decoding may downscale (by 1/2, 1/4, 1/8) to no less than
            this ``(width, height)`` — much faster when a small resize follows.

    Raises:
        ImageError: missing, empty, truncated, corrupt or unsupported file.
    """
    path = _existing_file(path)
    with _opened(path, "cannot decode image") as img:
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
        if img.width == 0 or img.height == 0:
            raise ImageError(path, f"image has zero size {img.width}x{img.height}")
        return np.ascontiguousarray(_to_rgb(img, path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the header only, with the same errors as ``load_rgb``."""
    path = _existing_file(path)
    with _opened(path, "cannot read image header") as img:
        return img.size


@contextmanager
def _opened(path: Path, failure: str) -> Iterator[Image.Image]:
    """The opened image, its pixel count checked; every PIL failure (also inside the ``with``
    body) becomes one ``ImageError`` naming the file (``failure``: what could not be done)."""
    try:
        with warnings.catch_warnings():  # PIL only warns between 1x and 2x its limit: refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            _check_pixels(path, img.size)
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


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(path, f"refused: {width}x{height} = {width * height / 1e6:.0f} Mpx is more than "
                               f"{MAX_IMAGE_PIXELS / 1e6:.0f} Mpx (a decompression bomb, or not an endoscopy frame)")

