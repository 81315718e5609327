"""Nothing lost: checkpoint commits survive a kill at any step, a full disk is named, and
run folders that failed early (or --out naming a file) give clear answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kvasir_ml.cli import main as cli_main
from kvasir_ml.io import DiskFullError, orphaned_temp_files
from kvasir_ml.train import checkpoint as ckpt_mod
from kvasir_ml.train import run as run_mod
from kvasir_ml.train.checkpoint import PENDING_BEST, load_checkpoint, recover_checkpoints, save_checkpoint
from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.run import RunDirError, _Trainer, train_classifier

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"


class Killed(BaseException):
    """Stands for SIGKILL: raised at a chosen point, caught by nothing in the library."""


def _fake_trainer(ckpt_dir: Path) -> SimpleNamespace:
    """What ``_Trainer._save_checkpoints`` uses of a trainer, with a model that records its epoch."""
    fake = SimpleNamespace(ckpt_dir=ckpt_dir, best_epoch=0)

    def state(epoch: int) -> dict:
        return {"model": {"w": torch.full((2,), float(epoch))}, "config": {}, "label_names": [], "class_names": [],
                "thresholds": [], "epoch": epoch, "best_epoch": fake.best_epoch, "optimizer": {}, "scheduler": {},
                "rng": {}, "best_val_macro_ap": float(fake.best_epoch)}

    fake.checkpoint_state = state
    return fake


def _epochs(trainer: SimpleNamespace, improved: list[bool]) -> None:
    for epoch, better in enumerate(improved, start=1):
        _Trainer._save_checkpoints(trainer, epoch, better)


@pytest.mark.parametrize("kill_at", ["after-pending-best", "during-last", "after-last"])
def test_kill_at_any_step_of_the_checkpoint_commit_is_repaired_on_resume(tmp_path, monkeypatch, kill_at):
    """Epoch 1 best, epoch 2 worse, epoch 3 better; killed while epoch 3 is being committed."""
    ckpt = tmp_path / "checkpoints"
    trainer = _fake_trainer(ckpt)
    _epochs(trainer, [True, False])
    real_save, real_replace = ckpt_mod.save_checkpoint, os.replace

    def save(path, state):
        if kill_at == "during-last" and path.name == "last.pt":
            (path.parent / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
            raise Killed
        real_save(path, state)
        if kill_at == "after-pending-best" and path.name == PENDING_BEST:
            raise Killed

    def replace(src, dst):
        if kill_at == "after-last" and Path(src).name == PENDING_BEST:
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod, "save_checkpoint", save)
    monkeypatch.setattr(ckpt_mod.os, "replace", replace)
    with pytest.raises(Killed):
        _Trainer._save_checkpoints(trainer, 3, True)
    monkeypatch.undo()

    last = load_checkpoint(ckpt / "last.pt")
    actions = recover_checkpoints(ckpt, last)
    assert actions, "an interrupted commit must leave something to repair"
    assert load_checkpoint(ckpt / "best.pt")["epoch"] == last["best_epoch"]
    assert not (ckpt / PENDING_BEST).exists() and not orphaned_temp_files(ckpt)
    expected_best = 3 if kill_at == "after-last" else 1
    assert last["best_epoch"] == expected_best
    assert float(load_checkpoint(ckpt / "best.pt")["model"]["w"][0]) == expected_best
    if last["epoch"] == 2:  # the killed epoch is run again and commits normally
        trainer.best_epoch = last["best_epoch"]
        _Trainer._save_checkpoints(trainer, 3, True)
        assert load_checkpoint(ckpt / "best.pt")["epoch"] == load_checkpoint(ckpt / "last.pt")["best_epoch"] == 3


def test_stale_best_from_the_old_write_order_is_rebuilt_or_refused(tmp_path):
    """The issue's state: last.pt says epoch 3 is best, best.pt still holds epoch 1."""
    ckpt = tmp_path / "checkpoints"
    trainer = _fake_trainer(ckpt)
    _epochs(trainer, [True, False])
    trainer.best_epoch = 3
    save_checkpoint(ckpt / "last.pt", trainer.checkpoint_state(3))  # killed before best.pt was written
    actions = recover_checkpoints(ckpt, load_checkpoint(ckpt / "last.pt"))
    assert any("rebuilt best.pt" in a for a in actions)
    assert load_checkpoint(ckpt / "best.pt")["epoch"] == 3
    assert "optimizer" not in load_checkpoint(ckpt / "best.pt")  # rebuilt lean, like the original
    save_checkpoint(ckpt / "best.pt", {**trainer.checkpoint_state(1), "epoch": 1})
    save_checkpoint(ckpt / "last.pt", trainer.checkpoint_state(4))  # best epoch 3 exists nowhere any more
    with pytest.raises(RunDirError, match="best.pt holds epoch 1 but .*last.pt says the best model is epoch 3"):
        recover_checkpoints(ckpt, load_checkpoint(ckpt / "last.pt"))


