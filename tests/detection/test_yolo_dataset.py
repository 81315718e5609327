"""COCO -> YOLO export: label round trip, basename collisions, masking, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.images import load_rgb
from kvasir_ml.detection.yolo_dataset import ExportError, export_yolo, unique_stem, yolo_label_lines
from kvasir_ml.geometry import cxcywh_norm_to_xywh_px
from kvasir_ml.taxonomy import load_taxonomy


def read_yolo_labels(path: str | Path, width_px: int, height_px: int) -> list[tuple[int, tuple[float, ...]]]:
    """Read a YOLO label file back into ``(class_id, xywh_px)`` pairs."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ExportError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
        box = cxcywh_norm_to_xywh_px([float(v) for v in parts[1:]], width_px, height_px)
        out.append((int(parts[0]), box))
    return out


def _split_all(ds, test_every: int = 4) -> dict[str, list[str]]:
    names = [img["file_name"] for img in ds.images]
    test = names[2::test_every]
    return {"train": [n for n in names[2:] if n not in test], "val": names[:2], "test": test}


def _roundtrip_errors(ds, export) -> list[float]:
    """Max abs pixel error of every box after labels -> pixels, per image."""
    names = load_taxonomy().box_class_names
    errors = []
    boxes = ds.boxes_by_image()
    for split, files in export.file_names.items():
        for file_name in files:
            entry = ds.image_by_file[file_name]
            label = export.root / "labels" / split / f"{unique_stem(file_name)}.txt"
            back = read_yolo_labels(label, entry["width"], entry["height"])
            orig = boxes[entry["id"]]
            assert [names[c] for c, _ in back] == [ds.category_name(a["category_id"]) for a in orig]
            errors += [float(np.abs(np.subtract(b, a["bbox"])).max()) for (_, b), a in zip(back, orig)]
    return errors


def test_export_round_trips_labels_within_half_pixel(box_dataset, tmp_path):
    ds = load_canonical(box_dataset)
    export = export_yolo(ds, _split_all(ds), box_dataset.parent, tmp_path / "yolo")
    errors = _roundtrip_errors(ds, export)
    assert errors and max(errors) < 0.5
    data = yaml.safe_load(export.data_yaml.read_text())
    assert list(data["names"].values()) == load_taxonomy().box_class_names
    assert (Path(data["path"]) / data["train"]).is_dir() and data["test"] == "images/test"
    image = export.image_paths[ds.images[3]["file_name"]]
    assert image.is_symlink() and image.resolve() == (box_dataset.parent / ds.images[3]["file_name"]).resolve()


def test_export_synthetic_round_trip(synth_dir, tmp_path):
    ann = synth_dir / "annotations.coco.json"
    ds = load_canonical(ann)
    export = export_yolo(ds, _split_all(ds), ann.parent, tmp_path / "yolo", link_mode="copy")
    errors = _roundtrip_errors(ds, export)
    assert len(errors) == len(ds.annotations) and max(errors) < 0.5
    assert not any(p.is_symlink() for p in export.image_paths.values())


def test_basename_collisions_do_not_overwrite(box_dataset, tmp_path):
    ds = load_canonical(box_dataset)
    assert "a/0.jpg" in ds.image_by_file and "b/0.jpg" in ds.image_by_file
    split = {"train": ["a/0.jpg", "b/0.jpg", "a/1.jpg"], "val": ["b/1.jpg"], "test": []}
    export = export_yolo(ds, split, box_dataset.parent, tmp_path / "yolo")
    a, b = export.image_paths["a/0.jpg"], export.image_paths["b/0.jpg"]
    assert a != b and a.resolve() != b.resolve()
    assert len(list((tmp_path / "yolo" / "images" / "train").iterdir())) == 3
    assert len(list((tmp_path / "yolo" / "labels" / "train").glob("*.txt"))) == 3
    assert unique_stem("a/0.jpg") == unique_stem("a/0.jpg") != unique_stem("b/0.jpg")
    assert "test" not in yaml.safe_load(export.data_yaml.read_text())


