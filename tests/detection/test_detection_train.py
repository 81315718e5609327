"""A tiny real ultralytics run through the CLI (train + val + predict), with the network cut.

One training (64 synthetic images, 1 epoch, 64 px, CPU) serves every test in this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "detector_tiny.yaml"
TINY_OVERRIDES = ["train.epochs=1", "train.imgsz=64", "tracking.mode=disabled", "eval.n_overlays=2"]


@pytest.fixture(scope="module")
def guard(no_network_module):
    """Network guard (tests/detection/conftest.py) active while the module's training runs."""
    return no_network_module


@pytest.fixture(scope="module")
def trained_run(synth_dir, tmp_path_factory, guard):
    run = tmp_path_factory.mktemp("detector") / "run"
    canonical = synth_dir / "annotations.coco.json"
    rc = cli_main(["train", "detector", "--config", str(TINY), "--out", str(run),
                   f"data.canonical={canonical}", *TINY_OVERRIDES])
    assert rc == 0
    return run


def test_cli_train_writes_run_folder_and_metrics(trained_run, guard):
    run = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "detector" and metrics["task"] == "detection"
    for split in ("val", "test"):
        scores = metrics[split]
        for key in ("coco_ap", "coco_ap50", "coco_ap75", "ultralytics_map50", "ultralytics_map50_95"):
            assert isinstance(scores[key], float) and 0.0 <= scores[key] <= 1.0, (split, key, scores[key])
        per_class, per_class50 = scores["per_class_ap"], scores["per_class_ap50"]
        assert set(per_class) == set(per_class50) == {"polyp", "resection-margin"}
        assert scores["per_class_ap"]["polyp"] is not None  # every synthetic frame has a polyp box
        # COCO's AP is the mean over the classes that have ground truth (None: no ground truth)
        assert scores["coco_ap"] == pytest.approx(np.mean([v for v in per_class.values() if v is not None]))
        assert scores["coco_ap50"] == pytest.approx(np.mean([v for v in per_class50.values() if v is not None]))
    epoch = metrics["history"][0]
    assert epoch["epoch"] == 1 and epoch["train_loss"] > 0 and epoch["epoch_time_s"] > 0 and epoch["img_s"] > 0
    for path in ("config.yaml", "split.json", "checkpoints/best.pt", "checkpoints/last.pt",
                 "ultralytics/weights/best.pt", "ultralytics/results.csv", "dataset/data.yaml",
                 "predictions/test.coco_results.json"):
        assert (run / path).is_file(), path
    assert len(list((run / "plots").glob("test_*.png"))) == 2
    assert guard == [], f"ultralytics tried the network: {guard}"


def test_ultralytics_stays_offline_and_out_of_home(trained_run):
    import os

    from ultralytics.utils import ONLINE, SETTINGS, USER_CONFIG_DIR

    assert not ONLINE and SETTINGS["sync"] is False and SETTINGS["wandb"] is False and SETTINGS["api_key"] == ""
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"]).resolve()
    assert USER_CONFIG_DIR.resolve() == config_dir / "Ultralytics"
    assert Path(SETTINGS.file).resolve().parent == config_dir / "Ultralytics"
    assert Path.home().resolve() not in config_dir.parents
    assert (USER_CONFIG_DIR / "Arial.ttf").is_file()


def test_coco_results_use_canonical_ids(trained_run, synth_dir):
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.splits import load_split

    ds = load_canonical(synth_dir / "annotations.coco.json")
    test_files = set(load_split(trained_run / "split.json").splits["test"])
    test_ids = {img["id"] for img in ds.images if img["file_name"] in test_files}
    results = json.loads((trained_run / "predictions" / "test.coco_results.json").read_text())
    assert results, "an untrained detector still emits low-score boxes at conf=0.001"
    assert {r["image_id"] for r in results} <= test_ids
    assert {r["category_id"] for r in results} <= {c["id"] for c in ds.categories}


