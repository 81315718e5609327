"""Decode-once cache: later reads never decode the original; keyed by content."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kvasir_ml.data.cache as cache_mod
from kvasir_ml.data.cache import DECODE_VERSION, ImageCache
from kvasir_ml.data.images import ImageError


def _image(path: Path, size=(320, 240), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    arr[: size[1] // 2] = (200, 40, 40)  # a red top half to check the resize kept the layout
    Image.fromarray(arr).save(path, quality=90)
    return path


def _no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the original was decoded again")

    monkeypatch.setattr(cache_mod, "load_rgb", fail)


def test_get_decodes_once_and_later_instances_reuse(tmp_path, monkeypatch):
    src = _image(tmp_path / "a.jpg")
    cache = ImageCache(tmp_path / "cache", 64)
    first = cache.get(src)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert tuple(first[5, 32]) == pytest.approx((200, 40, 40), abs=12)
    assert (cache.decodes, cache.hits) == (1, 0)
    _no_decoding(monkeypatch)
    np.testing.assert_array_equal(cache.get(src), first)
    assert (cache.decodes, cache.hits) == (1, 1)
    # a new instance (e.g. a DataLoader worker, the next epoch, the next run) neither decodes nor rehashes
    fresh = ImageCache(tmp_path / "cache", 64)
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: (_ for _ in ()).throw(AssertionError("rehashed")))
    np.testing.assert_array_equal(fresh.get(src), first)
    assert (fresh.decodes, fresh.hits) == (0, 1)


def test_keyed_by_content_not_path(tmp_path, monkeypatch):
    src = _image(tmp_path / "a.jpg")
    cache = ImageCache(tmp_path / "cache", 32)
    arr = cache.get(src)
    copy = tmp_path / "renamed.jpg"
    shutil.copy(src, copy)
    np.testing.assert_array_equal(cache.get(copy), arr)
    assert cache.decodes == 1
    # an edited file (new content, new mtime) is decoded again
    _image(src, seed=5, size=(200, 100))
    os.utime(src, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns + 10**9))
    cache.get(src)
    assert cache.decodes == 2
    # sizes are cached apart
    assert ImageCache(tmp_path / "cache", 48).get(src).shape == (48, 48, 3)


def test_damaged_entry_is_rebuilt(tmp_path):
    src = _image(tmp_path / "a.jpg")
    cache = ImageCache(tmp_path / "cache", 32)
    arr = cache.get(src)
    entry = cache.entry_path(cache.content_sha256(src))
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.get(src), arr)
    assert cache.decodes == 2


def test_bad_original_raises_with_path(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(ImageError, match="bad.jpg: file is empty"):
        ImageCache(tmp_path / "cache", 32).get(bad)
    with pytest.raises(ValueError, match="positive"):
        ImageCache(tmp_path / "cache", 0)


def test_warm_with_workers_then_only_hits(tmp_path, monkeypatch):
    paths = [_image(tmp_path / f"{i}.jpg", seed=i, size=(160, 120)) for i in range(20)]
    cache = ImageCache(tmp_path / "cache", 32)
    assert cache.warm(paths, workers=2) == 20
    assert cache.warm(paths, workers=2) == 0
    _no_decoding(monkeypatch)
    for p in paths:
        assert cache.get(p).shape == (32, 32, 3)
    assert cache.hits == 20
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_dataloader_workers_share_the_cache(tmp_path):
    import torch
    from torch.utils.data import DataLoader, Dataset

    paths = [_image(tmp_path / f"{i}.jpg", seed=i, size=(96, 72)) for i in range(8)]

    class Images(Dataset):
        def __init__(self):
            self.cache = ImageCache(tmp_path / "cache", 24)

        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return torch.from_numpy(self.cache.get(paths[i]).copy())

    for _ in range(2):  # two "epochs" with two worker processes each
        batches = list(DataLoader(Images(), batch_size=4, num_workers=2))
        assert [b.shape for b in batches] == [(4, 24, 24, 3)] * 2
    assert len(list((tmp_path / "cache" / f"24px-v{DECODE_VERSION}").rglob("*.npy"))) == 8


def test_pack_is_the_cached_images_in_order_and_follows_content(tmp_path):
    a, b = _image(tmp_path / "a.jpg", seed=1), _image(tmp_path / "b.jpg", seed=2)
    cache = ImageCache(tmp_path / "cache", 32)
    path = cache.pack([b, a, b])
    arr = np.load(path, mmap_mode="r")
    assert arr.shape == (3, 32, 32, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr[0], cache.get(b)) and np.array_equal(arr[1], cache.get(a))
    assert np.array_equal(arr[2], arr[0])
    mtime = path.stat().st_mtime_ns
    assert ImageCache(tmp_path / "cache", 32).pack([b, a, b]) == path and path.stat().st_mtime_ns == mtime  # reused
    _image(a, seed=3)  # edited content: another pack
    assert cache.pack([b, a, b]) != path
    with pytest.raises(ValueError, match="empty"):
        cache.pack([])


def test_pack_file_is_byte_identical_to_a_saved_array(tmp_path):
    """The streamed writer makes the same .npy as np.save / open_memmap (packs written before it
    stay valid and are reused); a memory-mapped reader sees every image."""
    paths = [_image(tmp_path / f"{i}.jpg", seed=i) for i in range(5)]
    cache = ImageCache(tmp_path / "cache", 24)
    path = cache.pack(paths)
    expected = tmp_path / "expected.npy"
    np.save(expected, np.stack([cache.get(p) for p in paths]))
    assert path.read_bytes() == expected.read_bytes()
    legacy = np.lib.format.open_memmap(tmp_path / "legacy.npy", mode="w+", dtype=np.uint8, shape=(5, 24, 24, 3))
    legacy[:] = np.load(expected)
    legacy.flush()
    del legacy
    assert (tmp_path / "legacy.npy").read_bytes() == path.read_bytes()
