"""Head warm-up then unfreeze (every ResNet50 config does it), with torch.compile and under
2-process gloo DDP, where the model is re-wrapped when the frozen set changes; and the cosine
and constant LR schedules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kvasir_ml.train import run as run_mod
from kvasir_ml.train.config import load_classifier_config

sys.path.insert(0, str(Path(__file__).parent))
from warmup_job import configure, record_epochs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("warmup_job.py")
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"


def _overrides(synth_dir: Path, tmp_path: Path) -> list[str]:
    return [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.image_size_px=32", "model.inset_mode=masked", "runtime.batch_size=8", "tracking.mode=disabled"]


def _check_warmup(epochs: list[dict]) -> None:
    frozen, unfrozen = epochs
    assert frozen["backbone_all_still"] and frozen["head_moved"]  # warm-up: only the head trains
    assert unfrozen["backbone_moved"] and unfrozen["head_moved"]  # then everything trains


@pytest.fixture(autouse=True)
def _restore_compile_settings():
    saved = run_mod.COMPILE_DEVICES, run_mod.COMPILE_BACKEND
    yield
    run_mod.COMPILE_DEVICES, run_mod.COMPILE_BACKEND = saved


def test_warmup_freezes_the_backbone_then_unfreezes_it(synth_dir, tmp_path):
    epochs = record_epochs(configure(tmp_path, False, _overrides(synth_dir, tmp_path)), tmp_path)
    _check_warmup(epochs)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] >= 1


@pytest.mark.slow  # ~40 s on 2 busy cores: dynamo + AOTAutograd trace the model twice
def test_warmup_unfreezes_a_compiled_model(synth_dir, tmp_path):
    """torch.compile (aot_eager on CPU): a new compiled wrapper after unfreezing, whose graph
    gives the backbone gradients."""
    epochs = record_epochs(configure(tmp_path, True, _overrides(synth_dir, tmp_path)), tmp_path)
    _check_warmup(epochs)
    assert [e["wrapper"] for e in epochs] == ["OptimizedModule", "OptimizedModule"]
    assert epochs[1]["new_wrapper"]


@pytest.mark.slow
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_warmup_unfreezes_under_ddp(synth_dir, tmp_path, compile_):
    """2 processes, gloo: DistributedDataParallel is rebuilt when the frozen set changes (a
    DDP built while the backbone was frozen would never all-reduce its gradients)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(JOB),
           str(tmp_path), "1" if compile_ else "0", *_overrides(synth_dir, tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for rank in (0, 1):
        epochs = json.loads((tmp_path / f"epochs.rank{rank}.json").read_text())
        _check_warmup(epochs)
        assert all(e["world"] == 2 for e in epochs) and epochs[1]["new_wrapper"]
        assert [e["wrapper"] for e in epochs] == ["OptimizedModule" if compile_ else "DistributedDataParallel"] * 2


def _lrs(cfg, steps_per_epoch: int) -> list[float]:
    model = torch.nn.Linear(2, 2)
    model.head_parameters = lambda: [model.weight]  # make_optimizer's two groups
    model.backbone_parameters = lambda: [model.bias]
    opt = run_mod.make_optimizer(model, cfg.optim.lr, cfg.optim.backbone_lr_factor, cfg.optim.weight_decay)
    sched = run_mod.make_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.optim.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return lrs


def test_cosine_schedule_anneals_from_lr_to_zero_over_the_run():
    cfg = load_classifier_config(ML_TINY, ["optim.schedule=cosine", "optim.epochs=4", "optim.lr=0.01"])
    lrs = _lrs(cfg, steps_per_epoch=5)
    total = len(lrs)
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[total // 2] == pytest.approx(0.005, rel=1e-6)  # cos(pi/2): half way
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.01 * 0.01
    import math
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(0.005 * (1 + math.cos(math.pi * t / total)), rel=1e-6, abs=1e-12)


def test_constant_schedule_keeps_each_groups_lr():
    cfg = load_classifier_config(ML_TINY, ["optim.schedule=constant", "optim.epochs=3", "optim.lr=0.02",
                                           "optim.backbone_lr_factor=0.1"])
    assert _lrs(cfg, steps_per_epoch=4) == [0.02] * 12
    model = torch.nn.Linear(2, 2)
    model.head_parameters, model.backbone_parameters = (lambda: [model.weight]), (lambda: [model.bias])
    opt = run_mod.make_optimizer(model, 0.02, 0.1, 0.0)
    assert run_mod.make_scheduler(opt, cfg, 4) is None
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 0.002])
