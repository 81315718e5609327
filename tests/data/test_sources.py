"""Indexers: real Kvasir v2 samples, Kvasir-SEG boxes, HyperKvasir CSV labels, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.sources import (
    IndexingError,
    boxes_from_mask,
    index_hyperkvasir,
    index_kvasir_seg,
    index_kvasir_v2,
)
from kvasir_ml.taxonomy import load_taxonomy

UPPER_GI = {"esophagitis", "normal-z-line", "normal-pylorus"}


def _frame(path: Path, size=(96, 80), seed=0) -> Path:
    """A small reddish frame with noise, so JPEGs differ by seed (different content hashes)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[...] = (170, 80, 70)
    arr += rng.integers(0, 40, arr.shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)
    return path


def _by_path(problems):
    return {p.path: p for p in problems}


# ---- Kvasir v2 ------------------------------------------------------------------------
def test_kvasir_v2_real_samples(shared_data):
    root = shared_data / "kvasir-v2-samples"
    result = index_kvasir_v2(root, strict=True)  # ignored folders never fail strict mode
    ds, tx = result.dataset, load_taxonomy()
    expected = sorted(
        p.relative_to(root).as_posix()
        for p in root.glob("*/*.jpg")
        if p.parent.name not in ("unlabeled", "dyed-unspecified")
    )
    assert sorted(img["file_name"] for img in ds.images) == expected
    for img in ds.images:
        cls = img["file_name"].split("/")[0]
        assert img["source_class"] == cls and img["source"] == "kvasir-v2"
        assert img["labels"] == tx.labels_for("kvasir-v2", cls)
        assert img["inset"] in ("green", "black", "none") and len(img["content_sha256"]) == 64
        if cls in UPPER_GI:
            assert img["inset"] != "green"
        with Image.open(root / img["file_name"]) as im:
            assert (img["width"], img["height"]) == im.size
    problems = _by_path(result.problems)
    assert problems["unlabeled/"].severity == "ignored" and "7 files not indexed" in problems["unlabeled/"].reason
    assert problems["dyed-unspecified/"].severity == "ignored"


def test_kvasir_v2_unknown_folder_and_bad_files(tmp_path):
    _frame(tmp_path / "polyps" / "a.jpg")
    _frame(tmp_path / "polyps" / "b.jpg", seed=1)
    (tmp_path / "polyps" / "empty.jpg").write_bytes(b"")
    (tmp_path / "polyps" / "notes.txt").write_text("x")
    _frame(tmp_path / "gastric-cancer" / "c.jpg")
    (tmp_path / "normal-cecum").mkdir()
    Image.new("L", (40, 32), 90).save(tmp_path / "normal-cecum" / "grey.png")
    _frame(tmp_path / "unlabeled" / "u.jpg")
    _frame(tmp_path / "loose.jpg")
    (tmp_path / "README.md").write_text("about")
    result = index_kvasir_v2(tmp_path)
    assert sorted(img["file_name"] for img in result.dataset.images) == ["normal-cecum/grey.png", "polyps/a.jpg", "polyps/b.jpg"]
    problems = _by_path(result.problems)
    assert problems["gastric-cancer/"].severity == "error" and "unknown class folder 'gastric-cancer'" in problems["gastric-cancer/"].reason
    assert "0 bytes" in problems["polyps/empty.jpg"].reason and problems["polyps/empty.jpg"].severity == "error"
    assert "not an image file" in problems["polyps/notes.txt"].reason
    assert "grayscale" in problems["normal-cecum/grey.png"].reason and problems["normal-cecum/grey.png"].severity == "warning"
    assert problems["unlabeled/"].severity == "ignored" and problems["README.md"].severity == "ignored"
    assert problems["loose.jpg"].severity == "error" and "has no class" in problems["loose.jpg"].reason
    assert "gastric-cancer" in result.report()
    with pytest.raises(IndexingError, match="gastric-cancer") as info:
        index_kvasir_v2(tmp_path, strict=True)
    assert len(info.value.problems) == 5  # everything but the ignored folder and README


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli_main(["data", "synth", "--out", str(out), "--images", "8", "--seed", "1"]) == 0
    assert str(out / "annotations.coco.json") in capsys.readouterr().out
    ds = load_canonical(out / "annotations.coco.json")
    assert len(ds.images) == 8 and all((out / img["file_name"]).exists() for img in ds.images)


