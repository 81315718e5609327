"""Core contracts: taxonomy, box geometry, config, io helpers, the canonical COCO file."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvasir_ml import geometry as g
from kvasir_ml.config import ConfigError, StrictModel, TrackingConfig, apply_overrides, load_config, save_config
from kvasir_ml.data.coco import CanonicalDataset, CanonicalError, load_canonical
from kvasir_ml.io import atomic_write_json, atomic_write_text, backup_existing, read_json, sha256_file, sha256_json
from kvasir_ml.taxonomy import TaxonomyError, load_taxonomy

KVASIR_V2_CLASSES = (
    "dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum",
    "normal-pylorus", "normal-z-line", "polyps", "ulcerative-colitis",
)


# ---- taxonomy -------------------------------------------------------------------------
def test_taxonomy_sources_and_examples():
    tx = load_taxonomy()
    assert tx.source("kvasir-v2").classes == KVASIR_V2_CLASSES
    assert tx.source("synthetic").classes == KVASIR_V2_CLASSES
    assert len(tx.source("hyperkvasir").classes) == 23
    assert set(tx.labels_for("kvasir-v2", "dyed-lifted-polyps")) == {"polyp", "dyed", "lifted"}
    assert set(tx.labels_for("kvasir-v2", "esophagitis")) == {"esophagitis", "z-line"}
    assert tx.labels_for("kvasir-v2", "normal-cecum") == ["cecum"]
    # aliases used by HyperKvasir's fold files
    assert tx.labels_for("hyperkvasir", "hemorroids") == tx.labels_for("hyperkvasir", "hemorrhoids")
    assert tx.labels_for("hyperkvasir", "normal-z-line") == ["z-line"]
    assert "unlabeled" in tx.source("kvasir-v2").ignored_folders


def test_taxonomy_matrices_and_encoding():
    tx = load_taxonomy()
    m = tx.class_label_matrix("hyperkvasir")
    assert m.shape == (23, len(tx.label_names))
    assert (m.sum(1) >= 1).all()  # every class has at least one label
    vec = tx.encode_labels(["polyp", "dyed"])
    assert vec.sum() == 2 and [n for n, on in zip(tx.label_names, vec) if on] == [n for n in tx.label_names
                                                                                 if n in {"polyp", "dyed"}]
    assert [c for c in tx.source("kvasir-v2").classes if tx.class_region("kvasir-v2", c) == "upper"] == \
        ["esophagitis", "normal-pylorus", "normal-z-line"]
    assert tx.class_region("kvasir-v2", "polyps") == "lower"
    assert tx.box_class_names[0] == "polyp" and tx.box_class_index("polyp") == 0
    for name in tx.box_class_names:  # every box class implies a label
        assert any(b.label in tx.label_names for b in tx.box_classes if b.name == name)


def test_taxonomy_errors_name_the_problem():
    tx = load_taxonomy()
    with pytest.raises(TaxonomyError, match="unknown class 'nope'"):
        tx.labels_for("kvasir-v2", "nope")
    with pytest.raises(TaxonomyError, match="unknown label"):
        tx.encode_labels(["not-a-label"])
    with pytest.raises(TaxonomyError, match="unknown source"):
        tx.source("imagenet")


def test_taxonomy_rejects_unknown_label(tmp_path):
    bad = tmp_path / "taxonomy.yaml"
    bad.write_text(
        "version: 1\nlabels: [{name: a, group: finding, region: lower}]\nbox_classes: []\n"
        "inset_states: [green, black, none]\nsources: {s: {classes: {c: {labels: [b]}}}}\n"
    )
    with pytest.raises(TaxonomyError, match="unknown label 'b'"):
        load_taxonomy(bad)


# ---- geometry -------------------------------------------------------------------------
sizes = st.integers(min_value=8, max_value=4000)


@st.composite
def boxes_in_image(draw):
    w_img, h_img = draw(sizes), draw(sizes)
    x = draw(st.floats(0, w_img - 1, allow_nan=False))
    y = draw(st.floats(0, h_img - 1, allow_nan=False))
    w = draw(st.floats(0.5, w_img - x, allow_nan=False)) if w_img - x > 0.5 else w_img - x
    h = draw(st.floats(0.5, h_img - y, allow_nan=False)) if h_img - y > 0.5 else h_img - y
    return (x, y, w, h), w_img, h_img


def _close(a, b, scale):
    return all(math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9 * scale) for u, v in zip(a, b))


@settings(max_examples=200, deadline=None)
@given(boxes_in_image())
def test_geometry_round_trips(case):
    box, w_img, h_img = case
    scale = max(w_img, h_img)
    assert _close(g.xyxy_px_to_xywh_px(g.xywh_px_to_xyxy_px(box)), box, scale)
    norm = g.xywh_px_to_cxcywh_norm(box, w_img, h_img)
    assert all(-1e-9 <= v <= 1 + 1e-9 for v in norm)
    assert _close(g.cxcywh_norm_to_xywh_px(norm, w_img, h_img), box, scale)
    pct = g.xywh_px_to_xywh_pct(box, w_img, h_img)
    assert all(-1e-7 <= v <= 100 + 1e-7 for v in pct)
    assert _close(g.xywh_pct_to_xywh_px(pct, w_img, h_img), box, scale)
    # chained: px -> pct -> px -> norm -> px
    chained = g.cxcywh_norm_to_xywh_px(g.xywh_px_to_cxcywh_norm(g.xywh_pct_to_xywh_px(pct, w_img, h_img), w_img, h_img), w_img, h_img)
    assert _close(chained, box, scale)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=4, max_size=4), sizes, sizes)
def test_integer_xyxy_round_trip_is_exact(coords, w_img, h_img):
    x0, x1 = sorted(coords[:2])
    y0, y1 = sorted(coords[2:])
    xywh = g.xyxy_px_to_xywh_px((x0, y0, x1, y1))
    assert g.xywh_px_to_xyxy_px(xywh) == (x0, y0, x1, y1)  # exact, no rounding


@settings(max_examples=100, deadline=None)
@given(st.floats(-500, 500), st.floats(-500, 500), st.floats(-50, 500), st.floats(-50, 500))
def test_clip_stays_inside(x, y, w, h):
    cx, cy, cw, ch = g.clip_xywh_px((x, y, w, h), 300, 200)
    assert 0 <= cx <= 300 and 0 <= cy <= 200 and cx + cw <= 300 + 1e-9 and cy + ch <= 200 + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.floats(-500, 500), st.floats(-500, 500), st.floats(0.5, 500), st.floats(0.5, 500))
def test_inside_fraction_and_outside_agree_with_clipping(x, y, w, h):
    frac = g.inside_fraction_xywh_px((x, y, w, h), 300, 200)
    assert 0.0 <= frac <= 1.0 + 1e-9
    if not g.outside_image_xywh_px((x, y, w, h), 300, 200, tolerance_px=0.0):
        assert frac == pytest.approx(1.0)
    assert g.inside_fraction_xywh_px((10, 10, 20, 20), 20, 20) == pytest.approx(0.25)
    assert g.inside_fraction_xywh_px((400, 10, 20, 20), 300, 200) == 0.0


def test_validate_rejects_bad_boxes():
    with pytest.raises(g.BoxError, match="zero or negative"):
        g.validate_xywh_px((10, 10, 0, 5), 100, 100)
    with pytest.raises(g.BoxError, match="outside"):
        g.validate_xywh_px((90, 10, 20, 5), 100, 100)
    with pytest.raises(g.BoxError, match="non-finite"):
        g.validate_xywh_px((float("nan"), 10, 20, 5), 100, 100)
    assert g.validate_xywh_px((0, 0, 100.3, 50), 100, 100) == (0, 0, 100, 50)  # border rounding clipped
    assert g.iou_xywh_px((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


# ---- config ---------------------------------------------------------------------------
class _Section(StrictModel):
    lr: float = 0.1
    tracking: TrackingConfig = TrackingConfig()


def test_config_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\ntracking: {mode: disabled}\n")
    cfg = load_config(_Section, path, ["tracking.project=x", "lr=1e-3"])
    assert cfg.lr == 1e-3 and cfg.tracking.mode == "disabled" and cfg.tracking.project == "x"
    with pytest.raises(ConfigError, match="tracking.nope"):
        load_config(_Section, path, ["tracking.nope=1"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(_Section, path, ["lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(_Section, tmp_path / "missing.yaml")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(_Section, tmp_path / "out.yaml") == cfg


# ---- io -------------------------------------------------------------------------------
def test_io_atomic_writes_backups_and_hashes(tmp_path):
    target = tmp_path / "a.json"
    assert atomic_write_json(target, {"x": 1}, keep_backup=True) is None
    backup = atomic_write_json(target, {"x": 2}, keep_backup=True)
    assert backup is not None and read_json(backup) == {"x": 1} and read_json(target) == {"x": 2}
    assert backup_existing(tmp_path / "missing") is None
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    atomic_write_text(tmp_path / "t.txt", "hello")
    assert sha256_file(tmp_path / "t.txt") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    (tmp_path / "bad.json").write_text('{"a": 1,,}')
    with pytest.raises(ValueError, match="bad.json: malformed JSON at line 1"):
        read_json(tmp_path / "bad.json")


# ---- canonical COCO -------------------------------------------------------------------
def _small_dataset() -> CanonicalDataset:
    ds = CanonicalDataset.new("test")
    a = ds.add_image("images/a.jpg", 100, 80, ["polyp"], "kvasir-seg", "polyps", inset="black",
                     inset_box=[0, 50, 30, 30], content_sha256="0" * 64)
    ds.add_image("images/b.jpg", 50, 50, ["cecum"], "kvasir-v2", "normal-cecum", inset="green", inset_box=[0, 30, 15, 20])
    ds.add_box(a, "polyp", [10, 10, 20, 30])
    ds.add_box(a, "polyp", [50, 40, 50, 40])
    return ds


def test_canonical_roundtrip_and_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    ds = _small_dataset()
    path = tmp_path / "ann.json"
    ds.save(path)
    loaded = load_canonical(path)
    assert loaded.images == ds.images and loaded.annotations == ds.annotations
    coco = COCO(str(path))  # pycocotools loads the canonical file unchanged
    assert sorted(coco.getImgIds()) == [1, 2]
    assert len(coco.getAnnIds(imgIds=[1])) == 2
    assert coco.loadCats(coco.getCatIds())[0]["name"] == "polyp"
    assert coco.loadImgs(1)[0]["labels"] == ["polyp"]
    assert [img["labels"] for img in loaded.images] == [img["labels"] for img in ds.images]
    sub = loaded.subset(["images/a.jpg"])
    assert len(sub.images) == 1 and len(sub.annotations) == 2
    assert {k: len(v) for k, v in loaded.boxes_by_image().items()} == {1: 2, 2: 0}


def test_canonical_rejects_bad_entries(tmp_path):
    ds = _small_dataset()
    with pytest.raises(g.BoxError, match="images/a.jpg: box .* outside"):
        ds.add_box(1, "polyp", [90, 10, 20, 10])
    with pytest.raises(g.BoxError, match="images/a.jpg: box .* zero"):
        ds.add_box(1, "polyp", [10, 10, 0, 10])
    with pytest.raises(CanonicalError, match="inset state"):
        ds.add_image("c.jpg", 10, 10, [], "s", None, inset="blue")
    raw = ds.to_dict()
    raw["annotations"][0]["image_id"] = 99
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CanonicalError, match="bad.json: annotations\\[0\\] .*image_id: no image has id 99"):
        load_canonical(path)
    raw = ds.to_dict()
    raw["images"][1]["file_name"] = "images/a.jpg"
    path.write_text(json.dumps(raw))
    with pytest.raises(CanonicalError, match="duplicate file_name"):
        load_canonical(path)


def test_merge_canonical_prefixes_names_renumbers_ids_and_keeps_boxes():
    from kvasir_ml.data.coco import CanonicalDataset, CanonicalError, merge_canonical

    a = CanonicalDataset.new("kvasir-seg")
    ia = a.add_image("images/x.jpg", 100, 80, ["polyp"], "kvasir-seg", "polyps", content_sha256="h1")
    a.add_box(ia, "polyp", [10, 10, 20, 20])
    b = CanonicalDataset.new("kvasir-v2")
    b.add_image("images/x.jpg", 50, 40, ["cecum"], "kvasir-v2", "normal-cecum", content_sha256="h2")
    ib = b.add_image("polyps/y.jpg", 50, 40, ["polyp"], "kvasir-v2", "polyps", content_sha256="h1")
    b.add_box(ib, "polyp", [1, 2, 3, 4])

    merged = merge_canonical([("seg", a), ("v2", b)])
    assert [img["file_name"] for img in merged.images] == ["seg/images/x.jpg", "v2/images/x.jpg", "v2/polyps/y.jpg"]
    assert [img["id"] for img in merged.images] == [1, 2, 3]
    boxes = merged.boxes_by_image()
    assert [ann["bbox"] for ann in boxes[1]] == [[10.0, 10.0, 20.0, 20.0]]
    assert [ann["bbox"] for ann in boxes[3]] == [[1.0, 2.0, 3.0, 4.0]]
    assert merged.info["source"] == "kvasir-seg+kvasir-v2"
    # the same prefix twice collides and is refused rather than silently overwritten
    with pytest.raises(CanonicalError, match="duplicate file_name"):
        merge_canonical([("p", a), ("p", a)])
