"""Every bad input named: the canonical file is validated on load against one schema, and
each bad entry is named by position, id, file name and field (not a KeyError in split/train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.coco import CanonicalDataset, CanonicalError, load_canonical

REPO = Path(__file__).resolve().parents[2]


def _dataset() -> dict:
    ds = CanonicalDataset.new("test")
    for i in range(8):
        image_id = ds.add_image(f"images/{i}.jpg", 100, 80, ["polyp"], "test", "polyps", inset="none")
        ds.add_box(image_id, "polyp", [10, 10, 20, 20])
    return json.loads(json.dumps(ds.to_dict()))


BREAKAGES = [  # (section, index, field, value, what the message must say)
    ("images", 0, "labels", "polyp", "images[0] (id 1, 'images/0.jpg'): labels: Input should be a valid list"),
    ("images", 1, "labels", ["polyp", "tumour"], "images[1] (id 2, 'images/1.jpg'): labels: ['tumour'] not in the taxonomy"),
    ("images", 2, "width", -100, "images[2] (id 3, 'images/2.jpg'): width: Input should be greater than 0"),
    ("images", 3, "height", True, "images[3] (id 4, 'images/3.jpg'): height: Input should be a valid integer"),
    ("images", 4, "file_name", "../../etc/passwd", "images[4] (id 5, '../../etc/passwd'): file_name: file_name "
                                                   "'../../etc/passwd' escapes the data root"),
    ("images", 5, "file_name", "/data/x.jpg", "images[5] (id 6, '/data/x.jpg'): file_name: file_name '/data/x.jpg' is absolute"),
    ("annotations", 0, "bbox", [10, 10, -20, 20], "annotations[0] (id 1, image id 1): bbox: box [10, 10, -20, 20] has "
                                                  "zero or negative size"),
    ("annotations", 1, "bbox", [90, 10, 20, 20], "annotations[1] (id 2, image id 2): bbox: box [90, 10, 20, 20] (x, y, w, "
                                                 "h px) lies outside the 100x80 image"),
    ("annotations", 2, "bbox", ["10", 10, 20, 20], "annotations[2] (id 3, image id 3): bbox.0: Input should be a valid number"),
    ("annotations", 3, "category_id", 7, "annotations[3] (id 4, image id 4): category_id: unknown category id 7"),
    ("annotations", 4, "image_id", 99, "annotations[4] (id 5, image id 99): image_id: no image has id 99"),
    ("annotations", 5, "bbox", [0, 0, 10**400, 1], "annotations[5] (id 6, image id 6): bbox.2: Input should be a "
                                                   "valid number"),
]


def test_every_bad_entry_is_named_with_its_id_and_field(tmp_path):
    raw = _dataset()
    for section, i, field, value, _ in BREAKAGES:
        raw[section][i][field] = value
    raw["annotations"][4]["bbox"] = [-5, 0, 3, 1]  # on an unknown image: its place cannot be judged
    path = tmp_path / "bad.coco.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CanonicalError) as exc:
        load_canonical(path)
    for *_, message in BREAKAGES:
        assert any(p == f"{path}: {message}" or p.startswith(f"{path}: {message}") for p in exc.value.problems), (
            message, exc.value.problems)
    assert len(exc.value.problems) == len(BREAKAGES)  # each once, nothing invented


@pytest.mark.parametrize("argv", [["data", "stats", "{f}"], ["data", "split", "{f}", "--out", "{d}/s.json"],
                                  ["train", "classifier", "--config", str(REPO / "configs" / "classifier_multilabel_tiny.yaml"),
                                   "--out", "{d}/run", "data.canonical={f}", "tracking.mode=disabled"]])
def test_commands_refuse_a_bad_canonical_file_with_a_named_error(tmp_path, capsys, argv):
    raw = _dataset()
    raw["images"][0]["labels"] = "polyp"  # `data stats` used to count letters, split/train raised KeyError
    path = tmp_path / "bad.coco.json"
    path.write_text(json.dumps(raw))
    rc = cli_main([a.format(f=path, d=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and "images[0] (id 1, 'images/0.jpg'): labels: Input should be a valid list" in err
    assert "Traceback" not in err and not (tmp_path / "s.json").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_good_file_with_extra_keys_loads_unchanged(tmp_path):
    raw = _dataset()
    raw["images"][0]["labelstudio"] = {"task_id": 3}
    raw["annotations"][0]["box_origin"] = "json"
    path = tmp_path / "ok.coco.json"
    path.write_text(json.dumps(raw))
    ds = load_canonical(path)
    assert ds.images == raw["images"] and ds.annotations == raw["annotations"]
