"""Nothing executed: a booby-trapped detector checkpoint runs no code, wherever it is passed.

The trap is a pickle whose ``__reduce__`` calls ``os.system("touch <marker>")``. Each test
asserts the marker was NOT created; the positive control shows that it IS created when the
check is skipped, so the trap really fires when opened the way ultralytics opens files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.detection.safe_load import UnsafeCheckpointError, load_detector_checkpoint
from kvasir_ml.detection.ultralytics_env import ensure_ultralytics
from kvasir_ml.detection.yolo import load_yolo

REPO = Path(__file__).resolve().parents[2]


class _Trap:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ConstructorCall:
    """Names an allowed layer class but calls it with arguments chosen by the file."""

    def __reduce__(self):
        return (torch.nn.Conv2d, (3, 8, 3))


@pytest.fixture
def trap(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "detector.pt"
    torch.save({"model": _Trap(marker), "train_args": {}}, path)
    return path, marker


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    """An ultralytics checkpoint as ultralytics writes it (untrained yolov8n, no download)."""
    ensure_ultralytics()
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("genuine") / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(path)
    return path


def test_booby_trapped_checkpoint_is_refused_by_every_loader(trap):
    path, marker = trap
    for load in (load_detector_checkpoint, load_yolo):
        with pytest.raises(UnsafeCheckpointError, match=r"detector.pt is refused: loading it would use posix.system"):
            load(path)
    assert not marker.exists()


def test_positive_control_the_trap_fires_when_the_check_is_skipped(trap):
    path, marker = trap
    with pytest.raises(Exception):  # ultralytics runs the pickle, then finds no model in it
        load_yolo(path, trust=True)
    assert marker.exists()


def test_predict_with_a_trapped_detector_exits_cleanly_without_running_it(trap, tmp_path, capsys):
    path, marker = trap
    image = tmp_path / "frame.png"
    Image.fromarray(np.full((32, 40, 3), 120, np.uint8)).save(image)
    rc = cli_main(["predict", "--detector", str(path), str(image), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "is refused" in err and "--trust-checkpoint" in err and "Traceback" not in err
    assert not marker.exists()


def test_label_studio_pre_annotation_with_a_trapped_detector_runs_nothing(trap, tmp_path):
    """``ls push --detector`` goes through predictions_from_checkpoints -> predict_images -> load_yolo."""
    from kvasir_ml.data.coco import CanonicalDataset
    from kvasir_ml.labelstudio.sync import predictions_from_checkpoints

    path, marker = trap
    Image.fromarray(np.full((32, 40, 3), 120, np.uint8)).save(tmp_path / "frame.png")
    ds = CanonicalDataset.new("t")
    ds.add_image("frame.png", 40, 32, [], "t", None)
    with pytest.raises(UnsafeCheckpointError, match="is refused"):
        predictions_from_checkpoints(ds, tmp_path, detector_ckpt=path, device="cpu")
    assert not marker.exists()


def test_training_from_trapped_weights_fails_before_any_work(trap, tmp_path, capsys):
    path, marker = trap
    out = tmp_path / "run"
    rc = cli_main(["train", "detector", "--config", str(REPO / "configs" / "detector_tiny.yaml"), "--out", str(out),
                   f"model.weights={path}", "tracking.mode=disabled"])
    assert rc == 2 and "is refused" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_constructor_calls_from_the_file_are_refused(tmp_path):
    path = tmp_path / "ctor.pt"
    torch.save({"model": _ConstructorCall()}, path)
    with pytest.raises(UnsafeCheckpointError, match="constructor calls are not allowed"):
        load_detector_checkpoint(path)


def test_non_checkpoints_are_refused_with_the_file_named(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UnsafeCheckpointError, match="junk.pt is refused"):
        load_detector_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(UnsafeCheckpointError, match="not an ultralytics checkpoint"):
        load_detector_checkpoint(plain)


def test_genuine_checkpoint_loads_identically_to_ultralytics_own_load(genuine):
    registered = {str(g) for g in torch.serialization.get_safe_globals()}
    safe = load_detector_checkpoint(genuine)
    # The allow-list was scoped to the load: none of its entries stays registered (torch itself
    # may register globals of its own lazily, so compare what was added, not the whole list).
    added = {str(g) for g in torch.serialization.get_safe_globals()} - registered
    assert not [g for g in added if "ultralytics" in g or "Safe" in g or "torch.nn.modules" in g], added
    unsafe = torch.load(genuine, map_location="cpu", weights_only=False)  # our own file: the reference
    a, b = safe["model"].state_dict(), unsafe["model"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(safe["model"].float().eval()(x)[0], unsafe["model"].float().eval()(x)[0])
    assert type(load_yolo(genuine).model).__name__ == "DetectionModel"
