"""eval.ground_truth: test scored on folder labels, or on verified images with verified labels.

A verified version is built with the same function a verification pull uses
(``build_verified_version``), without a server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.splits import make_splits
from kvasir_ml.data.verified import folder_view, select_test_images
from kvasir_ml.labelstudio.verify_answers import Answer, Resolution
from kvasir_ml.labelstudio.verify_pull import build_verified_version
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.prepare import prepare_data

REPO = Path(__file__).resolve().parents[2]
TAX = load_taxonomy()
CLASSES = list(TAX.source("kvasir-v2").classes)


def _resolution(file_name: str, labels: list[str]) -> Resolution:
    answers = [Answer(annotator=k, annotation_id=10 + k, task_id=1, updated_at=f"2026-12-0{k}T10:00:00Z",
                      labels={n: n in labels for n in TAX.label_names}) for k in (1, 2)]
    return Resolution(file_name=file_name, answers=answers, labels={n: n in labels for n in TAX.label_names},
                      boxes={b: [] for b in TAX.box_class_names}, unanimous_share=1.0)


@pytest.fixture(scope="module")
def verified_setup(synth_dir, tmp_path_factory):
    """The synthetic base, its split, and a version where 3 test images are verified:
    one as another class, one as a label set of no class, one as two labels no class has."""
    out = tmp_path_factory.mktemp("verified")
    base = load_canonical(synth_dir / "annotations.coco.json")
    split = make_splits(base, seed=0, fractions=(0.6, 0.2, 0.2))
    split_path = out / "split.json"
    split.save(split_path)
    boxed = {base.image_by_id[a["image_id"]]["file_name"] for a in base.annotations}
    ordered = split.splits["test"]
    chosen = {next(f for f in ordered if f in boxed), *[f for f in ordered if f not in boxed][:2]}
    test = [f for f in ordered if f in chosen]  # one had boxes: the verification (no box drawn) drops them
    wanted = {test[0]: list(TAX.labels_for("kvasir-v2", "normal-cecum")),  # a class: normal-cecum
              test[1]: ["polyp", "ulcerative-colitis"],  # no class has this set
              test[2]: list(TAX.labels_for("kvasir-v2", "esophagitis"))}
    resolutions = [_resolution(f, labels) for f, labels in wanted.items()]
    version = build_verified_version(base, resolutions, TAX, {"project_id": 7, "pulled_at": "now"})
    version.info["verification"] = {"project_id": 7, "pulled_at": "now", "base_sha256": "x"}
    path = out / "annotations.v2.coco.json"
    version.save(path, keep_backup=False)
    return base, path, split_path, wanted, out, [f"data.canonical={path}", f"data.root={synth_dir}",
                                                 f"data.split_file={split_path}", f"data.cache_dir={out / 'cache'}",
                                                 "tracking.mode=disabled"]


def test_verified_version_keeps_provenance_and_folder_view(verified_setup):
    base, path, _, wanted, *_ = verified_setup
    version = load_canonical(path)
    by_file, base_by_file = version.image_by_file, base.image_by_file
    for name, labels in wanted.items():
        entry = by_file[name]
        assert entry["labels"] == [n for n in TAX.label_names if n in labels]
        assert entry["verified"]["previous_labels"] == base_by_file[name]["labels"]
        assert [a["id"] for a in entry["verified"]["annotators"]] == [1, 2]
        assert entry["verified"]["annotated_at"] == "2026-12-02T10:00:00Z"
    unverified = [img for img in version.images if img["file_name"] not in wanted]
    assert all("verified" not in img and img["labels"] == base_by_file[img["file_name"]]["labels"] for img in unverified)
    folder = folder_view(version)
    assert [img["labels"] for img in folder.images] == [img["labels"] for img in base.images]
    def boxes(ds):
        return sorted((ds.image_by_id[a["image_id"]]["file_name"], a["category_id"], tuple(a["bbox"])) for a in ds.annotations)
    assert boxes(folder) == boxes(base) and len(boxes(version)) < len(boxes(base))


def test_verified_mode_without_verified_images_names_the_file(verified_setup):
    base, *_ = verified_setup
    with pytest.raises(ValueError, match=r"base\.json: eval.ground_truth=verified, but none of the 2 test images"):
        select_test_images(base, [img["file_name"] for img in base.images[:2]], "verified", "base.json")


def test_prepare_data_scores_verified_images_only(verified_setup):
    _, path, _, wanted, out, common = verified_setup
    cfg_path = REPO / "configs" / "classifier_multilabel_tiny.yaml"
    folder = prepare_data(load_classifier_config(cfg_path, common), out / "folder")
    verified = prepare_data(load_classifier_config(cfg_path, [*common, "eval.ground_truth=verified"]), out / "verified")
    assert folder.ground_truth == {"kind": "folder", "n_test_images": len(folder.records["test"]), "n_test_left_out": 0}
    assert verified.ground_truth["kind"] == "verified" and verified.ground_truth["n_test_images"] == 3
    assert verified.ground_truth["n_test_left_out"] == len(folder.records["test"]) - 3
    assert verified.ground_truth["verification"]["project_id"] == 7
    assert verified.label_names == folder.label_names  # the vocabulary stays the folder one
    for name in ("train", "val"):  # training and selection see the same data in both modes
        assert np.array_equal(verified.records[name].y_labels, folder.records[name].y_labels)
    test = verified.records["test"]
    assert [p.as_posix()[-len(name):] for p, name in zip(test.paths, wanted)] == list(wanted)
    for row, labels in enumerate(wanted.values()):
        assert {verified.label_names[i] for i in np.flatnonzero(test.y_labels[row])} == set(labels) & set(verified.label_names)
    assert list(test.y_class) == [CLASSES.index("normal-cecum"), -1, CLASSES.index("esophagitis")]


def test_metrics_record_the_ground_truth(verified_setup):
    from kvasir_ml.train.run import train_classifier

    *_, out, common = verified_setup
    cfg = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml",
                                 [*common, "optim.epochs=1", "eval.ground_truth=verified"])
    run = train_classifier(cfg, out / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ground_truth"]["kind"] == "verified" and metrics["ground_truth"]["n_test_images"] == 3
    assert metrics["n_images"]["test"] == 3
