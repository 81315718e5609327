"""A detector run that failed before ultralytics' first checkpoint can be started again with --resume."""

from __future__ import annotations

import json
from pathlib import Path


from kvasir_ml.cli import main as cli_main
from kvasir_ml.detection import run as run_mod

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "detector_tiny.yaml"


def test_detector_run_that_failed_before_its_first_checkpoint_can_be_resumed(synth_dir, tmp_path, monkeypatch,
                                                                             capsys, no_network):
    out = tmp_path / "run"
    argv = ["train", "detector", "--config", str(TINY), "--out", str(out), f"data.canonical={synth_dir / 'annotations.coco.json'}",
            "train.epochs=1", "train.imgsz=64", "tracking.mode=disabled", "eval.n_overlays=0", "data.max_images=24"]

    def crash(*args, **kwargs):
        raise RuntimeError("killed by the OOM killer (simulated)")

    monkeypatch.setattr(run_mod, "fit", crash)
    assert cli_main(argv) == 2
    monkeypatch.undo()
    assert (out / "config.yaml").is_file() and not (out / "ultralytics" / "weights" / "last.pt").exists()
    assert cli_main(argv) == 2
    assert "failed before its first checkpoint: pass --resume to start it again" in capsys.readouterr().err
    assert cli_main([*argv, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["kind"] == "detector"
    assert [p.name for p in out.iterdir() if p.name.startswith("attempt-")] and no_network == []
