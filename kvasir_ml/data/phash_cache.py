"""Perceptual hashes computed once per image *content*, with worker processes.

Hashing decodes every image (the costly part of a split: ~3 ms per frame); a re-split, a
split with another seed or threshold, or a split of a merged dataset would decode them all
again. ``hash_images`` therefore keys each perceptual hash by the file's sha256 (read
afresh, never taken from a canonical file that may be stale) in one small ``.npz`` store:
a renamed or copied file is a hit, an edited one a miss. The store's file name carries a
tag of the hash method (``METHOD`` and the ImageHash version), so a changed method never
reads old hashes.

Both passes (sha256, then the hashes of the misses) run on a process pool. The store is
read whole and written atomically (merged with what is on disk at that moment), so two
processes splitting at once lose at most each other's new entries, never the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kvasir_ml.data.images import ImageError
from kvasir_ml.io import atomic_write, sha256_file

log = logging.getLogger(__name__)

_CHUNK_FILES = 32  # files per pool task: amortises the inter-process round trip (~0.1 ms)


def default_workers() -> int:
    """Processes for hashing: every CPU, up to 8 (decoding is CPU-bound)."""
    return max(1, min(8, os.cpu_count() or 1))


def store_path(folder: str | Path, method: str) -> Path:
    """``folder/phash-<tag>.npz``: the tag changes with the hash method and ImageHash's version."""
    import imagehash

    tag = hashlib.sha256(f"{method}|imagehash {imagehash.__version__}".encode()).hexdigest()[:10]
    return Path(folder) / f"phash-{tag}.npz"


def load_store(path: Path) -> dict[str, int]:
    """``{sha256 hex: hash}`` from ``path``; empty when absent or unreadable (a cache: rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            shas, hashes = z["sha256"], z["phash"]
    except (OSError, ValueError, KeyError, EOFError):
        return {}
    if shas.ndim != 2 or shas.shape[1] != 32 or len(shas) != len(hashes):
        return {}
    return dict(zip((row.tobytes().hex() for row in shas), hashes.astype(np.uint64).tolist()))


def save_store(path: Path, new: dict[str, int]) -> None:
    """Merge ``new`` into the store on disk (re-read now) and write it atomically."""
    merged = {**load_store(path), **new}
    shas = np.frombuffer(b"".join(bytes.fromhex(s) for s in merged), dtype=np.uint8).reshape(-1, 32)
    hashes = np.array(list(merged.values()), dtype=np.uint64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, sha256=shas, phash=hashes)

    atomic_write(path, write)


def _safe(fn: Callable[[str], object], path: str) -> tuple[object, str | None]:
    """``(fn(path), None)`` or ``(None, reason)``: ``ImageError`` does not survive pickling
    back from a worker (its ``__init__`` takes two arguments), so the reason travels instead."""
    try:
        return fn(path), None
    except ImageError as exc:
        return None, exc.reason
    except OSError as exc:
        return None, f"cannot read ({exc})"


def _sha_task(path: str) -> tuple[object, str | None]:
    return _safe(sha256_file, path)


def _hash_task(args: tuple[Callable[[str], int], str]) -> tuple[object, str | None]:
    return _safe(args[0], args[1])


def _map(task: Callable, items: Sequence, workers: int, desc: str, progress: bool) -> list:
    """``task`` over ``items`` (on a pool when worth it), in order, with a tqdm bar (rate and ETA)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="img", disable=None if progress and items else True,
               dynamic_ncols=True)  # None: off when stderr is not a terminal (logs, CI)
    out: list = []
    if workers <= 1 or len(items) < 2 * _CHUNK_FILES:
        for item in items:
            out.append(task(item))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(task, items, chunksize=_CHUNK_FILES):
                out.append(result)
                bar.update()
    bar.close()
    return out


def _raise_first(paths: Sequence[str], results: list[tuple[object, str | None]]) -> None:
    for path, (_, reason) in zip(paths, results):
        if reason is not None:
            raise ImageError(path, reason)


def hash_images(paths: Sequence[str | Path], hash_fn: Callable[[str], int], store: Path | None = None,
                workers: int | None = None, progress: bool = False) -> tuple[np.ndarray, dict[str, int]]:
    """The perceptual hash of every file, reading the store first and adding what was missing.

    Args:
        paths: image files.
        hash_fn: a picklable (module-level) function ``path -> 64-bit int``.
        store: the ``.npz`` store (``store_path``); None = no cache (every image is hashed).
        workers: processes (None = ``default_workers()``; 0 or 1 = in this process).
        progress: show tqdm bars (rate and ETA) for both passes.

    Returns:
        ``(uint64 hashes in the order of paths, {"n_cached": ..., "n_hashed": ...})``.

    Raises:
        ImageError: a file cannot be read or decoded (it names the file).
    """
    names = [str(p) for p in paths]
    workers = default_workers() if workers is None else workers
    known = load_store(store) if store is not None else {}
    shas: list[str | None] = [None] * len(names)
    if store is not None:
        sha_results = _map(_sha_task, names, workers, "sha256", progress)
        _raise_first(names, sha_results)
        shas = [str(s) for s, _ in sha_results]
    todo = [i for i, s in enumerate(shas) if s is None or s not in known]
    results = _map(_hash_task, [(hash_fn, names[i]) for i in todo], workers, "perceptual hash", progress)
    _raise_first([names[i] for i in todo], results)
    fresh = {i: int(h) for i, (h, _) in zip(todo, results)}
    hashes = np.array([fresh[i] if i in fresh else known[str(shas[i])] for i in range(len(names))], dtype=np.uint64)
    if store is not None and fresh:
        save_store(store, {str(shas[i]): h for i, h in fresh.items()})
    return hashes, {"n_cached": len(names) - len(todo), "n_hashed": len(todo)}
