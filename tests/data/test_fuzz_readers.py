"""Property-based fuzzing of the readers that take outside input (no image decoding):

* the canonical file (``validate_canonical`` / ``CanonicalDataset.from_dict``),
* Kvasir-SEG box JSON (``read_box_json`` + ``attach_boxes``, the indexer's own path after
  the image probe, with a stand-in probe of known size),
* HyperKvasir's ``image-labels.csv`` (``read_label_csv``).

Each generates valid input with known content, corrupts some items, and checks: no
exception other than the reader's documented error, every corrupted item named, every
intact item kept exactly.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvasir_ml.data.coco import CanonicalDataset, CanonicalError
from kvasir_ml.data.sources.common import ImageProbe
from kvasir_ml.data.sources.hyperkvasir import CSV_COLUMNS, read_label_csv
from kvasir_ml.data.sources.kvasir_seg import attach_boxes, read_box_json
from kvasir_ml.taxonomy import TaxonomyError, load_taxonomy

TAX = load_taxonomy()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TMP = Path(tempfile.mkdtemp(prefix="kvasir-fuzz-"))  # hypothesis examples cannot use tmp_path

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=16)


# ---- canonical file ---------------------------------------------------------------------
@st.composite
def canonical(draw):
    """A valid canonical dict (images with boxes inside them, extra keys sometimes)."""
    ds = CanonicalDataset.new("fuzz")
    for i in range(draw(st.integers(0, 6))):
        w, h = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
        labels = draw(st.lists(st.sampled_from(TAX.label_names), max_size=3, unique=True))
        extra = draw(st.dictionaries(st.sampled_from(["note", "labelstudio", "segmented_file_name"]), _JSON, max_size=2))
        image_id = ds.add_image(f"d{i % 2}/{i}.jpg", w, h, labels, "fuzz", draw(st.none() | st.text(max_size=5)),
                                inset=draw(st.sampled_from([None, "green", "black", "none"])), **extra)
        for _ in range(draw(st.integers(0, 2))):
            bw, bh = draw(st.floats(0.5, w)), draw(st.floats(0.5, h))
            box = [draw(st.floats(0, w - bw)), draw(st.floats(0, h - bh)), bw, bh]
            ds.add_box(image_id, draw(st.sampled_from(TAX.box_class_names)), box)
    return json.loads(json.dumps(ds.to_dict()))


# field -> values that break it (each must be reported naming the entry and the field)
_BAD_IMAGE_FIELDS = {
    "labels": ["polyp", ["tumour"], [1], None, {"polyp": 1}],
    "width": [0, -640, "640", True, 1.5, None],
    "height": [0, -1, "480", False, float("nan")],
    "file_name": ["../outside.jpg", "/etc/passwd", "a/../../x.jpg", "", "C:\\x.jpg", 5, "a\x00b.jpg"],
    "inset": ["blue", 1, True],
    "inset_box": [[0, 0, -5, 5], [1, 2, 3], ["1", 2, 3, 4], "box", [0, 0, float("inf"), 1]],
    "id": ["1", None, 1.5, True],
}
_OUTSIDE_BOX = [1e9, 0, 1, 1]
_BAD_BOX_FIELDS = {
    "bbox": [[0, 0, -5, 5], [0, 0, 5, 0], [0, 0, 5], ["0", 0, 5, 5], [0, 0, True, 5], None, _OUTSIDE_BOX,
             [float("nan"), 0, 1, 1]],
    "category_id": [99, "1", None],
    "image_id": [987654, "1", None],
    "iscrowd": [2, True, "0"],
}


@st.composite
def corrupted_canonical(draw):
    """(raw, {(section, index)}) with some entries broken in one field each."""
    raw = draw(canonical())
    bad: set[tuple[str, int]] = set()
    for section, fields in (("images", _BAD_IMAGE_FIELDS), ("annotations", _BAD_BOX_FIELDS)):
        for i in range(len(raw[section])):
            if draw(st.integers(0, 3)) == 0:
                field = draw(st.sampled_from(sorted(fields)))
                values = fields[field]
                if section == "annotations" and ("images", raw[section][i]["image_id"] - 1) in bad:
                    # "outside its image" cannot be told when the image's own size is broken
                    values = [v for v in values if v != _OUTSIDE_BOX]
                raw[section][i][field] = draw(st.sampled_from(values))
                bad.add((section, i))
    return raw, bad


@FUZZ
@given(corrupted_canonical())
def test_canonical_reader_names_every_bad_entry_and_keeps_every_good_file(case):
    raw, bad = case
    try:
        ds = CanonicalDataset.from_dict(raw, origin="fuzz.json")
    except CanonicalError as exc:
        assert bad, f"an intact file was refused: {exc}"
        for section, i in bad:
            assert any(f"fuzz.json: {section}[{i}]" in p for p in exc.problems), (section, i, exc.problems)
        return
    assert not bad, f"corrupted entries {sorted(bad)} were accepted"
    assert ds.to_dict()["images"] == raw["images"] and ds.annotations == raw["annotations"]  # nothing lost


@FUZZ
@given(_JSON | st.dictionaries(st.sampled_from(["images", "annotations", "categories", "info"]),
                               st.lists(_JSON, max_size=3) | _JSON, max_size=4))
def test_canonical_reader_raises_only_canonical_error_on_arbitrary_json(raw):
    try:
        ds = CanonicalDataset.from_dict(raw, origin="junk.json")
    except CanonicalError as exc:
        assert all(p.startswith("junk.json") for p in exc.problems)
    else:  # only an (empty) well-formed file may pass
        assert ds.images == raw["images"] and ds.annotations == raw["annotations"]


# ---- Kvasir-SEG box JSON ------------------------------------------------------------------
_BAD_BOXES = [
    {"xmin": "10", "ymin": 0, "xmax": 20, "ymax": 10}, {"xmin": True, "ymin": 0, "xmax": 20, "ymax": 10},
    {"xmin": 0, "ymin": 0, "xmax": 20}, {"xmin": None, "ymin": 0, "xmax": 20, "ymax": 10},
    {"xmin": 0, "ymin": 0, "xmax": 10**400, "ymax": 10}, {"xmin": float("nan"), "ymin": 0, "xmax": 5, "ymax": 5},
    {"xmin": 0, "ymin": 0, "xmax": float("inf"), "ymax": 5}, {"xmin": 5, "ymin": 0, "xmax": 5, "ymax": 9},
    {"xmin": 9, "ymin": 0, "xmax": 2, "ymax": 9}, {"xmin": 0, "ymin": 0, "xmax": 10**6, "ymax": 9},
    {"label": "tumour", "xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}, {"label": ["polyp"], "xmin": 0, "ymin": 0,
                                                                       "xmax": 5, "ymax": 5},
    [0, 0, 5, 5], "0,0,5,5", None, 7,
]
_BAD_ENTRIES = [None, [], "entry", 3, {"width": 10}, {"bbox": "xmin"}, {"bbox": {"xmin": 0}}]


@st.composite
def box_json(draw):
    """{key: entry} plus the oracle {key: (size, [good (index, class, xywh)], [bad indices]) | None}."""
    raw, oracle = {}, {}
    for n in range(draw(st.integers(0, 5))):
        key = f"img{n}"
        if draw(st.integers(0, 5)) == 0:
            raw[key], oracle[key] = draw(st.sampled_from(_BAD_ENTRIES)), None
            continue
        w, h = draw(st.integers(20, 1500)), draw(st.integers(20, 1500))
        boxes, good, bad = [], [], []
        for i in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 2)) == 0:
                boxes.append(draw(st.sampled_from(_BAD_BOXES)))
                bad.append(i)
                continue
            x0, y0 = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
            x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
            cls = draw(st.sampled_from(TAX.box_class_names))
            box = {"label": cls, "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}
            if cls == "polyp" and draw(st.booleans()):
                del box["label"]  # Kvasir-SEG's own file has no label: polyp
            boxes.append(box)
            good.append((i, cls, [x0, y0, x1 - x0, y1 - y0]))
        raw[key] = {"height": h, "width": w, "bbox": boxes}
        oracle[key] = ((w, h), good, bad)
    return raw, oracle


@FUZZ
@given(box_json())
def test_box_json_reader_names_every_bad_box_and_keeps_every_good_one(case):
    raw, oracle = case
    path = _TMP / "kavsir_bboxes.json"
    path.write_text(json.dumps(raw))
    problems = []
    entries = read_box_json(path, _TMP, problems)
    ds = CanonicalDataset.new("kvasir-seg")
    ids = {}
    for key, expected in oracle.items():
        if expected is None:
            assert key not in entries
            assert any(p.path == f"kavsir_bboxes.json#{key}" and p.severity == "error" for p in problems), problems
            continue
        (w, h), good, bad = expected
        rel = f"images/{key}.jpg"
        ids[key] = ds.add_image(rel, w, h, ["polyp"], "kvasir-seg", "polyps")
        attach_boxes(ds, ids[key], rel, ImageProbe(rel, w, h), entries[key], "kavsir_bboxes.json", TAX, problems)
        for i in bad:
            named = [p for p in problems if p.path == rel and (f"bbox[{i}]" in p.reason or f"box {i} " in p.reason)]
            assert named and all(p.severity == "error" for p in named), (key, i, problems)
    boxes = ds.boxes_by_image()
    for key, image_id in ids.items():
        got = [(ds.category_name(b["category_id"]), b["bbox"]) for b in boxes[image_id]]
        assert got == [(cls, [float(v) for v in xywh]) for _, cls, xywh in oracle[key][1]]


# ---- HyperKvasir image-labels.csv -----------------------------------------------------------
_FINDINGS = sorted({*TAX.source("hyperkvasir").classes, *TAX.source("hyperkvasir").aliases})
_CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12)


@st.composite
def label_csv(draw):
    """CSV rows (one physical line each) with known and unknown findings, empty ids, duplicates."""
    uuids = draw(st.lists(st.text("0123456789abcdef-", min_size=1, max_size=8), min_size=1, max_size=4))
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        uuid = draw(st.sampled_from(uuids) | st.sampled_from(["", "  "]) | _CELL)
        finding = draw(st.sampled_from(_FINDINGS) | _CELL)
        row = [uuid, draw(_CELL), finding, draw(_CELL)]
        if draw(st.integers(0, 6)) == 0:
            row = row[: draw(st.integers(1, 3))]  # a short row: the missing cells read as empty
        elif draw(st.integers(0, 6)) == 0:
            row.append(draw(_CELL))  # a stray extra cell
        rows.append(row)
    return rows


def _expected_class(finding: str) -> str | None:
    try:
        return TAX.source("hyperkvasir").canonical_class(finding)
    except TaxonomyError:
        return None


@FUZZ
@given(label_csv(), st.booleans())
def test_label_csv_reader_names_every_bad_row_and_keeps_every_good_one(rows, bom):
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["Video file", "Organ", "Finding", "Classification"][: len(CSV_COLUMNS)])
    writer.writerows(rows)
    path = _TMP / "image-labels.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + buf.getvalue().encode("utf-8"))
    problems = []
    classes = read_label_csv(path, _TMP, TAX, problems)
    expected: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        uuid = row[0].strip()
        finding = (row[2] if len(row) > 2 else "").strip()
        here = [p for p in problems if p.path == f"image-labels.csv:{line}"]
        cls = _expected_class(finding)
        if not uuid or cls is None:
            assert here and here[0].severity == "error", (line, row, problems)
        elif uuid in expected and expected[uuid] != cls:
            assert here and here[0].severity == "warning", (line, row, problems)
        else:
            assert not here, here
            expected.setdefault(uuid, cls)
    assert classes == expected
