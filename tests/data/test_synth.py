"""The synthetic Kvasir-like dataset: determinism, labels, boxes, insets, file handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.images import load_rgb
from kvasir_ml.data.inset import detect_inset
from kvasir_ml.data.synth import SynthError, synthesize
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.geometry import iou_xywh_px
from kvasir_ml.io import sha256_file


def _files(out):
    return {p.name: p.read_bytes() for p in sorted((out / "images").glob("*.jpg"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthesize(tmp_path / "a", n=12, seed=3)
    b = synthesize(tmp_path / "b", n=12, seed=3)
    c = synthesize(tmp_path / "c", n=12, seed=4)
    assert a.name == "annotations.coco.json" and a.parent == tmp_path / "a"
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes(), "another seed must give another dataset"
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = list(_files(tmp_path / "c").values())
    assert not set(_files(tmp_path / "a").values()) & set(other)
    # Frame i depends only on (seed, i): a longer run starts with the same frames.
    d = synthesize(tmp_path / "d", n=14, seed=3)
    assert len(load_canonical(d).images) == 14
    assert {k: v for k, v in _files(tmp_path / "d").items() if k in _files(tmp_path / "a")} == _files(tmp_path / "a")


def test_labels_follow_the_taxonomy_with_extras(synth_dir):
    tax = load_taxonomy()
    ds = load_canonical(synth_dir / "annotations.coco.json")
    assert len(ds.images) == 64 and ds.info["source"] == "synthetic"
    assert {img["source_class"] for img in ds.images} == set(tax.source("synthetic").classes)
    extras = 0
    for img in ds.images:
        own = set(tax.labels_for("synthetic", img["source_class"]))
        assert own <= set(img["labels"]), img["file_name"]
        assert img["labels"] == [n for n in tax.label_names if n in img["labels"]]  # vocabulary order
        extras += len(set(img["labels"]) - own) > 0
        assert img["content_sha256"] == sha256_file(synth_dir / img["file_name"])
    assert extras >= 3  # some frames carry findings their single class cannot express


def test_boxes_imply_labels_and_lie_inside(synth_dir):
    tax = load_taxonomy()
    implied = {b.name: b.label for b in tax.box_classes}
    ds = load_canonical(synth_dir / "annotations.coco.json")
    boxes = ds.boxes_by_image()
    for img in ds.images:
        names = [ds.category_name(a["category_id"]) for a in boxes[img["id"]]]
        for ann, name in zip(boxes[img["id"]], names):
            assert implied[name] in img["labels"]
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and w > 2 and h > 2
            assert x + w <= img["width"] and y + h <= img["height"]
        # ...and the box labels have their boxes.
        for name, label in implied.items():
            assert (label in img["labels"]) == (name in names), (img["file_name"], name)


def test_insets_like_the_real_data_and_detector_agrees(synth_dir):
    ds = load_canonical(synth_dir / "annotations.coco.json")
    states = {img["inset"] for img in ds.images}
    assert states == {"green", "black", "none"}
    for img in ds.images:
        if load_taxonomy().class_region("synthetic", img["source_class"]) == "upper":
            assert img["inset"] == "none"
        assert (img["inset_box"] is None) == (img["inset"] == "none")
        found = detect_inset(load_rgb(synth_dir / img["file_name"]))
        assert found.state == img["inset"], img["file_name"]
        if img["inset_box"] is not None:
            assert iou_xywh_px(found.box_xywh_px, img["inset_box"]) > 0.85, img["file_name"]


def test_sizes_vary_and_pycocotools_loads(synth_dir):
    from pycocotools.coco import COCO

    ds = load_canonical(synth_dir / "annotations.coco.json")
    sizes = {(img["width"], img["height"]) for img in ds.images}
    assert len(sizes) > 10
    for img in ds.images[:8]:
        with Image.open(synth_dir / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) and im.format == "JPEG"
            assert 256 <= im.width <= 320
    coco = COCO(str(synth_dir / "annotations.coco.json"))
    assert len(coco.getImgIds()) == 64 and len(coco.getAnnIds()) == len(ds.annotations) > 0


def test_dyed_frames_are_blue(synth_dir):
    ds = load_canonical(synth_dir / "annotations.coco.json")

    def blueness(img):
        rgb = load_rgb(synth_dir / img["file_name"]).astype(np.float32)
        h, w = rgb.shape[:2]
        centre = rgb[int(0.1 * h) : int(0.6 * h), int(0.3 * w) : int(0.9 * w)]  # no border, no inset
        return float((centre[..., 2] - centre[..., 0]).mean())

    dyed = [blueness(i) for i in ds.images if "dyed" in i["labels"]]
    plain = [blueness(i) for i in ds.images if "dyed" not in i["labels"]]
    assert min(dyed) > max(plain)


def test_existing_output_is_reused_or_refused(tmp_path):
    out = tmp_path / "s"
    first = synthesize(out, n=4, seed=1)
    stamp = first.stat().st_mtime_ns
    assert synthesize(out, n=4, seed=1) == first and first.stat().st_mtime_ns == stamp
    with pytest.raises(SynthError, match="exists"):
        synthesize(out, n=5, seed=1)
    synthesize(out, n=5, seed=2, overwrite=True)
    assert json.loads(first.read_text())["info"]["seed"] == 2
    assert list(out.glob("annotations.coco.*.bak.json"))  # the old file was kept


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2, "size_range_px": (300, 200)}, {"n": 2, "size_range_px": (10, 20)}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(SynthError):
        synthesize(tmp_path / "x", seed=0, **kwargs)


def test_cooccurrence_modes_set_how_label_sets_depend_on_the_class(tmp_path):
    from kvasir_ml.data.synth import INDEPENDENT_FINDINGS, INDEPENDENT_P, _frame_labels
    from kvasir_ml.taxonomy import load_taxonomy

    tx = load_taxonomy()
    classes = tx.source("synthetic").classes
    n = 400
    for cls in classes:
        own = set(tx.labels_for("synthetic", cls))
        rng = np.random.default_rng([7, classes.index(cls)])
        none = [set(_frame_labels(rng, tx, cls, "none")) for _ in range(50)]
        assert all(labels == own for labels in none)  # negative control: labels = f(class)
        indep = [set(_frame_labels(rng, tx, cls, "independent")) for _ in range(n)]
        assert all(own <= labels and labels - own <= set(INDEPENDENT_FINDINGS) for labels in indep)
        for finding in set(INDEPENDENT_FINDINGS) - own:  # the same rate whatever the class
            rate = np.mean([finding in labels for labels in indep])
            assert abs(rate - INDEPENDENT_P) < 4 * np.sqrt(INDEPENDENT_P * (1 - INDEPENDENT_P) / n), (cls, finding)
    path = synthesize(tmp_path / "indep", n=16, seed=0, cooccurrence="independent")
    assert json.loads(path.read_text())["info"]["cooccurrence"] == "independent"
    with pytest.raises(SynthError, match="exists"):  # another mode is another dataset
        synthesize(tmp_path / "indep", n=16, seed=0)
    with pytest.raises(SynthError, match="cooccurrence"):
        synthesize(tmp_path / "x", n=4, seed=0, cooccurrence="sometimes")


def test_finding_contrast_fades_the_findings_towards_the_mucosa(tmp_path):
    from kvasir_ml.data.synth import render_frame

    def frame(labels, contrast):
        img, _, _, boxes = render_frame(np.random.default_rng([5, 1]), False, labels, (256, 224), contrast)
        return np.asarray(img, dtype=np.float32), boxes

    bare, _ = frame([], 1.0)  # the same rng draws the same mucosa; no findings drawn
    full, boxes = frame(["polyp", "dyed"], 1.0)
    same, _ = frame(["polyp", "dyed"], 1.0)
    faded, faded_boxes = frame(["polyp", "dyed"], 0.3)
    assert np.array_equal(full, same)
    assert faded_boxes == boxes  # the findings stay where they are, only fainter
    x, y, w, h = (int(round(v)) for v in boxes[0][1])
    polyp = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    d_full = np.abs(full[polyp] - bare[polyp]).mean()
    d_faded = np.abs(faded[polyp] - bare[polyp]).mean()
    assert d_full > 20 and d_faded < 0.5 * d_full  # visibly fainter, not gone
    assert d_faded > 3
    # the default writes the bytes of earlier versions and records nothing; another contrast is another dataset
    path = synthesize(tmp_path / "c", n=4, seed=0, finding_contrast=0.5)
    assert json.loads(path.read_text())["info"]["finding_contrast"] == 0.5
    assert "finding_contrast" not in json.loads(synthesize(tmp_path / "d", n=4, seed=0).read_text())["info"]
    with pytest.raises(SynthError, match="exists"):
        synthesize(tmp_path / "c", n=4, seed=0)
    with pytest.raises(SynthError, match="finding_contrast"):
        synthesize(tmp_path / "x", n=4, seed=0, finding_contrast=0.0)
