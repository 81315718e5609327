"""One run-folder policy for classifier, detector and experiment runs."""

from __future__ import annotations

import pytest

from kvasir_ml.rundir import RunDirError, check_run_dir, config_differences


def test_config_differences_ignore_where_and_how_fast_but_not_what_is_trained():
    saved = {"optim": {"lr": 1e-3, "lr_find": False, "epochs": 4}, "runtime": {"device": "cpu", "seed": 0},
             "tracking": {"mode": "offline"}, "train": {"device": "cpu", "imgsz": 128}}
    now = {"optim": {"lr": 1e-3, "lr_find": False, "epochs": 4}, "runtime": {"device": "cuda", "seed": 0},
           "tracking": {"mode": "disabled"}, "train": {"device": "cuda:1", "imgsz": 128}}
    assert config_differences(now, saved) == []
    now["runtime"]["seed"], now["train"]["imgsz"] = 1, 256
    assert config_differences(now, saved) == ["runtime.seed", "train.imgsz"]


def test_an_lr_chosen_by_the_lr_finder_is_not_a_difference():
    """The saved config holds the finder's LR; the planned one the YAML's (an experiment used to
    refuse to reuse such a finished run)."""
    saved = {"optim": {"lr": 3.1e-4, "lr_find": True}}
    assert config_differences({"optim": {"lr": 1e-3, "lr_find": True}}, saved) == []
    assert config_differences({"optim": {"lr": 1e-3, "lr_find": False}}, saved) == ["optim.lr", "optim.lr_find"]


def test_check_run_dir_new_resume_and_refusals(tmp_path):
    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.pt"
    assert check_run_dir(run, False, ckpt, ("config.yaml",)) is False  # new
    with pytest.raises(RunDirError, match="cannot resume"):
        check_run_dir(run, True, ckpt, ("config.yaml",))
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="exists and is not empty"):
        check_run_dir(run, False, ckpt, ("config.yaml",))
    with pytest.raises(RunDirError, match="is this a run folder"):
        check_run_dir(run, True, ckpt, ("config.yaml",))
    assert (run / "notes.txt").read_text() == "mine"  # nothing of the user's is touched
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert check_run_dir(run, True, ckpt, ("config.yaml",)) is True
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="existing file"):
        check_run_dir(tmp_path / "file", False, ckpt, ())


def test_a_restart_sets_aside_the_failed_attempt_but_keeps_the_cache(tmp_path):
    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.pt"
    (run / "cache").mkdir(parents=True)
    (run / "cache" / "abc.npy").write_bytes(b"decoded once")
    (run / "config.yaml").write_text("name: x\n")
    assert check_run_dir(run, True, ckpt, ("config.yaml", "cache"), keep=("cache",)) is False  # start again
    attempts = [p for p in run.iterdir() if p.name.startswith("attempt-")]
    assert len(attempts) == 1 and (attempts[0] / "config.yaml").is_file() and not (run / "config.yaml").exists()
    assert (run / "cache" / "abc.npy").read_bytes() == b"decoded once"
