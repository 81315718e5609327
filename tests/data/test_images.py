"""Bad-input catalogue for kvasir_ml.data.images: every odd file gives RGB or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.data.images import ImageError, image_size, load_rgb


def _jpeg(path, size=(64, 48), colour=(200, 50, 40)):
    Image.new("RGB", size, colour).save(path, quality=90)
    return path


@pytest.mark.parametrize(
    "mode, make, expect_rgb",
    [
        ("L", lambda: Image.new("L", (20, 10), 128), (128, 128, 128)),
        ("1", lambda: Image.new("1", (20, 10), 1), (255, 255, 255)),
        ("P", lambda: Image.new("RGB", (20, 10), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), (10, 200, 30)),
        ("RGBA", lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 0)), (0, 0, 0)),  # transparent -> black
        ("RGBA-opaque", lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 255)), (255, 0, 0)),
        ("LA", lambda: Image.new("LA", (20, 10), (200, 255)), (200, 200, 200)),
        ("I;16", lambda: Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)), (255, 255, 255)),
        ("I;16-low", lambda: Image.fromarray(np.full((10, 20), 100, dtype=np.uint16)), (100, 100, 100)),
    ],
)
def test_png_modes_become_8bit_rgb(tmp_path, mode, make, expect_rgb):
    path = tmp_path / f"{mode}.png"
    make().save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8
    assert tuple(int(v) for v in rgb[5, 5]) == pytest.approx(expect_rgb, abs=2)


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    rgb = load_rgb(path)
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255  # scaled, not clipped


def test_twelve_bit_data_in_a_sixteen_bit_png_uses_its_own_depth(tmp_path):
    ramp = np.linspace(0, 4095, 256, dtype=np.uint16).reshape(16, 16)  # a 12-bit sensor
    path = tmp_path / "ramp12.png"
    Image.fromarray(ramp).save(path)
    rgb = load_rgb(path)
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255  # not squashed into 0..16


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # red in CMYK
    rgb = load_rgb(path)
    assert rgb.shape == (16, 16, 3)
    r, g, b = (int(v) for v in rgb[8, 8])
    assert r > 200 and g < 60 and b < 60


def test_rgb_jpeg_and_draft(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", size=(800, 600))
    assert load_rgb(path).shape == (600, 800, 3)
    small = load_rgb(path, draft_size=(200, 150))
    assert small.shape[0] >= 150 and small.shape[1] >= 200 and small.shape[1] < 800  # decoder downscaled
    assert image_size(path) == (800, 600)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jpg", b"", "file is empty \\(0 bytes\\)"),
        ("text.jpg", b"this is not an image at all", "not a recognised image format"),
        ("random.png", bytes(range(256)) * 4, "not a recognised image format"),
    ],
)
def test_unusable_files_raise_with_path(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    for fn in (load_rgb, image_size):
        with pytest.raises(ImageError, match=message) as info:
            fn(path)
        assert info.value.path == str(path) and str(path) in str(info.value)


def test_truncated_jpeg_is_an_error_not_grey(tmp_path):
    full = _jpeg(tmp_path / "full.jpg", size=(256, 256))
    data = full.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated.jpg: cannot decode image"):
        load_rgb(path)


def test_truncated_png_is_an_error(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png: cannot decode image"):
        load_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="does not exist"):
        image_size(tmp_path / "nope.jpg")
