"""The W&B tracker against real wandb in offline mode (no network), read back from the run files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from kvasir_ml.config import TrackingConfig, load_config
from kvasir_ml.tracking import NullTracker, make_tracker
from wandb_offline import read_offline_run
from kvasir_ml.tracking.wandb_media import flatten_metrics, pr_points, strip_secrets
from kvasir_ml.tracking.wandb_tracker import WandbTracker

REPO = Path(__file__).resolve().parents[2]
FAKE_WANDB_KEY = "fakewandbkey" + "0" * 28
FAKE_LS_KEY = "fake-label-studio-token-123"
LABELS = ["polyp", "ulcerative-colitis", "esophagitis"]
BOX_CLASSES = ["polyp", "resection-margin"]


def _sample(rng: np.random.Generator) -> dict:
    return {"image": (rng.random((96, 128, 3)) * 255).astype(np.uint8), "caption": "img 0", "boxes": [
        {"xywh_px": [10, 12, 30, 40], "class": "polyp", "score": None, "kind": "gt"},
        {"xywh_px": [11, 10, 28, 44], "class": "polyp", "score": 0.83, "kind": "pred"},
        {"xywh_px": [60, 50, 20, 20], "class": "resection-margin", "score": 0.31, "kind": "pred"}]}


def _log_everything(tracker, run_dir: Path, rng: np.random.Generator) -> None:
    for epoch in range(1, 4):
        tracker.log({"train_loss": 1.0 / epoch, "val_macro_ap": 0.2 * epoch, "img_s": np.float32(5.0)}, step=epoch)
    tracker.summary({"test": {"macro_ap": 0.61, "top1": np.float64(0.7), "per_class": {"polyp": {"ap": 0.9}}},
                     "history": [1, 2, 3]})
    tracker.table("test/per_class", ["label", "ap", "f1", "threshold", "support"],
                  [["polyp", np.float32(0.9), 0.8, 0.5, np.int64(7)], ["esophagitis", 0.4, 0.3, 0.45, 3]])
    y_true = (rng.random((24, 3)) > 0.5).astype(int)
    tracker.pr_curves("test/pr_curves", y_true, rng.random((24, 3)), LABELS)
    tracker.pr_curves("test/pr_curves_single", rng.integers(0, 3, 24), rng.random((24, 3)), LABELS)
    tracker.confusion("test/confusion", [0, 1, 2, 2], [0, 2, 2, 1], LABELS)
    tracker.predictions("samples", [_sample(rng)], BOX_CLASSES)
    (run_dir / "split.json").write_text('{"train": []}')
    tracker.artifact(run_dir / "split.json", "run-split", "dataset", {"sha256": "abc"})


def test_offline_run_has_config_history_summary_tables_and_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", FAKE_LS_KEY)
    run_dir = tmp_path / "run"
    config = {"optim": {"lr": 0.001}, "api_key": FAKE_WANDB_KEY,
              "labelstudio": {"url": "http://127.0.0.1:8080", "token": FAKE_LS_KEY, "password": "pw-secret"}}
    tracker = make_tracker(TrackingConfig(group="exp1", tags=["synthetic"]), run_dir, "ml-branch-s0",
                           "train-classifier", config, tags=["multilabel", "branch"])
    assert isinstance(tracker, WandbTracker)
    assert tracker.offline_dir.parent == run_dir / "wandb" and tracker.offline_dir.name.startswith("offline-run-")
    _log_everything(tracker, run_dir, np.random.default_rng(0))
    tracker.finish()
    tracker.finish()  # idempotent

    run = read_offline_run(tracker.offline_dir)
    assert run["config"] == {"optim": {"lr": 0.001}, "labelstudio": {"url": "http://127.0.0.1:8080"}}
    assert (run["group"], run["job_type"], run["name"]) == ("exp1", "train-classifier", "ml-branch-s0")
    assert run["tags"] == ["synthetic", "multilabel", "branch"]
    assert [row["val_macro_ap"] for row in run["history"] if "val_macro_ap" in row] == pytest.approx([0.2, 0.4, 0.6])
    assert run["summary"]["test/macro_ap"] == 0.61 and run["summary"]["test/per_class/polyp/ap"] == 0.9
    assert "history" not in run["summary"]  # lists are not summary material
    assert run["tables"]["test/per_class"]["columns"] == ["label", "ap", "f1", "threshold", "support"]
    assert [r[0] for r in run["tables"]["test/per_class"]["data"]] == ["polyp", "esophagitis"]
    assert {r[0] for r in run["tables"]["test/pr_curves_table"]["data"]} <= set(LABELS)
    assert len(run["tables"]["test/confusion_table"]["data"]) == 9
    samples = run["summary"]["samples"]
    assert samples["_type"] == "images/separated" and set(samples["all_boxes"][0]) == {"ground_truth", "predictions"}
    assert [a for a in run["artifacts"] if a["type"] != "run_table"] == \
        [{"name": "run-split", "type": "dataset", "files": ["split.json"]}]
    assert run["exit_code"] == 0
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert FAKE_WANDB_KEY.encode() not in data and FAKE_LS_KEY.encode() not in data, path
            assert b"pw-secret" not in data, path


def test_disabled_mode_writes_nothing(tmp_path):
    tracker = make_tracker(TrackingConfig(mode="disabled"), tmp_path / "run", "r", "train", {"a": 1})
    assert isinstance(tracker, NullTracker)
    _log_everything(tracker, tmp_path, np.random.default_rng(0))
    tracker.finish()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["split.json"]  # written by the test itself


def test_failures_never_raise(tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("simulated W&B outage")

    tracker = make_tracker(TrackingConfig(), tmp_path / "ok", "r", "train", {"a": 1})
    monkeypatch.setattr(tracker.run, "log", broken)
    monkeypatch.setattr(tracker.run, "log_artifact", broken)
    _log_everything(tracker, tmp_path, np.random.default_rng(0))
    tracker.predictions("bad", [{"image": np.zeros((8, 8, 3), np.uint8), "boxes": [
        {"xywh_px": [0, 0, 1, 1], "class": "not-a-class", "kind": "pred"}]}], BOX_CLASSES)
    tracker.image("missing", tmp_path / "nope.png")
    assert tracker._dead  # gave up after repeated failures instead of retrying forever
    tracker.finish()

    monkeypatch.setattr(wandb, "init", broken)
    fallback = make_tracker(TrackingConfig(mode="online"), tmp_path / "down", "r", "train", {"a": 1})
    assert isinstance(fallback, NullTracker) and fallback.run_dir == tmp_path / "down"
    fallback.log({"a": 1.0}, step=1)
    fallback.finish()


def test_two_runs_in_one_process_share_a_group(tmp_path):
    cfg = TrackingConfig(group="compare-1")
    first = make_tracker(cfg, tmp_path / "a", "a", "train-classifier", {"seed": 0})
    second = make_tracker(cfg, tmp_path / "b", "b", "train-classifier", {"seed": 1})  # both open at once
    first.log({"val_macro_ap": 0.1}, step=1)
    second.log({"val_macro_ap": 0.2}, step=1)
    second.table("per_class", ["label", "ap"], [["polyp", 0.5]])
    first.finish()
    second.log({"val_macro_ap": 0.3}, step=2)  # the other run keeps logging
    second.finish()
    a, b = read_offline_run(tmp_path / "a"), read_offline_run(tmp_path / "b")
    assert a["group"] == b["group"] == "compare-1" and a["run_id"] != b["run_id"]
    assert [r["val_macro_ap"] for r in b["history"]] == [0.2, 0.3] and a["config"] == {"seed": 0}
    # table staging copies live in the run's own folder (wandb sync reads them), when we chose it
    if os.environ.get("WANDB_DATA_DIR", "").startswith(str(tmp_path)):
        assert any((tmp_path / "b" / "wandb" / ".home" / "data").rglob("tmp*"))


def test_run_files_stay_out_of_home(tmp_path):
    """A fresh process with no WANDB_* folders set writes only inside the run folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
               XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"), WANDB_API_KEY=FAKE_WANDB_KEY)
    code = textwrap.dedent(f"""
        from kvasir_ml.config import TrackingConfig
        from kvasir_ml.tracking import make_tracker
        t = make_tracker(TrackingConfig(), {str(tmp_path / 'run')!r}, "r", "train", {{"a": 1}})
        t.table("t", ["x"], [[1]])
        t.finish()
        print(type(t).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("WandbTracker"), out.stderr
    home_files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert home_files == []
    assert any((tmp_path / "run" / "wandb" / ".home" / "cache").rglob("*.log"))
    for path in (tmp_path / "run").rglob("*"):
        assert not path.is_file() or FAKE_WANDB_KEY.encode() not in path.read_bytes(), path


def test_pr_points_and_helpers():
    y_true = np.array([[1, 0], [0, 0], [1, 0]])
    rows = pr_points(y_true, np.array([[0.9, 0.1], [0.2, 0.3], [0.4, 0.8]]), ["a", "b"], np.linspace(0, 1, 5))
    assert {r[0] for r in rows} == {"a"}  # "b" has no positives: no curve
    assert [r[2] for r in rows] == [1.0] * 5  # both positives outrank the negative
    assert flatten_metrics({"a": {"b": 1, "c": "x" * 500, "d": [1]}, "e": np.int64(2)}) == {"a/b": 1, "e": 2}
    assert strip_secrets({"wandb": {"api_key": 1, "API_TOKEN": 2, "n": 3}, "l": [{"secret": 1}]}) == \
        {"wandb": {"n": 3}, "l": [{}]}


def test_sweep_config_overrides_are_valid_classifier_config(monkeypatch):
    """What `wandb agent` passes through ${args_no_hyphens} (`name=str(value)`) loads as overrides."""
    from kvasir_ml.cli import build_parser
    from kvasir_ml.cli.train import expand_out
    from kvasir_ml.train.config import ClassifierConfig

    sweep = yaml.safe_load((REPO / "configs" / "sweep_classifier.yaml").read_text())
    assert "${args_no_hyphens}" in sweep["command"] and sweep["metric"]["name"] == "val_macro_ap"
    for name, spec in sweep["parameters"].items():
        for value in spec.get("values", [spec.get("min"), spec.get("max"), 1e-05]):
            cfg = load_config(ClassifierConfig, None, [f"{name}={value}", "tracking.mode=online"])
            section, key = name.split(".")
            got = getattr(getattr(cfg, section), key)
            assert got == (pytest.approx(value) if isinstance(value, float) else value), (name, value)
    args = [c for c in sweep["command"] if not c.startswith("${")][2:] + ["optim.lr=1e-05", "loss.name=asl"]
    parsed = build_parser().parse_args(args)
    assert parsed.kind == "classifier" and parsed.overrides[-2:] == ["optim.lr=1e-05", "loss.name=asl"]
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    assert expand_out(parsed.out) == "runs/sweeps/classifier/abc123"
