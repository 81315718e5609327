"""Decode-once image cache: every source image is decoded and resized once, then read back.

Source JPEGs are up to 1920x1072; decoding them every epoch costs more than a small
model's forward pass on these CPUs. ``ImageCache.get`` decodes an image once, makes its
``size_px`` square with ``square_from_rgb`` (the same function predict uses) and stores the uint8 array as ``.npy`` keyed by the file's *content* hash, so a
renamed or copied file is still a hit and an edited one is a miss.

Hashing a file still reads it, so the content hash is memoised per
``(absolute path, size, mtime)``: in memory for the process, and on disk (one tiny file per
key) so DataLoader workers and later runs skip the hashing too.

Safe with DataLoader workers: no shared in-memory state, every file is written to a
temporary name and renamed into place (two workers writing the same entry both write
complete files, and the last rename wins). The resize is a plain stretch to a square (no
padding), so a box or inset region maps by ``(size_px / width, size_px / height)``.

Training reads a *pack* instead (``ImageCache.pack``): the images of one split copied once
into a single ``(N, S, S, 3)`` uint8 ``.npy`` that DataLoader workers read a whole batch from
(``train.data.ClassifierDataset``: one ``pread`` per image, no per-image file open, hash or decode).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from kvasir_ml.data.images import load_rgb
from kvasir_ml.data.pool import worker_pool
from kvasir_ml.io import atomic_write, sha256_file


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would add ".npy" to a path
        np.save(fh, arr, allow_pickle=False)


# Bump when the pixels a cache entry holds change: entries live under <size>px-v<N>/, so an
# older cache is never mixed into a run that expects the new pixels.
DECODE_VERSION = 2


def square_from_rgb(rgb: np.ndarray, size_px: int) -> np.ndarray:
    """The model's square input from a fully decoded frame: box-reduce by the largest integer
    factor that keeps both sides >= ``size_px``, then a bilinear stretch to ``(size_px, size_px, 3)``.

    The cache (training) and ``kvasir-ml predict`` both call this on the full decode, so they
    see the same pixels and predict decodes each image once for the inset, classifier and
    detector (v1 used JPEG draft mode, which only a file decode can do).
    """
    height, width = rgb.shape[:2]
    if (height, width) == (size_px, size_px):
        return rgb
    img = Image.fromarray(rgb)
    factor = min(width, height) // size_px
    if factor >= 2:
        img = img.reduce(factor)  # area average: cheap and alias-free, like the DCT scaling it replaces
    return np.asarray(img.resize((size_px, size_px), Image.Resampling.BILINEAR))


def decode_square(path: str | Path, size_px: int) -> np.ndarray:
    """Decode an image and make its square model input (``square_from_rgb``)."""
    return square_from_rgb(load_rgb(path), size_px)


class ImageCache:
    """Square, resized copies of source images on disk, keyed by content hash.

    Args:
        cache_dir: cache root; entries go to ``cache_dir/<size_px>px-v<DECODE_VERSION>/<hash[:2]>/<hash>.npy``.
        size_px: side of the square output.

    Attributes:
        decodes / hits: how many ``get`` calls decoded an original / read the cache
            (per instance, for tests and logging).
    """

    def __init__(self, cache_dir: str | Path, size_px: int):
        if size_px <= 0:
            raise ValueError(f"cache size_px must be positive, got {size_px}")
        self.cache_dir = Path(cache_dir)
        self.size_px = int(size_px)
        self.root = self.cache_dir / f"{self.size_px}px-v{DECODE_VERSION}"
        self._memo_dir = self.cache_dir / "hash-memo"
        self._memo: dict[tuple[str, int, int], str] = {}
        self.decodes = 0
        self.hits = 0

    def content_sha256(self, path: str | Path) -> str:
        """Content hash of ``path``, memoised by (absolute path, byte size, mtime)."""
        path = Path(path).resolve()
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in self._memo:
            return self._memo[key]
        memo_file = self._memo_dir / hashlib.sha1("\0".join(map(str, key)).encode()).hexdigest()
        try:
            digest = memo_file.read_text().strip()
        except OSError:
            digest = ""
        if len(digest) != 64:
            digest = sha256_file(path)
            atomic_write(memo_file, lambda tmp: tmp.write_text(digest, encoding="ascii"))
        self._memo[key] = digest
        return digest

    def entry_path(self, content_sha256: str) -> Path:
        return self.root / content_sha256[:2] / f"{content_sha256}.npy"

    def _read(self, entry: Path) -> np.ndarray | None:
        try:
            arr = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent, or a damaged entry: decode again and overwrite
        if arr.shape != (self.size_px, self.size_px, 3) or arr.dtype != np.uint8:
            return None
        return arr

    def get(self, path: str | Path) -> np.ndarray:
        """The image as ``(size_px, size_px, 3)`` uint8, decoding the original only once.

        Raises:
            ImageError: the original cannot be decoded (missing, corrupt, ...).
        """
        entry = self.entry_path(self.content_sha256(path))
        arr = self._read(entry)
        if arr is not None:
            self.hits += 1
            return arr
        arr = decode_square(path, self.size_px)
        self.decodes += 1
        atomic_write(entry, lambda tmp: _save_npy(tmp, arr))
        return arr

    def pack(self, paths: Sequence[str | Path]) -> Path:
        """The cached images of ``paths`` (in that order) as one ``(N, S, S, 3)`` uint8 ``.npy``.

        Keyed by the images' content hashes, so a later run over the same images reuses it
        and any change to an image makes a new one. Written to a temporary name and renamed
        (safe when several processes build the same pack). Open it with
        ``np.load(path, mmap_mode="r")`` or read rows at ``offset + i * S * S * 3``.

        Returns:
            ``cache_dir/<size_px>px-v<DECODE_VERSION>/packs/<key>-<N>.npy``.

        Raises:
            ImageError: an image cannot be decoded.
            ValueError: ``paths`` is empty.
        """
        if not paths:
            raise ValueError("cannot pack an empty list of images")
        hashes = [self.content_sha256(p) for p in paths]
        key = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:24]
        out = self.root / "packs" / f"{key}-{len(hashes)}.npy"
        if self._pack_ok(out, len(hashes)):
            return out

        atomic_write(out, lambda tmp: self._write_pack(tmp, paths))
        return out

    def _write_pack(self, tmp: Path, paths: Sequence[str | Path]) -> None:
        """Stream the images into ``tmp`` with buffered sequential writes: the same ``.npy`` as
        ``open_memmap`` would make, but this process never maps the file, so its RSS stays flat
        instead of growing by the pack's size (a memory-mapped writer holds every written page)."""
        shape = (len(paths), self.size_px, self.size_px, 3)
        with open(tmp, "wb", buffering=1 << 20) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for path in paths:
                fh.write(np.ascontiguousarray(self.get(path)).data)

    def _pack_ok(self, path: Path, n: int) -> bool:
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return False
        return arr.shape == (n, self.size_px, self.size_px, 3) and arr.dtype == np.uint8

    def contains(self, path: str | Path) -> bool:
        return self.entry_path(self.content_sha256(path)).exists()

    def warm(self, paths: Iterable[str | Path], workers: int | None = None) -> int:
        """Decode every image not cached yet, on a process pool.

        Args:
            paths: image files.
            workers: processes; None = min(2, CPU count); 0 or 1 = in this process.

        Returns:
            Number of images decoded (0 when all were cached).
        """
        todo = [str(p) for p in paths if not self.contains(p)]
        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        if workers <= 1 or len(todo) < 16:
            for p in todo:
                self.get(p)
            return len(todo)
        with worker_pool(workers) as pool:  # workers die with this process
            list(pool.map(_warm_one, [(str(self.cache_dir), self.size_px, p) for p in todo], chunksize=8))
        return len(todo)


def _warm_one(args: tuple[str, int, str]) -> None:
    cache_dir, size_px, path = args
    ImageCache(cache_dir, size_px).get(path)
