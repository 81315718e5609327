"""Shared fixtures. Tests run offline: every tool that writes to $HOME or phones home is
pointed at a per-session temporary folder before it is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="kvasir-ml-tests-"))
# ultralytics writes settings.json and fetches Arial.ttf unless told where its config lives;
# wandb must never reach the network; matplotlib must not need a display.
os.environ.setdefault("YOLO_CONFIG_DIR", str(_SESSION_HOME / "ultralytics"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ["WANDB_MODE"] = os.environ.get("WANDB_MODE", "offline")
for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    os.environ.setdefault(var, str(_SESSION_HOME / "wandb"))
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TORCH_HOME", str(_SESSION_HOME / "torch"))
os.environ.pop("WANDB_API_KEY", None)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KVASIR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real Kvasir data); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set KVASIR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic Kvasir-like dataset (session-wide, read-only by convention)."""
    from kvasir_ml.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n=64, seed=0)
    return out


def pytest_collection_finish(session):
    """Start the Label Studio server now, in the background, if any test will need it."""
    import ls_boot

    ls_boot.start_if_needed(session)


def pytest_sessionfinish(session, exitstatus):
    import ls_boot

    ls_boot.stop_all()
