"""Property-based fuzzing of the Label Studio export reader (``export_to_canonical``).

Exports are generated from known ground truth, then some tasks are corrupted in ways that
make their annotation unusable (a coordinate ``"10"`` or ``true``, NaN, a rotated or
out-of-image rectangle, unknown classes, a result that is not an object, a broken image
path, ...). Whatever the mix, the reader must not raise, must name every corrupted task by
its id with an error, must keep that image's previous state, and must apply every intact
task exactly (labels and boxes). No images are decoded: sizes come from the base file.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvasir_ml.data.canonical_schema import validate_canonical
from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.labeling_config import IMAGE_NAME, LABELS_NAME
from kvasir_ml.labelstudio.convert import box_to_result, choices_result
from kvasir_ml.labelstudio.from_export import export_to_canonical
from kvasir_ml.taxonomy import load_taxonomy

TAX = load_taxonomy()
N_IMAGES = 6
SIZES = [(320 + 7 * i, 240 + 5 * i) for i in range(N_IMAGES)]  # (width, height) px
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Corruptions that make an annotation unusable (each must become an error naming the task).
_BAD_COORD = st.sampled_from(["10", True, False, None, float("nan"), float("inf"), [1], {"v": 1}])
_RESULT_CORRUPTIONS = ("coord", "rotation", "unknown-box-class", "unknown-label", "value-not-object",
                       "labels-not-list", "outside", "zero-width", "result-not-object")


def _base() -> CanonicalDataset:
    ds = CanonicalDataset.new("test")
    for i, (w, h) in enumerate(SIZES):
        image_id = ds.add_image(f"img/{i}.jpg", w, h, ["cecum"], "test", None, inset="none")
        ds.add_box(image_id, "polyp", [1.0, 2.0, 3.0, 4.0])
    return ds


BASE = _base()


@st.composite
def box_in(draw, w: int, h: int) -> tuple[float, float, float, float]:
    x = draw(st.integers(0, w - 20))
    y = draw(st.integers(0, h - 20))
    return (float(x), float(y), float(draw(st.integers(5, min(200, w - x)))), float(draw(st.integers(5, min(200, h - y)))))


@st.composite
def good_annotation(draw, image: int):
    """Results plus what they mean: (results, expected labels, expected boxes)."""
    w, h = SIZES[image]
    boxes = draw(st.lists(st.tuples(st.sampled_from(TAX.box_class_names), box_in(w, h)), max_size=3))
    labels = draw(st.lists(st.sampled_from(TAX.label_names), max_size=3, unique=True))
    results = [box_to_result(cls, box, w, h, region_id=f"r{k}") for k, (cls, box) in enumerate(boxes)]
    if labels:
        results.append(choices_result(LABELS_NAME, labels))
    if draw(st.booleans()):  # a result the config does not know: a warning, still applied
        results.append({"type": "textarea", "from_name": "notes", "to_name": IMAGE_NAME, "value": {"text": ["hi"]}})
    implied = {TAX.box_classes[TAX.box_class_index(c)].label for c, _ in boxes}
    return results, [n for n in TAX.label_names if n in set(labels) | implied], boxes  # taxonomy order


@st.composite
def corrupt(draw, results: list, image: int) -> list:
    """The same results with one unusable result added or one rectangle broken."""
    w, h = SIZES[image]
    kind = draw(st.sampled_from(_RESULT_CORRUPTIONS))
    rect = box_to_result("polyp", (10.0, 10.0, 30.0, 20.0), w, h, region_id="bad")
    if kind == "coord":
        rect["value"][draw(st.sampled_from(["x", "y", "width", "height"]))] = draw(_BAD_COORD)
    elif kind == "rotation":
        rect["value"]["rotation"] = draw(st.sampled_from([45, 90.0, -30, "0"]))
    elif kind == "unknown-box-class":
        rect["value"]["rectanglelabels"] = [draw(st.sampled_from(["tumour", "", "Polyp"]))]
    elif kind == "labels-not-list":
        rect["value"]["rectanglelabels"] = draw(st.sampled_from(["polyp", {"0": "polyp"}, 3, ["polyp", "polyp"]]))
    elif kind == "value-not-object":
        rect["value"] = draw(st.sampled_from([None, [], "x", 5]))
    elif kind == "outside":
        rect["value"].update(x=draw(st.floats(100.5, 1e6)), y=5.0)
    elif kind == "zero-width":
        rect["value"]["width"] = draw(st.sampled_from([0, -5.0, -1e-9]))
    elif kind == "unknown-label":
        rect = choices_result(LABELS_NAME, [draw(st.sampled_from(["tumour", "POLYP", ""]))])
    elif kind == "result-not-object":
        rect = draw(st.sampled_from(["polyp", 3, None, ["x"]]))
    out = list(results)
    out.insert(draw(st.integers(0, len(out))), rect)
    return out


_BAD_DATA = ({"file_name": "../etc/passwd"}, {"file_name": "/abs/x.jpg"}, {"image": "http://[bad"},
             {"image": "https://example.org/x.jpg"}, {}, "not-an-object", {"file_name": ""})


@st.composite
def export(draw):
    """A list of tasks and the oracle: {task id: ("good", labels, boxes) | ("bad", None, None)}."""
    images = draw(st.lists(st.integers(0, N_IMAGES - 1), max_size=N_IMAGES, unique=True))
    tasks, oracle = [], {}
    for n, image in enumerate(images):
        tid = 100 + n
        results, labels, boxes = draw(good_annotation(image))
        mode = draw(st.sampled_from(["good", "good", "bad-result", "bad-data", "bad-annotations"]))
        data: object = {"file_name": f"img/{image}.jpg", IMAGE_NAME: f"/data/local-files/?d=img/{image}.jpg"}
        annotations: object = [{"id": 1000 + n, "result": results, "updated_at": "2026-01-01"}]
        if mode == "bad-result":
            annotations = [{"id": 1000 + n, "result": draw(corrupt(results, image))}]
        elif mode == "bad-data":
            data = draw(st.sampled_from(_BAD_DATA))
        elif mode == "bad-annotations":
            annotations = draw(st.sampled_from([{"result": results}, "x", [None], [{"id": 1, "result": "x"}]]))
        tasks.append({"id": tid, "data": data, "annotations": annotations})
        oracle[tid] = (image, labels, boxes) if mode == "good" else (image, None, None)
    return tasks, oracle


@FUZZ
@given(export())
def test_export_reader_names_every_bad_task_and_keeps_every_good_one(case):
    tasks, oracle = case
    out, report = export_to_canonical(tasks, base=BASE, expert_changes="apply")  # must not raise
    by_file = {img["file_name"]: img for img in out.images}
    boxes = out.boxes_by_image()
    names = {c["id"]: c["name"] for c in out.categories}
    for tid, (image, labels, expected) in oracle.items():
        img = by_file[f"img/{image}.jpg"]
        errors = [p for p in report.problems if p.task_id == tid and p.severity == "error"]
        got = [(names[b["category_id"]], b["bbox"]) for b in boxes[img["id"]]]
        if labels is None:  # corrupted: named, and the image keeps its previous state
            assert errors, f"task {tid} was corrupted but no error names it: {report.problems}"
            assert img["labels"] == ["cecum"] and got == [("polyp", [1.0, 2.0, 3.0, 4.0])]
        else:
            assert not errors, errors
            assert img["labels"] == labels
            assert len(got) == len(expected)
            for (cls, box), (gcls, gbox) in zip(expected, got):
                assert gcls == cls and all(math.isclose(a, b, abs_tol=0.01) for a, b in zip(box, gbox))
    assert report.n_applied == sum(1 for v in oracle.values() if v[1] is not None)
    validate_canonical(out.to_dict(), "fuzzed export")  # what the reader builds is a valid canonical file


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)


@st.composite
def garbage_task(draw):
    """A task-shaped object whose fields hold arbitrary JSON."""
    task = {"id": draw(_JSON), "data": draw(st.one_of(_JSON, st.just({"file_name": "img/0.jpg"})))}
    result = draw(st.dictionaries(st.sampled_from(["type", "from_name", "value", "original_width", "id"]), _JSON))
    task["annotations"] = draw(st.one_of(_JSON, st.just([{"id": draw(_JSON), "result": [result]}])))
    return task


@FUZZ
@given(st.lists(garbage_task(), max_size=4))
def test_export_reader_never_raises_on_arbitrary_json(tasks):
    out, report = export_to_canonical(tasks, base=BASE)
    assert report.n_tasks == len(tasks)
    validate_canonical(out.to_dict(), "fuzzed export")