def test_cli_index_and_stats(tmp_path, shared_data, capsys):
    out = tmp_path / "v2.json"
    assert cli_main(["data", "index", "kvasir-v2", str(shared_data / "kvasir-v2-samples"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "unlabeled/" in text and f"wrote {out}" in text
    raw = json.loads(out.read_text())
    assert all({"labels", "source_class", "inset", "width", "height"} <= set(img) for img in raw["images"])
    assert cli_main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_images"] == len(raw["images"]) and stats["labels"]["cecum"] == 3
    assert cli_main(["data", "stats", str(out)]) == 0
    assert "inset" in capsys.readouterr().out
    # strict mode on an unknown folder: exit code 2 and a message naming the folder
    bad = tmp_path / "bad"
    _frame(bad / "mystery" / "x.jpg")
    assert cli_main(["data", "index", "kvasir-v2", str(bad), "--out", str(tmp_path / "b.json"), "--strict"]) == 2
    assert "mystery" in capsys.readouterr().err


# ---- Kvasir-SEG -----------------------------------------------------------------------
def test_kvasir_seg_reproduces_every_json_box(shared_data, tmp_path):
    from pycocotools.coco import COCO

    root = shared_data / "kvasir-seg"
    result = index_kvasir_seg(root)
    ds = result.dataset
    assert result.problems == [] and len(ds.images) == 1000
    reference = json.loads((root / "kavsir_bboxes.json").read_text())
    boxes = ds.boxes_by_image()
    n_boxes = 0
    for img in ds.images:
        entry = reference[Path(img["file_name"]).stem]
        assert (img["width"], img["height"]) == (entry["width"], entry["height"])
        got = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]) for a in boxes[img["id"]]]
        want = [(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in entry["bbox"]]
        assert got == want, img["file_name"]  # exact, in the JSON's order
        n_boxes += len(want)
    assert n_boxes == len(ds.annotations) == 1071
    states = {s: sum(img["inset"] == s for img in ds.images) for s in ("green", "black", "none")}
    assert states["black"] >= 500 and states["green"] <= 30
    path = tmp_path / "seg.json"
    ds.save(path)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 1000 and len(coco.getAnnIds()) == 1071


def test_mask_boxes_match_json_on_real_masks(shared_data):
    root = shared_data / "kvasir-seg"
    reference = json.loads((root / "kavsir_bboxes.json").read_text())
    ids = sorted(reference)[:150]
    close = 0
    for key in ids:
        mask = np.asarray(Image.open(root / "masks" / f"{key}.jpg"))
        derived = boxes_from_mask(mask)
        want = [(b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]) for b in reference[key]["bbox"]]
        close += len(derived) == len(want) and all(
            any(max(abs(a - b) for a, b in zip(w, d)) <= 3 for d in derived) for w in want
        )
    assert close >= 0.9 * len(ids)


def test_mask_boxes_on_cvc_clinicdb(shared_data):
    masks = sorted((shared_data / "cvc-clinicdb-sample" / "masks").glob("*"))
    assert len(masks) == 20
    for path in masks:
        mask = np.asarray(Image.open(path).convert("L"))
        boxes = boxes_from_mask(mask)
        assert boxes, path.name
        fg = mask > 127
        covered = np.zeros_like(fg)
        for x, y, w, h in boxes:
            assert 0 <= x and 0 <= y and x + w <= mask.shape[1] and y + h <= mask.shape[0]
            covered[int(y) : int(y + h), int(x) : int(x + w)] = True
        assert (fg & ~covered).sum() <= 0.01 * fg.sum()  # only speckle lies outside the boxes