def test_masked_export_blacks_out_the_inset_region(box_dataset, tmp_path):
    from kvasir_ml.data.inset import nominal_inset_box_xywh_px

    ds = load_canonical(box_dataset)
    export = export_yolo(ds, _split_all(ds), box_dataset.parent, tmp_path / "yolo", inset_mode="masked")
    entry = ds.images[0]
    out = export.image_paths[entry["file_name"]]
    assert not out.is_symlink()
    x, y, w, h = (int(v) for v in nominal_inset_box_xywh_px(entry["width"], entry["height"]))
    rgb = load_rgb(out)
    # JPEG ringing stays near black inside the region; the source there is mid-grey noise.
    assert rgb[y + 2:y + h - 2, x + 1:x + w - 2].mean() < 8
    assert load_rgb(box_dataset.parent / entry["file_name"])[y:y + h, x:x + w].mean() > 60
    # masked_overlaps names exactly the frames where a box reaches into the blacked-out region:
    # read back from the written pixels (black where the source, mid-grey noise or a coloured
    # box, never is), not from the export's own arithmetic.
    boxes = ds.boxes_by_image()
    expected = []
    for image in ds.images:
        written = load_rgb(export.image_paths[image["file_name"]]).max(axis=2) < 20
        inside = [written[int(b["bbox"][1]) + 1:int(b["bbox"][1] + b["bbox"][3]) - 1,
                          int(b["bbox"][0]) + 1:int(b["bbox"][0] + b["bbox"][2]) - 1].any()
                  for b in boxes.get(image["id"], [])]
        if any(inside):
            expected.append(image["file_name"])
    assert 0 < len(expected) < len(ds.images), "the fixture should have boxes both inside and outside the region"
    assert sorted(export.masked_overlaps) == sorted(expected)


def test_export_refusals(box_dataset, tmp_path):
    ds = load_canonical(box_dataset)
    split = _split_all(ds)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user file")
    with pytest.raises(ExportError, match="not empty"):
        export_yolo(ds, split, box_dataset.parent, tmp_path / "busy")
    with pytest.raises(ExportError, match="not in the canonical file"):
        export_yolo(ds, {**split, "val": ["nope.jpg"]}, box_dataset.parent, tmp_path / "e1")
    with pytest.raises(ExportError, match="'val' is empty"):
        export_yolo(ds, {**split, "val": []}, box_dataset.parent, tmp_path / "e2")
    (box_dataset.parent / split["train"][0]).unlink()
    with pytest.raises(ExportError, match="does not exist"):
        export_yolo(ds, split, box_dataset.parent, tmp_path / "e3")


@settings(max_examples=60, deadline=None)
@given(
    size=st.tuples(st.integers(16, 2000), st.integers(16, 2000)),
    frac=st.tuples(*[st.floats(0.0, 0.9) for _ in range(2)], *[st.floats(0.01, 0.1) for _ in range(2)]),
)
def test_label_line_round_trip_property(size, frac):
    width, height = size
    x, y = frac[0] * width, frac[1] * height
    w, h = max(1.0, frac[2] * width), max(1.0, frac[3] * height)
    line = yolo_label_lines([{"bbox": [x, y, w, h], "category_id": 2}], width, height, {2: 1})[0]
    parts = line.split()
    assert parts[0] == "1"
    from kvasir_ml.geometry import cxcywh_norm_to_xywh_px

    back = cxcywh_norm_to_xywh_px([float(v) for v in parts[1:]], width, height)
    assert max(abs(a - b) for a, b in zip(back, (x, y, w, h))) < 0.5


def test_importing_ultralytics_keeps_corrupt_images_a_clear_error(tmp_path):
    """ultralytics patches PIL.Image.open globally; a non-image must still raise ImageError
    (not try to pip-install pi-heif and fail with ModuleNotFoundError)."""
    from kvasir_ml.data.images import ImageError, load_rgb
    from kvasir_ml.detection.ultralytics_env import ensure_ultralytics

    ensure_ultralytics()
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("this is not an image")
    with pytest.raises(ImageError, match="not a recognised image format"):
        load_rgb(bad)
