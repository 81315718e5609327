"""Detection fixtures: a tiny hand-made box dataset (with a basename collision) and a
network guard that makes any non-loopback connection or DNS lookup fail loudly."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kvasir_ml.data.coco import CanonicalDataset


class NetworkAttempt(OSError):
    """Raised instead of touching the network (an OSError, like a real unreachable host)."""


_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


@contextlib.contextmanager
def network_guard():
    """Any connection or DNS lookup beyond loopback raises ``NetworkAttempt`` and is recorded."""
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        host = str(address[0] if isinstance(address, tuple) else address)
        if self.family == socket.AF_UNIX or host.startswith(_LOOPBACK):
            return real_connect(self, address)
        attempts.append(f"connect {address}")
        raise NetworkAttempt(f"network access attempted: connect {address}")

    def getaddrinfo(host, *args, **kwargs):
        if host is None or str(host).startswith(_LOOPBACK):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(f"getaddrinfo {host}")
        raise NetworkAttempt(f"network access attempted: DNS lookup of {host}")

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        yield attempts
    finally:
        mp.undo()


@pytest.fixture
def no_network():
    with network_guard() as attempts:
        yield attempts


@pytest.fixture(scope="module")
def no_network_module():
    """The same guard for a module-scoped fixture (one training shared by several tests)."""
    with network_guard() as attempts:
        yield attempts


def make_box_dataset(out: Path, n: int = 12, seed: int = 0, size_px=(160, 128)) -> Path:
    """Frames with a reddish blob ("polyp") and/or a blue patch ("resection-margin").

    Images live in two folders with the same basenames (``a/0.jpg`` and ``b/0.jpg``) so that
    exports must keep them apart. Returns the canonical file (file_names relative to ``out``).
    """
    rng = np.random.default_rng(seed)
    ds = CanonicalDataset.new("synthetic")
    width, height = size_px
    for i in range(n):
        folder = "a" if i % 2 == 0 else "b"
        rel = f"{folder}/{i // 2}.jpg"
        base = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
        img = Image.fromarray(base)
        draw = ImageDraw.Draw(img)
        boxes = []
        for cls, colour in (("polyp", (220, 60, 50)), ("resection-margin", (40, 60, 220))):
            if cls == "polyp" or i % 3 == 0:
                w, h = rng.integers(24, 56), rng.integers(24, 48)
                x, y = rng.integers(0, width - w), rng.integers(0, height - h)
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
                boxes.append((cls, [float(x), float(y), float(w), float(h)]))
        (out / folder).mkdir(parents=True, exist_ok=True)
        img.save(out / rel, quality=95)
        labels = sorted({c for c, _ in boxes})
        image_id = ds.add_image(rel, width, height, labels, "synthetic", "polyps", inset="none", inset_box=None)
        for cls, box in boxes:
            ds.add_box(image_id, cls, box)
    path = out / "annotations.coco.json"
    ds.save(path, keep_backup=False)
    return path


@pytest.fixture
def box_dataset(tmp_path) -> Path:
    return make_box_dataset(tmp_path / "boxes")