def test_kvasir_seg_boxes_from_masks_without_json(shared_data, tmp_path):
    src = shared_data / "kvasir-seg"
    reference = json.loads((src / "kavsir_bboxes.json").read_text())
    ids = sorted(reference)[:12]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for key in ids:
            shutil.copy(src / sub / f"{key}.jpg", tmp_path / sub)
    result = index_kvasir_seg(tmp_path, workers=0)
    assert result.problems == [] and result.dataset.info["boxes_from"] == "masks"
    boxes = result.dataset.boxes_by_image()
    assert len(result.dataset.images) == len(ids)
    same_count = 0
    for img in result.dataset.images:
        got = boxes[img["id"]]
        assert got and all(a["box_origin"] == "mask" for a in got)
        same_count += len(got) == len(reference[Path(img["file_name"]).stem]["bbox"])
    assert same_count >= len(ids) - 2  # touching polyps can merge into one mask component


def _seg_bad_input(root: Path) -> None:
    """A Kvasir-SEG folder holding one of each bad input."""
    _frame(root / "images" / "good.jpg", size=(100, 80))
    (root / "images" / "empty.jpg").parent.mkdir(exist_ok=True)
    (root / "images" / "empty.jpg").write_bytes(b"")
    data = _frame(root / "tmp.jpg", size=(100, 80), seed=3).read_bytes()
    (root / "tmp.jpg").unlink()
    (root / "images" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("L", (100, 80), 100).save(root / "images" / "grey.png")
    Image.new("RGBA", (100, 80), (200, 0, 0, 255)).save(root / "images" / "rgba.png")
    Image.new("CMYK", (100, 80), (0, 200, 200, 0)).save(root / "images" / "cmyk.jpg")
    Image.fromarray(np.full((80, 100), 30000, dtype=np.uint16)).save(root / "images" / "deep.png")
    _frame(root / "images" / "no_entry.jpg", size=(100, 80), seed=4)
    _frame(root / "images" / "no_entry_no_mask.jpg", size=(100, 80), seed=5)
    (root / "images" / "README.txt").write_text("not an image")
    (root / "masks").mkdir()
    mask = np.zeros((80, 100), dtype=np.uint8)
    mask[10:30, 20:60] = 255
    Image.fromarray(mask).save(root / "masks" / "no_entry.png")
    ok = {"label": "polyp", "xmin": 10, "ymin": 5, "xmax": 50, "ymax": 40}
    entries = {
        "good": {"width": 100, "height": 80, "bbox": [ok, dict(ok, xmax=150), dict(ok, xmax=10)]},
        "grey": {"width": 100, "height": 80, "bbox": [ok]},
        "rgba": {"width": 90, "height": 80, "bbox": [ok]},  # size disagrees with the file
        "cmyk": {"width": 100, "height": 80, "bbox": [dict(ok, label="tumour")]},
        "deep": {"width": 100, "height": 80, "bbox": [{"label": "polyp", "xmin": 1}]},
        "truncated": {"width": 100, "height": 80, "bbox": [ok]},
        "empty": {"width": 100, "height": 80, "bbox": [ok]},
        "ghost": {"width": 100, "height": 80, "bbox": [ok]},
        "broken": ["not", "an", "entry"],
    }
    (root / "kavsir_bboxes.json").write_text(json.dumps(entries))


def test_kvasir_seg_bad_input_catalogue(tmp_path):
    _seg_bad_input(tmp_path)
    result = index_kvasir_seg(tmp_path, workers=0)
    ds = result.dataset
    indexed = sorted(img["file_name"] for img in ds.images)
    assert indexed == sorted(f"images/{n}" for n in ("good.jpg", "grey.png", "rgba.png", "cmyk.jpg", "deep.png", "no_entry.jpg", "no_entry_no_mask.jpg"))
    text = "\n".join(str(p) for p in result.problems)
    expectations = [
        ("error", "images/empty.jpg", "0 bytes"),
        ("error", "images/truncated.jpg", "cannot decode"),
        ("error", "images/README.txt", "not an image file"),
        ("warning", "images/grey.png", "grayscale"),
        ("warning", "images/rgba.png", "alpha channel"),
        ("warning", "images/rgba.png", "says 90x80, the file is 100x80"),
        ("warning", "images/cmyk.jpg", "CMYK"),
        ("warning", "images/deep.png", "16-bit"),
        ("error", "images/good.jpg", "box 1 (json) skipped: images/good.jpg: box [10.0, 5.0, 140.0, 35.0] (x, y, w, h px) lies outside"),
        ("error", "images/good.jpg", "box 2 (json) skipped: images/good.jpg: box [10.0, 5.0, 0.0, 35.0] has zero or negative size"),
        ("error", "images/cmyk.jpg", "unknown box class 'tumour'"),
        ("error", "images/deep.png", "is not {xmin, ymin, xmax, ymax} numbers"),
        ("warning", "images/no_entry.jpg", "no entry in kavsir_bboxes.json; boxes derived from its mask"),
        ("warning", "images/no_entry_no_mask.jpg", "no mask either"),
        ("error", "kavsir_bboxes.json#ghost", "JSON entry has no image"),
        ("error", "kavsir_bboxes.json#broken", "no 'bbox' list"),
    ]
    for severity, path, fragment in expectations:
        assert any(p.severity == severity and p.path == path and fragment in p.reason for p in result.problems), (
            f"missing {severity} {path}: {fragment}\n{text}"
        )
    by_file = {img["file_name"]: img["id"] for img in ds.images}
    boxes = ds.boxes_by_image()
    assert [a["bbox"] for a in boxes[by_file["images/good.jpg"]]] == [[10, 5, 40, 35]]
    assert [a["bbox"] for a in boxes[by_file["images/no_entry.jpg"]]] == [[20, 10, 40, 20]]
    assert boxes[by_file["images/cmyk.jpg"]] == [] and boxes[by_file["images/no_entry_no_mask.jpg"]] == []
    with pytest.raises(IndexingError, match="empty.jpg"):
        index_kvasir_seg(tmp_path, workers=0, strict=True)


# ---- HyperKvasir ----------------------------------------------------------------------
ORGAN_FOLDERS = {"Lower GI": "lower-gi-tract", "Upper GI": "upper-gi-tract"}


def _hyperkvasir_tree(shared_data: Path, root: Path, per_finding: int = 2):
    """labeled-images/<organ>/<classification>/<finding>/<uuid>.jpg for real CSV rows."""
    src = shared_data / "hyperkvasir"
    rows = list(csv.DictReader(open(src / "image-labels.csv", encoding="utf-8")))
    boxes = json.loads((src / "bounding-boxes.json").read_text())
    chosen: dict[str, list[dict]] = {}
    for row in rows:
        if len(chosen.setdefault(row["Finding"], [])) < per_finding and row["Video file"] not in boxes:
            chosen[row["Finding"]].append(row)
    seg_uuid = next(iter(boxes))
    seg_row = next(r for r in rows if r["Video file"] == seg_uuid)
    chosen["polyps"].append(seg_row)
    labeled = root / "labeled-images"
    labeled.mkdir(parents=True)
    shutil.copy(src / "image-labels.csv", labeled / "image-labels.csv")
    files = {}
    for i, row in enumerate(r for rs in chosen.values() for r in rs):
        folder = labeled / ORGAN_FOLDERS[row["Organ"]] / row["Classification"] / row["Finding"]
        size = (boxes[seg_uuid]["width"], boxes[seg_uuid]["height"]) if row is seg_row else (64, 48)
        files[row["Video file"]] = _frame(folder / f"{row['Video file']}.jpg", size=size, seed=i)
    seg = root / "segmented-images"
    (seg / "images").mkdir(parents=True)
    shutil.copy(files[seg_uuid], seg / "images" / f"{seg_uuid}.jpg")
    (seg / "bounding-boxes.json").write_text(json.dumps({seg_uuid: boxes[seg_uuid]}))
    return chosen, seg_uuid, boxes[seg_uuid], len(rows)


def test_hyperkvasir_labels_from_real_csv(shared_data, tmp_path):
    chosen, seg_uuid, seg_entry, n_rows = _hyperkvasir_tree(shared_data, tmp_path)
    tx = load_taxonomy()
    result = index_hyperkvasir(tmp_path, workers=0)
    ds = result.dataset
    by_stem = {Path(img["file_name"]).stem: img for img in ds.images}
    n_chosen = sum(len(v) for v in chosen.values())
    assert len(ds.images) == n_chosen  # the segmented twin is not indexed twice
    assert len({row["Finding"] for rs in chosen.values() for row in rs}) == 23
    for rows in chosen.values():
        for row in rows:
            img = by_stem[row["Video file"]]
            assert img["source_class"] == tx.source("hyperkvasir").canonical_class(row["Finding"])
            assert img["labels"] == tx.labels_for("hyperkvasir", row["Finding"])
    twin = by_stem[seg_uuid]
    assert twin["segmented_file_name"] == f"segmented-images/images/{seg_uuid}.jpg"
    got = [a["bbox"] for a in ds.boxes_by_image()[twin["id"]]]
    want = [[b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]] for b in seg_entry["bbox"]]
    assert got == want
    missing = [p for p in result.problems if p.kind == "CSV row without image"]
    assert len(missing) == n_rows - n_chosen
    assert {p.severity for p in result.problems if p.kind != "CSV row without image"} <= {"ignored"}


