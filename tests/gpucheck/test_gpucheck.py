"""The GPU check's machinery on the CPU: step isolation, time limits, the device helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kvasir_ml.gpucheck as gpucheck
from kvasir_ml.gpucheck import Phase, _run_phase, run_check
from kvasir_ml.gpucheck.offline_host import check_wheels, resize_kvasir_seg

REPO = Path(__file__).resolve().parents[2]


def test_a_failing_step_keeps_the_other_steps_results(tmp_path, monkeypatch):
    bad = tmp_path / "bad-kvasir-seg"
    (bad / "images").mkdir(parents=True)
    (bad / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (bad / "kavsir_bboxes.json").write_text("{not json")
    dry = gpucheck.plan(True, None, 2)
    env = next(p for p in dry if p.step == "env")
    det = next(p for p in dry if p.step == "detector")
    det.params["kvasir_seg"] = str(bad)
    monkeypatch.setattr(gpucheck, "plan", lambda *a: [env, det])
    results = run_check(tmp_path / "out", budget_s=120, dry_run=True, work=tmp_path / "work")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["steps"]["env"]["ok"] is True and saved["steps"]["env"]["torch"]
    assert saved["steps"]["detector"]["ok"] is False
    assert saved["steps"]["detector"]["phases"]["detector"]["rc"] != 0
    assert any("kavsir_bboxes.json" in line for line in saved["steps"]["detector"]["log_tail"])
    assert results["summary"]["ok"] == {"env": True, "detector": False}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["detector.log", "env.log", "results.json"]


def test_a_step_is_killed_at_its_time_limit(tmp_path):
    clf = next(p for p in gpucheck.plan(True, None, 2) if p.step == "classifier")
    endless = Phase("classifier", {**clf.params, "epochs": 10_000, "stop_after": 9_999}, 0.1, 1)
    run = _run_phase(endless, tmp_path, tmp_path / "classifier.log", limit_s=3)
    assert run["timed_out"] and run["rc"] != 0
    assert "killed at the time limit" in (tmp_path / "classifier.log").read_text()


def test_resize_scales_boxes_with_the_images_and_refuses_a_mismatch(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((300, 1024, 3), np.uint8)).save(src / "images" / "a.jpg")
    Image.fromarray(np.zeros((200, 100, 3), np.uint8)).save(src / "images" / "b.jpg")
    boxes = {"a": {"width": 1024, "height": 300, "bbox": [{"label": "polyp", "xmin": 512, "ymin": 30, "xmax": 1024, "ymax": 300}]},
             "b": {"width": 100, "height": 200, "bbox": [{"label": "polyp", "xmin": 10, "ymin": 20, "xmax": 30, "ymax": 40}]}}
    (src / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    info = resize_kvasir_seg(src, tmp_path / "dst", long_side_px=512)
    assert info["n_images"] == 2 and info["n_boxes"] == 2
    out = json.loads((tmp_path / "dst" / "kavsir_bboxes.json").read_text())
    with Image.open(tmp_path / "dst" / "images" / "a.jpg") as img:
        assert img.size == (512, 150) == (out["a"]["width"], out["a"]["height"])
    assert out["a"]["bbox"][0] == pytest.approx({"label": "polyp", "xmin": 256, "ymin": 15, "xmax": 512, "ymax": 150})
    assert out["b"]["bbox"] == boxes["b"]["bbox"] and out["b"]["width"] == 100  # small images stay as they are
    boxes["b"]["width"] = 101
    (src / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    with pytest.raises(ValueError, match="b says 101x200"):
        resize_kvasir_seg(src, tmp_path / "dst2")


def _wheel(folder: Path, name: str, requires: list[str]) -> None:
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}-1.0.dist-info/METADATA", "\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0", *[f"Requires-Dist: {r}" for r in requires]]))


def test_check_wheels_finds_what_neither_the_wheels_nor_the_host_provide(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "alpha", ["beta>=1", "numpy", "pywin32; sys_platform == 'win32'", "extra-thing; extra == 'dev'",
                             "thop"])
    _wheel(wheels, "beta", [])
    (tmp_path / "host.txt").write_text("numpy  # preinstalled\n")
    (tmp_path / "skip.txt").write_text("# nothing\n")
    unmet = check_wheels(wheels, tmp_path / "host.txt", tmp_path / "skip.txt")
    assert len(unmet) == 1 and "needs thop" in unmet[0]
    (tmp_path / "skip.txt").write_text("thop  # optional\n")
    assert check_wheels(wheels, tmp_path / "host.txt", tmp_path / "skip.txt") == []


@pytest.mark.slow
def test_run_sh_dry_run_runs_every_step_with_only_the_hosts_imports(tmp_path):
    """`OUT=DIR bash scripts/device/run.sh --dry-run`: with a prepared .device/ (prepare.sh) it
    installs what this Python lacks and limits imports to the host's packages; without one it
    runs the steps as they are."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "device" / "run.sh"), "--dry-run", "--budget-s", "600"],
                          env=env, capture_output=True, text=True, timeout=900)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {name: step["ok"] for name, step in results["steps"].items()} == \
        {"env": True, "bench_train": True, "classifier": True, "detector": True, "video": True, "gpu_tests": True}
    assert results["steps"]["classifier"]["resume"]["epochs"] == [1, 2]
    assert results["steps"]["bench_train"]["eager"]["flops_per_image"] > 0


def test_gpu_tests_step_runs_the_gpu_marked_tests_and_names_failures(tmp_path):
    tests = tmp_path / "checkout" / "tests"
    tests.mkdir(parents=True)
    (tmp_path / "checkout" / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["gpu: needs a CUDA device"]\naddopts = "-m \'not gpu\'"\n')
    (tests / "test_x.py").write_text("import pytest\n\n"
                                     "@pytest.mark.gpu\ndef test_ok():\n    assert True\n\n"
                                     "@pytest.mark.gpu\ndef test_broken():\n    assert 1 == 2\n\n"
                                     "def test_not_gpu():\n    raise AssertionError('not selected')\n")
    results = run_check(tmp_path / "out", budget_s=120, dry_run=True, work=tmp_path / "work", only=["gpu_tests"],
                        tests=tests)
    step = results["steps"]["gpu_tests"]
    assert (step["passed"], step["failed"], step["skipped"]) == (1, 1, 0) and step["ok"] is False
    assert step["failures"] == ["tests.test_x::test_broken"]
    assert results["summary"]["gpu_tests"]["failures"] == ["tests.test_x::test_broken"]
    missing = run_check(tmp_path / "out2", budget_s=60, dry_run=True, work=tmp_path / "work2", only=["gpu_tests"])
    assert missing["steps"]["gpu_tests"]["ok"] is False and "no tests" in missing["steps"]["gpu_tests"]["error"]
