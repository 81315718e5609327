"""Nothing executed: a booby-trapped model description (ultralytics model YAML), from a file or
inside a checkpoint, runs no code and creates nothing, wherever it is passed.

Traps: an ``activation`` that ``parse_model`` would ``eval()`` (it touches a marker file, then
returns ``nn.SiLU()`` so ultralytics would carry on), and a module name that ``parse_model``
would look up in its globals and call (``load_checkpoint`` on a pickle that touches a
marker). Positive controls build the same descriptions with ultralytics directly: the marker
IS created, so the traps are live and the checks are what stop them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import yaml

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import load_config, save_config
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.model_yaml import UnsafeModelDescriptionError, check_model_description
from kvasir_ml.detection.safe_load import load_detector_checkpoint
from kvasir_ml.detection.ultralytics_env import ensure_ultralytics
from kvasir_ml.detection.yolo import load_yolo

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "detector_tiny.yaml"


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch() or nn.SiLU()"


@pytest.fixture(scope="module")
def yolov8n() -> dict:
    """ultralytics' own yolov8n description (as ``yaml_model_load`` gives it)."""
    ensure_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load("yolov8n.yaml")


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    ensure_ultralytics()
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("genuine") / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(path)
    return path


def _trapped_yaml(tmp_path: Path, description: dict) -> Path:
    path = tmp_path / "trap.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in description.items() if k not in ("yaml_file", "scale")}))
    return path


def _trapped_checkpoint(genuine: Path, marker: Path, out: Path, resumable: bool = False) -> Path:
    ckpt = torch.load(genuine, map_location="cpu", weights_only=False)  # our own file: safe to open
    ckpt["model"].yaml["activation"] = _payload(marker)
    if resumable:  # what ultralytics' mid-training last.pt holds
        ckpt.update(optimizer={}, epoch=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def test_trapped_activation_in_a_model_yaml_file_runs_nothing_in_predict_or_training(yolov8n, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    path = _trapped_yaml(tmp_path, {**yolov8n, "activation": _payload(marker)})
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"")  # never read: the detector is refused first
    assert cli_main(["predict", "--detector", str(path), str(frame), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "trap.yaml" in err and "activation" in err and "Traceback" not in err
    out = tmp_path / "run"
    assert cli_main(["train", "detector", "--config", str(TINY), "--out", str(out), f"model.arch={path}",
                     "tracking.mode=disabled"]) == 2
    err = capsys.readouterr().err
    assert "trap.yaml is refused: activation" in err
    assert not marker.exists() and not out.exists()


def test_trapped_module_name_and_arguments_are_refused_by_field(yolov8n, tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"x": _Trap(marker)}, tmp_path / "trap.pt")
    module_trap = copy.deepcopy(yolov8n)
    module_trap["backbone"][0] = [-1, 1, "load_checkpoint", [repr(str(tmp_path / "trap.pt"))]]
    with pytest.raises(UnsafeModelDescriptionError, match=r"backbone\[0\]\[2\] \(module\): 'load_checkpoint'"):
        load_yolo(_trapped_yaml(tmp_path, module_trap))
    args_trap = copy.deepcopy(yolov8n)
    args_trap["head"][-1][3] = ["d"]  # parse_model's own variable: the whole description
    with pytest.raises(UnsafeModelDescriptionError, match=r"head\[\d+\]\[3\]\[0\] \(args\): 'd' names a variable"):
        check_model_description(args_trap, "x.yaml")
    for act in ("nn.SiLU()", "torch.nn.LeakyReLU(0.1)", "nn.ReLU(inplace=True)", None):
        check_model_description({**yolov8n, "activation": act}, "ok.yaml")  # the allow-list
    for act in ("nn.Module.__subclasses__()", "nn.SiLU(print)", "os.system('x')", "nn.Flatten()", ["nn.SiLU()"]):
        with pytest.raises(UnsafeModelDescriptionError, match="activation"):
            check_model_description({**yolov8n, "activation": act}, "bad.yaml")
    assert not marker.exists()


def test_positive_control_ultralytics_runs_the_yaml_traps(yolov8n, tmp_path):
    ensure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    marker = tmp_path / "PWNED"
    DetectionModel(copy.deepcopy({**yolov8n, "activation": _payload(marker)}), verbose=False)
    assert marker.exists()
    marker.unlink()
    torch.save({"x": _Trap(marker)}, tmp_path / "trap.pt")
    module_trap = copy.deepcopy(yolov8n)
    module_trap["backbone"][0] = [-1, 1, "load_checkpoint", [repr(str(tmp_path / "trap.pt"))]]
    with pytest.raises(Exception):  # the pickle runs, then ultralytics finds no model in it
        DetectionModel(module_trap, verbose=False)
    assert marker.exists()


def test_trapped_yaml_inside_a_checkpoint_is_refused_as_weights_and_in_predict(genuine, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    path = _trapped_checkpoint(genuine, marker, tmp_path / "trapped.pt")
    with pytest.raises(UnsafeModelDescriptionError, match=r"trapped.pt \(model.yaml\) is refused: activation"):
        load_detector_checkpoint(path)
    out = tmp_path / "run"
    assert cli_main(["train", "detector", "--config", str(TINY), "--out", str(out), f"model.weights={path}",
                     "tracking.mode=disabled"]) == 2
    assert "trapped.pt (model.yaml) is refused: activation" in capsys.readouterr().err
    assert cli_main(["predict", "--detector", str(path), str(tmp_path / "frame.png"), "--device", "cpu"]) == 2
    assert "activation" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
    # positive control: what ultralytics does with the weights' description when training from them
    ensure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    DetectionModel(torch.load(path, map_location="cpu", weights_only=False)["model"].yaml, verbose=False)
    assert marker.exists()


def _handed_over_run(tmp_path: Path, last: Path) -> Path:
    run = tmp_path / "handed-over"
    save_config(load_config(DetectorConfig, TINY, ["tracking.mode=disabled"]), run / "config.yaml")
    (run / "split.json").write_text("{}")
    assert last == run / "ultralytics" / "weights" / "last.pt"
    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_of_a_handed_over_run_with_a_trapped_last_pt_creates_nothing(genuine, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    run = tmp_path / "handed-over"
    last = _trapped_checkpoint(genuine, marker, run / "ultralytics" / "weights" / "last.pt", resumable=True)
    _handed_over_run(tmp_path, last)
    before = _files(run)
    argv = ["train", "detector", "--config", str(TINY), "--out", str(run), "--resume", "tracking.mode=disabled"]
    assert cli_main(argv) == 2
    assert "last.pt (model.yaml) is refused: activation" in capsys.readouterr().err
    assert not marker.exists() and _files(run) == before
    # a teacher model in its training arguments would be opened unrestricted by the resume
    ckpt = torch.load(genuine, map_location="cpu", weights_only=False)
    ckpt.update(optimizer={}, epoch=0, train_args={"distill_model": str(tmp_path / "teacher.pt")})
    torch.save(ckpt, last)
    before = _files(run)
    assert cli_main(argv) == 2
    assert "train_args.distill_model" in capsys.readouterr().err and _files(run) == before


class _Trap:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