def test_hyperkvasir_folder_disagreements(shared_data, tmp_path):
    chosen, *_ = _hyperkvasir_tree(shared_data, tmp_path, per_finding=1)
    labeled = tmp_path / "labeled-images"
    # an image filed under the wrong finding, one not in the CSV, one in an unknown folder
    moved_row = chosen["cecum"][0]
    src = next(labeled.rglob(f"{moved_row['Video file']}.jpg"))
    dst = labeled / "lower-gi-tract" / "anatomical-landmarks" / "ileum" / src.name
    src.rename(dst)
    _frame(labeled / "upper-gi-tract" / "anatomical-landmarks" / "pylorus" / "not-in-csv.jpg")
    _frame(labeled / "upper-gi-tract" / "pathological-findings" / "gastric-cancer" / "mystery.jpg")
    _frame(labeled / "stray.jpg")
    result = index_hyperkvasir(tmp_path, workers=0)
    by_stem = {Path(img["file_name"]).stem: img for img in result.dataset.images}
    assert by_stem[moved_row["Video file"]]["source_class"] == "cecum"  # the CSV wins
    assert by_stem["not-in-csv"]["source_class"] == "pylorus"
    assert "mystery" not in by_stem
    problems = {p.path.rsplit("/", 1)[-1]: p for p in result.problems}
    assert problems[dst.name].severity == "warning" and "disagrees with the CSV class 'cecum'" in problems[dst.name].reason
    assert problems["not-in-csv.jpg"].severity == "warning" and "taken from the folder" in problems["not-in-csv.jpg"].reason
    assert problems["mystery.jpg"].severity == "error" and "not a known class" in problems["mystery.jpg"].reason
    assert problems["stray.jpg"].severity == "error" and "<organ>/<classification>/<finding>" in problems["stray.jpg"].reason


