"""Every bad input named: one odd image (a decompression bomb, a 1-px-high frame, a missing
file) is a named, reported skip; indexing and predict keep everything else. (Frames under
``MIN_FRAME_SIDE_PX`` a side are such skips since issue 19.)"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import dump_config
from kvasir_ml.data.images import ImageError, image_size, load_rgb
from kvasir_ml.data.sources import index_kvasir_v2
from kvasir_ml.models.classifier import KvasirClassifier
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.checkpoint import save_checkpoint
from kvasir_ml.train.config import load_classifier_config

REPO = Path(__file__).resolve().parents[2]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a bomb is refused before its data is read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _frame(path: Path, size=(64, 48), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(60, 200, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.mark.parametrize("width, height", [(20_000, 20_000), (10_000, 9_000)])  # above 2x and 1x PIL's limit
def test_decompression_bomb_is_refused_from_its_header(tmp_path, width, height):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(width, height))
    for read in (load_rgb, image_size):
        with pytest.raises(ImageError, match=r"bomb.png: refused: .*(decompression bomb|Mpx)"):
            read(bomb)


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """Kvasir v2 layout with a bomb, 1-px-high frames and one image filed under two classes."""
    root = tmp_path / "kvasir-v2"
    good = _frame(root / "polyps" / "good.png")
    (root / "polyps" / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    _frame(root / "polyps" / "one.png", size=(1, 1), seed=1)
    _frame(root / "polyps" / "wide.png", size=(640, 1), seed=2)
    _frame(root / "polyps" / "tall.png", size=(1, 480), seed=3)
    (root / "ulcerative-colitis").mkdir()
    shutil.copy(good, root / "ulcerative-colitis" / "same.png")
    return root


def test_index_names_the_bomb_and_tiny_frames_and_flags_conflicting_twins(odd_folder, tmp_path, capsys):
    result = index_kvasir_v2(odd_folder, workers=0)
    indexed = sorted(img["file_name"] for img in result.dataset.images)
    assert indexed == ["polyps/good.png", "ulcerative-colitis/same.png"]
    by_path = {(p.path, p.severity): p.reason for p in result.problems}
    assert "decompression bomb" in by_path[("polyps/bomb.png", "error")]
    for name, size in (("one", "1x1"), ("wide", "640x1"), ("tall", "1x480")):
        assert f"frame is {size} px, smaller than the minimum" in by_path[(f"polyps/{name}.png", "error")]
    for one, other in (("polyps/good.png", "ulcerative-colitis/same.png"), ("ulcerative-colitis/same.png", "polyps/good.png")):
        assert other in by_path[(one, "warning")] and "conflicting labels" in by_path[(one, "warning")]
    rc = cli_main(["data", "index", "kvasir-v2", str(odd_folder), "--out", str(tmp_path / "v2.json"), "--workers", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and "polyps/bomb.png" in out and "same image, different class" in out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained classifier checkpoint (no training needed to test the plumbing) and an
    ultralytics detector checkpoint as ultralytics writes it."""
    from kvasir_ml.detection.ultralytics_env import ensure_ultralytics

    out = tmp_path_factory.mktemp("ckpts")
    cfg = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", ["tracking.mode=disabled"])
    tax = load_taxonomy()
    m = cfg.model
    model = KvasirClassifier(m.arch, len(tax.label_names), m.inset_mode, m.branch_features, m.dropout)
    save_checkpoint(out / "classifier.pt", {
        "model": model.state_dict(), "config": dump_config(cfg), "label_names": list(tax.label_names),
        "class_names": list(tax.source("kvasir-v2").classes), "thresholds": [0.5] * len(tax.label_names), "epoch": 0})
    ensure_ultralytics()
    from ultralytics import YOLO

    YOLO("yolov8n.yaml").save(out / "detector.pt")
    return out / "classifier.pt", out / "detector.pt"


def test_predict_keeps_good_results_names_failures_and_exits_1(odd_folder, checkpoints, tmp_path, capsys):
    classifier, detector = checkpoints
    images = [odd_folder / "polyps" / n for n in ("good.png", "bomb.png", "one.png", "wide.png", "tall.png")]
    images.append(odd_folder / "missing.jpg")
    out = tmp_path / "pred.json"
    rc = cli_main(["predict", "--classifier", str(classifier), "--detector", str(detector), "--device", "cpu",
                   "--out", str(out), *map(str, images)])
    err = capsys.readouterr().err
    assert rc == 1 and "5 of 6 images failed" in err and "bomb.png" in err and "missing.jpg" in err
    entries = {Path(e["image"]).name: e for e in json.loads(out.read_text())}
    assert list(entries) == [p.name for p in images]  # every image has its entry, in order
    assert "decompression bomb" in entries["bomb.png"]["error"] and "does not exist" in entries["missing.jpg"]["error"]
    for name in ("one.png", "wide.png", "tall.png"):  # under MIN_FRAME_SIDE_PX a side: named, not predicted
        assert "smaller than the minimum" in entries[name]["error"]
    for name in ("good.png",):
        assert "error" not in entries[name], entries[name]
        assert len(entries[name]["labels"]) == len(load_taxonomy().label_names)
        width, height = Image.open(odd_folder / "polyps" / name).size
        for box in entries[name]["boxes"]:  # an untrained detector: any boxes, but well-formed ones
            x, y, w, h = box["xywh_px"]
            assert box["class"] in load_taxonomy().box_class_names and 0.0 <= box["score"] <= 1.0, box
            assert 0 <= w and 0 <= h and -0.5 <= x and -0.5 <= y and x + w <= width + 0.5 and y + h <= height + 0.5


def test_a_model_failing_on_one_image_costs_only_that_image(tmp_path):
    from kvasir_ml.inference.combined import _apply

    paths = [tmp_path / f"{i}.png" for i in range(4)]
    entries = [{"image": str(p)} for p in paths]

    def run(batch, insets):
        if paths[2] in batch:
            raise ValueError("odd image")
        return [f"ok {p.name}" for p in batch]

    _apply("classifier", run, entries, paths, [None] * 4, lambda entry, out: entry.__setitem__("out", out))
    assert [e.get("out") for e in entries] == ["ok 0.png", "ok 1.png", None, "ok 3.png"]
    assert entries[2]["error"] == "classifier failed: ValueError: odd image"
