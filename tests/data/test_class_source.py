"""``data.class_source`` never drops classes of the dataset silently (HyperKvasir on the
default ``kvasir-v2`` classes): the run is refused, naming each dropped class."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from kvasir_ml.data.class_source import ClassSourceError, check_class_source, dropped_classes, single_label_class
from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.taxonomy import load_taxonomy

TAX = load_taxonomy()


def _dataset(entries: list[tuple[str, str | None]]) -> CanonicalDataset:
    ds = CanonicalDataset.new("mixed", taxonomy=TAX)
    for i, (source, cls) in enumerate(entries):
        labels = TAX.labels_for(source, cls) if cls else ["polyp"]
        ds.add_image(f"images/{i}.jpg", 64, 64, labels, source, cls)
    return ds


def test_hyperkvasir_classes_without_a_kvasir_v2_class_are_refused_by_name():
    ds = _dataset([("hyperkvasir", "cecum"), ("hyperkvasir", "esophagitis-a"), ("hyperkvasir", "esophagitis-b-d"),
                   ("hyperkvasir", "ileum"), ("hyperkvasir", "ileum"), ("hyperkvasir", "barretts"),
                   ("kvasir-seg", "polyps"), ("hyperkvasir", None)])
    # cecum -> normal-cecum, both esophagitis grades -> esophagitis, Kvasir-SEG polyps -> polyps
    assert dropped_classes(ds, "kvasir-v2", TAX) == {"hyperkvasir/barretts": 1, "hyperkvasir/ileum": 2}
    with pytest.raises(ClassSourceError) as err:
        check_class_source(ds, "kvasir-v2", TAX, "data/hk.coco.json")
    message = str(err.value)
    assert message.startswith("data/hk.coco.json: data.class_source=kvasir-v2 has no single-label class for 2 classes")
    assert "hyperkvasir/barretts (1), hyperkvasir/ileum (2)" in message
    assert "data.class_source=hyperkvasir" in message  # the setting that keeps them
    assert "cecum" not in message and "esophagitis" not in message
    check_class_source(ds, "hyperkvasir", TAX, "data/hk.coco.json")  # every class kept: no error


def test_kvasir_v2_data_passes_and_unknown_classes_are_not_counted():
    ds = _dataset([("kvasir-v2", c) for c in TAX.source("kvasir-v2").classes] + [("kvasir-seg", "polyps")])
    check_class_source(ds, "kvasir-v2", TAX, "v2.json")
    ds.images[0]["source_class"] = "drawn-in-label-studio"  # no class to lose
    assert dropped_classes(ds, "kvasir-v2", TAX) == {}
    # the same matching rule the single-label targets use
    classes = TAX.source("kvasir-v2").classes
    assert single_label_class(TAX, "hyperkvasir", "cecum", "kvasir-v2") == classes.index("normal-cecum")
    assert single_label_class(TAX, "hyperkvasir", "retroflex-rectum", "kvasir-v2") == -1


@pytest.mark.realdata
def test_real_hyperkvasir_labels_on_the_default_class_source(shared_data):
    with open(shared_data / "hyperkvasir" / "image-labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    src = TAX.source("hyperkvasir")
    ds = _dataset([("hyperkvasir", src.canonical_class(r["Finding"])) for r in rows])
    dropped = dropped_classes(ds, "kvasir-v2", TAX)
    # HyperKvasir's classes without a Kvasir v2 counterpart (no class of that name or label set)
    assert {k.split("/")[1] for k in dropped} == {
        "barretts", "barretts-short-segment", "bbps-0-1", "bbps-2-3", "hemorrhoids", "ileum", "impacted-stool",
        "retroflex-rectum", "retroflex-stomach"}
    per_class = Counter(src.canonical_class(r["Finding"]) for r in rows)
    assert dropped == {f"hyperkvasir/{c}": per_class[c] for c in sorted(k.split("/")[1] for k in dropped)}
    assert sum(dropped.values()) < len(rows)
    with pytest.raises(ClassSourceError, match=r"data\.class_source=hyperkvasir"):
        check_class_source(ds, "kvasir-v2", TAX, "hyperkvasir.coco.json")
    assert dropped_classes(ds, "hyperkvasir", TAX) == {}


def test_a_run_with_dropped_classes_is_refused_before_anything_is_written(synth_dir, tmp_path):
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.prepare import prepare_data

    raw = json.loads((synth_dir / "annotations.coco.json").read_text())
    for img in raw["images"][:3]:  # three frames recorded as HyperKvasir ileum
        img["source"], img["source_class"], img["labels"] = "hyperkvasir", "ileum", ["ileum"]
    canonical = tmp_path / "mixed.coco.json"
    canonical.write_text(json.dumps(raw))
    load_canonical(canonical)  # a valid file: only the class source is wrong
    cfg = load_classifier_config(None, [f"data.canonical={canonical}", f"data.root={synth_dir}"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(ClassSourceError, match=r"hyperkvasir/ileum \(3\)"):
        prepare_data(cfg, run_dir)
    assert list(run_dir.iterdir()) == []
