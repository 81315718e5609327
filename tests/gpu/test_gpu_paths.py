"""What only a GPU host can run (``-m gpu``; the GPU check's ``gpu_tests`` step runs this folder):
the production path of a ResNet config — head warm-up then unfreeze with inductor
torch.compile, bf16 autocast and channels_last on CUDA — and `kvasir-ml eval` reproducing a
CUDA run's test metrics. Skipped without CUDA."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from kvasir_ml.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from warmup_job import configure, record_epochs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _overrides(synth_dir: Path, tmp_path: Path) -> list[str]:
    return [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.image_size_px=64", "runtime.batch_size=16", "runtime.device=cuda", "runtime.amp=true",
            "runtime.channels_last=true", "tracking.mode=disabled"]


def test_warmup_then_unfreeze_compiled_with_inductor_on_cuda(synth_dir, tmp_path):
    epochs = record_epochs(configure(tmp_path, True, _overrides(synth_dir, tmp_path)), tmp_path)
    frozen, unfrozen = epochs
    assert frozen["backbone_all_still"] and frozen["head_moved"]
    assert unfrozen["backbone_moved"] and unfrozen["new_wrapper"]
    assert [e["wrapper"] for e in epochs] == ["OptimizedModule"] * 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and metrics["test"]["macro_ap"] is not None


def test_eval_reproduces_a_cuda_runs_test_metrics(synth_dir, tmp_path):
    run = tmp_path / "run"
    assert cli_main(["train", "classifier", "--config", str(ML_TINY), "--out", str(run),
                     *_overrides(synth_dir, tmp_path), "optim.epochs=1", "runtime.deterministic=true"]) == 0
    assert cli_main(["eval", str(run / "checkpoints" / "best.pt"), "--out", str(tmp_path / "eval"),
                     "--device", "cuda"]) == 0
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ev["test"] == json.loads((run / "metrics.json").read_text())["test"]