def test_hyperkvasir_metadata_only_reports_every_row(shared_data):
    result = index_hyperkvasir(shared_data / "hyperkvasir", workers=0)
    assert result.dataset.images == []
    assert result.counts()["error"] == 10662  # every CSV row lacks its image; none dropped silently
    assert "CSV row without image" in result.report()


@pytest.mark.slow
def test_kvasir_seg_all_masks_match_json(shared_data, tmp_path):
    """All 1000 Kvasir-SEG masks: derived boxes vs kavsir_bboxes.json (about 10-15 s)."""
    root = shared_data / "kvasir-seg"
    reference = json.loads((root / "kavsir_bboxes.json").read_text())
    result = index_kvasir_seg(root, boxes_json=None)
    assert result.problems == [] and len(result.dataset.images) == 1000
    boxes = result.dataset.boxes_by_image()
    close = 0
    for img in result.dataset.images:
        want = [(b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]) for b in reference[Path(img["file_name"]).stem]["bbox"]]
        got = [a["bbox"] for a in boxes[img["id"]]]
        close += len(got) == len(want) and all(any(max(abs(a - b) for a, b in zip(w, d)) <= 3 for d in got) for w in want)
    assert close >= 950  # measured: 972 of 1000 (the rest: touching polyps merged, or JSON boxes drawn loosely)
