"""WANDB_MODE in the environment is honoured: it can make a run more private, never less."""

from __future__ import annotations

import logging

import pytest

from kvasir_ml.config import TrackingConfig
from kvasir_ml.tracking import NullTracker, effective_mode, make_tracker


@pytest.mark.parametrize("config_mode, env, expected", [
    ("offline", "disabled", "disabled"), ("online", "offline", "offline"), ("online", "dryrun", "offline"),
    ("online", "disabled", "disabled"), ("offline", "online", "offline"), ("disabled", "online", "disabled"),
    ("offline", "", "offline"), ("online", "run", "online"), ("offline", " Offline ", "offline"),
])
def test_precedence_the_more_private_mode_wins(config_mode, env, expected):
    assert effective_mode(config_mode, {"WANDB_MODE": env}) == expected


def test_wandb_mode_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = make_tracker(TrackingConfig(mode="offline"), tmp_path / "run", "r", "train", {})
    assert isinstance(tracker, NullTracker) and not (tmp_path / "run").exists()


def test_wandb_mode_offline_keeps_an_online_config_local(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = make_tracker(TrackingConfig(mode="online"), tmp_path / "run", "r", "train", {"a": 1})
    try:
        assert tracker.mode == "offline" and list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    finally:
        tracker.finish()


def test_wandb_mode_online_cannot_upload_an_offline_run_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "online")
    with caplog.at_level(logging.WARNING, logger="kvasir_ml.tracking"):
        tracker = make_tracker(TrackingConfig(mode="offline"), tmp_path / "run", "r", "train", {})
    try:
        assert tracker.mode == "offline"
    finally:
        tracker.finish()
    assert "WANDB_MODE=online ignored" in caplog.text and "tracking.mode=online" in caplog.text


def test_unknown_wandb_mode_is_named():
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes' in the environment is not a W&B mode"):
        effective_mode("offline", {"WANDB_MODE": "sometimes"})