def _symlink_to_dev_full(monkeypatch) -> None:
    """Every atomic write's temporary file becomes a link to /dev/full: the kernel's ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is needed to simulate a full disk")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.close(fd)
        os.unlink(path)
        os.symlink("/dev/full", path)
        return os.open(os.devnull, os.O_RDONLY), path

    monkeypatch.setattr("kvasir_ml.io.tempfile.mkstemp", mkstemp)


def test_disk_full_names_the_folder_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "label_names": [], "class_names": [],
                           "thresholds": [], "epoch": 1})
    _symlink_to_dev_full(monkeypatch)
    with pytest.raises(DiskFullError) as exc:
        save_checkpoint(path, {"model": {"w": torch.zeros(100_000)}, "config": {}, "label_names": [],
                               "class_names": [], "thresholds": [], "epoch": 2})
    assert str(exc.value).startswith(f"no space left on {path.parent} while writing last.pt")
    assert "enforce fail" not in str(exc.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the previous version is intact
    assert not orphaned_temp_files(path.parent) and sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_disk_full_through_the_cli_is_one_line_not_a_traceback(synth_dir, tmp_path, monkeypatch, capsys):
    _symlink_to_dev_full(monkeypatch)
    rc = cli_main(["data", "split", str(synth_dir / "annotations.coco.json"), "--out", str(tmp_path / "split.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: no space left on {tmp_path}") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def one_epoch(synth_dir, tmp_path_factory) -> list[str]:
    cache = tmp_path_factory.mktemp("bad-ckpt-cache")
    return [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={cache}", "optim.epochs=1",
            "tracking.mode=disabled", "model.inset_mode=masked"]


def test_run_that_failed_before_its_first_checkpoint_can_be_resumed(one_epoch, tmp_path, monkeypatch):
    cfg = load_classifier_config(ML_TINY, one_epoch)
    run_dir = tmp_path / "run"

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(run_mod, "train_one_epoch", oom)
    with pytest.raises(RuntimeError, match="out of memory"):
        train_classifier(cfg, run_dir)
    monkeypatch.undo()
    assert (run_dir / "config.yaml").is_file() and not (run_dir / "checkpoints" / "last.pt").exists()
    with pytest.raises(RunDirError, match="failed before its first checkpoint: pass --resume"):
        train_classifier(cfg, run_dir)
    train_classifier(cfg, run_dir, resume=True)  # starts it again
    assert (run_dir / "metrics.json").is_file()
    attempts = [p for p in run_dir.iterdir() if p.name.startswith("attempt-")]
    assert len(attempts) == 1 and (attempts[0] / "config.yaml").is_file()  # the failed attempt is kept


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path, one_epoch):
    cfg = load_classifier_config(ML_TINY, one_epoch)
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="holds files a run does not write .*thesis.tex"):
        train_classifier(cfg, tmp_path, resume=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("kind, config", [("classifier", ML_TINY), ("detector", REPO / "configs" / "detector_tiny.yaml")])
def test_out_naming_an_existing_file_is_refused(tmp_path, capsys, kind, config):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    rc = cli_main(["train", kind, "--config", str(config), "--out", str(target), "tracking.mode=disabled"])
    err = capsys.readouterr().err
    assert rc == 2 and "is an existing file, not a run folder" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


@pytest.mark.slow  # ~20 s: a real kill; every step of the write is also covered by the unit tests above
def test_sigkill_between_best_and_last_resumes_to_the_uninterrupted_result(synth_dir, tmp_path):
    """The issue's scenario with a real SIGKILL: killed right after the new best is written."""
    import json

    overrides = [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={tmp_path / 'cache'}",
                 "optim.epochs=3", "tracking.mode=disabled", "model.inset_mode=masked"]
    cfg = load_classifier_config(ML_TINY, overrides)
    full = json.loads((train_classifier(cfg, tmp_path / "full") / "metrics.json").read_text())
    aps = [h["val_macro_ap"] for h in full["history"]]
    improving = [e for e in range(2, len(aps) + 1) if aps[e - 1] > max(aps[: e - 1])]
    assert improving, f"the scenario needs a later epoch that improves on epoch 1: {aps}"
    kill_epoch = improving[-1]
    script = f"""
import os, signal, sys
import kvasir_ml.train.checkpoint as checkpoint
import kvasir_ml.train.run as run
from kvasir_ml.train.config import load_classifier_config
real = checkpoint.save_checkpoint
def save(path, state):
    real(path, state)
    if path.name == {PENDING_BEST!r} and state["epoch"] == {kill_epoch}:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_checkpoint = save
run.train_classifier(load_classifier_config({str(ML_TINY)!r}, {overrides!r}), {str(tmp_path / 'killed')!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    resumed = json.loads((train_classifier(cfg, tmp_path / "killed", resume=True) / "metrics.json").read_text())
    assert resumed["best_epoch"] == full["best_epoch"] and resumed["test"] == full["test"]


def test_a_resume_with_another_config_is_refused_before_anything_is_written(one_epoch, tmp_path):
    run_dir = tmp_path / "run"
    train_classifier(load_classifier_config(ML_TINY, one_epoch), run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "wandb" not in p.parts}
    other = load_classifier_config(ML_TINY, [*one_epoch, "optim.weight_decay=0.5"])
    with pytest.raises(RunDirError, match="config differs from the checkpoint in optim.weight_decay"):
        train_classifier(other, run_dir, resume=True)
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "wandb" not in p.parts}
    assert after == before  # config.yaml, checkpoints and metrics untouched
