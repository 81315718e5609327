"""DDP for real: torchrun, 2 processes, gloo, a tiny run, stopped and resumed (any CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kvasir_ml.train.checkpoint import load_checkpoint
from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.run import RunDirError, train_classifier

REPO = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("ddp_job.py")


def _torchrun(out: Path, overrides: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(JOB), str(out), *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def _ranks(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in (0, 1)]


def _overrides(synth_dir: Path, tmp_path: Path, epochs: int) -> list[str]:
    return [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.image_size_px=32", "model.inset_mode=masked", "model.branch_size_px=16",
            f"optim.epochs={epochs}", "optim.lr_find=true", "runtime.batch_size=8", "tracking.mode=disabled"]


def _assert_lr_find_on_rank0_and_replicas_identical(out: Path) -> None:
    full = _ranks(out, "full")
    # one LR finder (rank 0), its choice on every rank; replicas stay identical
    assert [r["world"] for r in full] == [2, 2]
    assert len(full[0]["lrs"]) == 2 and len(full[1]["lrs"]) == 1  # the finder's probe optimizer: rank 0 only
    assert full[0]["lrs"][-1] == full[1]["lrs"][-1] != 0.001  # the finder's LR, not the config's, on both
    assert full[0]["checksum"] == full[1]["checksum"]


def test_ddp_lr_find_on_rank0_and_world_size_guard(synth_dir, tmp_path):
    """One 1-epoch run: the default suite's DDP test (the stop/resume below adds three epochs)."""
    overrides = _overrides(synth_dir, tmp_path, epochs=1)
    _torchrun(tmp_path, ["--full-only", *overrides])
    _assert_lr_find_on_rank0_and_replicas_identical(tmp_path)
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    # stats over both ranks: 38 train images, shards of 19, two full batches of 8 per rank
    assert [(h["n_images"], h["world_size"]) for h in metrics["history"]] == [(32, 2)]
    one = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", overrides)
    (tmp_path / "full" / "metrics.json").unlink()
    with pytest.raises(RunDirError, match="trained by 2 process"):
        train_classifier(one, tmp_path / "full", resume=True)


# Slow (~45 s on 2 quiet cores): the test above covers DDP with the LR finder and the
# world-size guard by default; this one adds the stop after epoch 1 and the resume.
@pytest.mark.slow
def test_ddp_lr_find_on_rank0_resume_and_world_size_guard(synth_dir, tmp_path):
    overrides = _overrides(synth_dir, tmp_path, epochs=2)
    _torchrun(tmp_path, overrides)
    _assert_lr_find_on_rank0_and_replicas_identical(tmp_path)
    full = _ranks(tmp_path, "full")
    resumed = _ranks(tmp_path, "resumed")
    assert resumed[0]["checksum"] == resumed[1]["checksum"] == full[0]["checksum"]

    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert a["world_size"] == b["world_size"] == 2 and a["epoch"] == b["epoch"] == 2
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    # stats over both ranks: 38 train images, shards of 19, two full batches of 8 per rank
    assert [h["n_images"] for h in metrics["history"]] == [32, 32]
    assert all(h["world_size"] == 2 for h in metrics["history"])
    strip = ("img_s", "data_time_s", "step_time_s")
    full_metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert [{k: v for k, v in h.items() if k not in strip} for h in metrics["history"]] == \
        [{k: v for k, v in h.items() if k not in strip} for h in full_metrics["history"]]
    assert metrics["test"] == full_metrics["test"]

    # the world-2 checkpoint is not resumed by one process
    one = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", overrides)
    (tmp_path / "killed" / "metrics.json").unlink()
    with pytest.raises(RunDirError, match="trained by 2 process"):
        train_classifier(one, tmp_path / "killed", resume=True)


@pytest.mark.slow
def test_experiment_under_torchrun_writes_once_from_rank0(tmp_path):
    """`torchrun ... kvasir_ml experiment compare`: rank 0 prepares the data and writes the
    report (printed once); a second launch reuses the finished runs on every rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kvasir_ml",
           "experiment", "compare", "--config", str(REPO / "configs" / "experiment_compare_tiny.yaml"),
           "--out", str(tmp_path / "exp"), "--no-progress", "seeds=[0]",
           "variants={multilabel: [masked], singlelabel: [masked]}",
           "overrides=[optim.epochs=1,data.image_size_px=32]", "data.synthetic_n=64", "tracking.mode=disabled"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.stdout.count("| variant |") == 1  # one report, from rank 0
        if attempt == 0:
            report = (tmp_path / "exp" / "comparison.json").stat().st_mtime_ns
            assert "finished earlier, reused" not in proc.stderr
    assert proc.stderr.count("finished earlier, reused") == 2  # both runs, logged by rank 0 only
    assert (tmp_path / "exp" / "comparison.json").stat().st_mtime_ns >= report
    for variant in ("multilabel-masked", "singlelabel-masked"):
        assert load_checkpoint(tmp_path / "exp" / "runs" / variant / "seed0" / "checkpoints" / "last.pt")["world_size"] == 2