def test_refuses_missing_weights_and_busy_run_dir(tmp_path, synth_dir):
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import RunDirError, train_detector
    from kvasir_ml.detection.ultralytics_env import WeightsError

    cfg = load_config(DetectorConfig, TINY, ["model.weights=/nonexistent/yolo11n.pt", "tracking.mode=disabled"])
    with pytest.raises(WeightsError, match="do not exist"):
        train_detector(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not empty"):
        train_detector(load_config(DetectorConfig, TINY, ["tracking.mode=disabled"]), tmp_path / "busy")


def assert_valid_boxes(boxes: list, image: Path) -> None:
    """Every box is a known class with a score in [0, 1] and a size >= 0 inside the image
    (ultralytics clips boxes to the frame; 0.5 px slack for the rounding to 0.01 px)."""
    width, height = Image.open(image).size
    for box in boxes:
        x, y, w, h = box["xywh_px"]
        assert box["class"] in ("polyp", "resection-margin") and 0.0 <= box["score"] <= 1.0, box
        assert w >= 0 and h >= 0 and x >= -0.5 and y >= -0.5 and x + w <= width + 0.5 and y + h <= height + 0.5, box


def _fake_classifier_checkpoint(path: Path) -> Path:
    """An untrained tiny classifier saved in the classifier's checkpoint format (no training)."""
    from kvasir_ml.config import dump_config
    from kvasir_ml.models.classifier import KvasirClassifier
    from kvasir_ml.taxonomy import load_taxonomy
    from kvasir_ml.train.checkpoint import save_checkpoint
    from kvasir_ml.train.config import ClassifierConfig

    cfg = load_config(ClassifierConfig, REPO / "configs" / "classifier_multilabel_tiny.yaml")
    taxonomy = load_taxonomy()
    labels, classes = taxonomy.label_names, list(taxonomy.source(cfg.data.class_source).classes)
    m = cfg.model
    model = KvasirClassifier(m.arch, len(labels), m.inset_mode, m.branch_features, m.dropout)
    return save_checkpoint(path, {"model": model.state_dict(), "config": dump_config(cfg), "label_names": labels,
                                  "class_names": classes, "thresholds": [0.5] * len(labels)})


def test_run_detector_and_combined_predict_json(trained_run, synth_dir, tmp_path, guard):
    from kvasir_ml.detection.detect import run_detector
    from kvasir_ml.detection.yolo import load_yolo

    images = sorted((synth_dir / "images").glob("*.jpg"))[:3]
    best = trained_run / "checkpoints" / "best.pt"
    boxes = run_detector(load_yolo(best), images, device="cpu", conf=0.0)
    assert len(boxes) == 3 and any(boxes), "at conf=0 even an untrained detector emits boxes"
    for per_image, path in zip(boxes, images):
        assert all(set(det) == {"class", "score", "xywh_px"} for det in per_image)
        assert [d["score"] for d in per_image] == sorted((d["score"] for d in per_image), reverse=True)
        assert_valid_boxes(per_image, path)
    classifier = _fake_classifier_checkpoint(tmp_path / "classifier.pt")
    out = tmp_path / "pred.json"
    assert cli_main(["predict", "--detector", str(best), "--classifier", str(classifier), *map(str, images),
                     "--out", str(out), "--device", "cpu"]) == 0
    entries = json.loads(out.read_text())
    assert [Path(e["image"]).name for e in entries] == [p.name for p in images]
    for entry, path in zip(entries, images):
        assert {"labels", "boxes", "inset"} <= set(entry) and entry["inset"]["state"] in ("green", "black", "none")
        assert set(entry["labels"]) >= {"polyp", "z-line"} and all(0.0 <= v <= 1.0 for v in entry["labels"].values())
        assert_valid_boxes(entry["boxes"], path)
    assert guard == []


def test_eval_reproduces_the_runs_test_metrics(trained_run, tmp_path, guard):
    """`kvasir-ml eval` on the run's own split: its test block again (inference speed aside)."""
    run = json.loads((trained_run / "metrics.json").read_text())
    out = tmp_path / "eval"
    assert cli_main(["eval", str(trained_run / "checkpoints" / "best.pt"), "--out", str(out)]) == 0
    ev = json.loads((out / "metrics.json").read_text())
    timing = "inference_img_s"
    assert {k: v for k, v in ev["test"].items() if k != timing} == {k: v for k, v in run["test"].items() if k != timing}
    for key in ("kind", "task", "model", "inset_mode", "split_sha256", "imgsz", "dataset"):
        assert ev[key] == run[key], key
    assert ev["n_boxes"] == {"test": run["n_boxes"]["test"]} and ev["evaluated"]["own_data"] is True
    ours = json.loads((out / "predictions" / "test.coco_results.json").read_text())
    assert ours == json.loads((trained_run / "predictions" / "test.coco_results.json").read_text())
    assert guard == []


@pytest.mark.realdata
def test_eval_scores_cvc_clinicdb_boxes_from_masks(trained_run, shared_data, tmp_path, guard):
    """Cross-dataset: CVC-ClinicDB indexed (boxes from its masks), every frame scored."""
    cvc = tmp_path / "cvc.coco.json"
    assert cli_main(["data", "index", "cvc-clinicdb", str(shared_data / "cvc-clinicdb-sample"), "--out", str(cvc),
                     "--workers", "0"]) == 0
    out = tmp_path / "eval"
    assert cli_main(["eval", str(trained_run / "checkpoints" / "best.pt"), "--out", str(out), "--data", str(cvc)]) == 0
    ev = json.loads((out / "metrics.json").read_text())
    assert ev["dataset"] == "cvc-clinicdb" and ev["evaluated"]["subset"] == "all"
    assert ev["n_images"] == {"all": 20} and ev["n_boxes"]["all"] >= 20  # one polyp (or more) per frame
    for key in ("coco_ap", "coco_ap50", "ultralytics_map50"):
        assert 0.0 <= ev["all"][key] <= 1.0, key
    assert ev["all"]["per_class_ap"]["resection-margin"] is None  # CVC-ClinicDB has polyps only


def test_network_guard_is_not_vacuous(no_network):
    import requests

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.head("https://github.com/ultralytics/assets/releases/download/v0.0.0/Arial.ttf", timeout=3)
    assert no_network and no_network[0].startswith("getaddrinfo")
