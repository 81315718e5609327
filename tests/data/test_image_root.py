"""Canonical files remember their image root: `data index ... --out data/x.coco.json` then
`data split data/x.coco.json` (the help's own example) works without --root; CVC-ClinicDB indexing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.image_root import ROOT_KEY, image_root, remember_image_root
from kvasir_ml.data.sources import index_cvc_clinicdb


def _blocks(path: Path, seed: int) -> None:
    """A frame of random 8x8 colour blocks: every seed gives a different perceptual hash."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize((96, 80), Image.NEAREST).save(path, quality=95)


def test_split_after_index_finds_the_images_without_root(tmp_path, monkeypatch, capsys):
    src = tmp_path / "downloads" / "kvasir-v2"
    for i in range(24):
        _blocks(src / ("polyps" if i % 2 else "normal-cecum") / f"{i}.jpg", seed=i)
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)  # relative paths, as a user types them
    assert cli_main(["data", "index", "kvasir-v2", str(src), "--out", "data/x.coco.json", "--workers", "0"]) == 0
    info = json.loads(Path("data/x.coco.json").read_text())["info"]
    assert info[ROOT_KEY] == "../../downloads/kvasir-v2"  # relative to the file's folder
    assert cli_main(["data", "split", "data/x.coco.json", "--out", "data/x.split.json"]) == 0
    split = json.loads(Path("data/x.split.json").read_text())
    assert sum(split["counts"].values()) == 24
    # an explicit --root still wins: a wrong one is reported by name
    assert cli_main(["data", "split", "data/x.coco.json", "--out", "data/y.split.json", "--root", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_image_root_rules(tmp_path):
    canonical = tmp_path / "a" / "x.coco.json"
    assert image_root(canonical, info={}) == tmp_path / "a"  # old files: their own folder
    assert image_root(canonical, given="elsewhere", info={ROOT_KEY: "../imgs"}) == Path("elsewhere")
    info: dict = {}
    assert remember_image_root(info, tmp_path / "imgs", canonical) == "../imgs"
    assert image_root(canonical, info=info).resolve() == (tmp_path / "imgs").resolve()


@pytest.mark.realdata
def test_cvc_clinicdb_boxes_come_from_its_masks(shared_data):
    result = index_cvc_clinicdb(shared_data / "cvc-clinicdb-sample", workers=0)
    ds = result.dataset
    assert result.problems == [] and len(ds.images) == 20 and ds.info["boxes_from"] == "masks"
    boxes = ds.boxes_by_image()
    for img in ds.images:
        assert img["source"] == "cvc-clinicdb" and img["labels"] == ["polyp"]
        assert boxes[img["id"]] and all(a["box_origin"] == "mask" for a in boxes[img["id"]])


def test_cvc_clinicdb_frame_without_mask_is_reported(tmp_path):
    _blocks(tmp_path / "images" / "1_fram.jpg", seed=1)
    _blocks(tmp_path / "images" / "2_fram.jpg", seed=2)
    mask = np.zeros((80, 96), dtype=np.uint8)
    mask[20:50, 30:70] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "1_mask.png")
    result = index_cvc_clinicdb(tmp_path, workers=0)
    boxes = result.dataset.boxes_by_image()
    by_name = {img["file_name"]: boxes.get(img["id"], []) for img in result.dataset.images}
    assert [a["bbox"] for a in by_name["images/1_fram.jpg"]] == [[30.0, 20.0, 40.0, 30.0]]
    assert by_name["images/2_fram.jpg"] == []
    assert [p.path for p in result.problems] == ["images/2_fram.jpg"]
