"""Warm-up then unfreeze, recorded per epoch; run in-process by test_warmup.py and under
``torchrun --nproc_per_node 2`` (gloo) by its DDP test (not collected by pytest itself).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/train/warmup_job.py OUT compile [key=value ...]

``compile`` = 1 turns on ``runtime.compile`` with torch.compile's ``aot_eager`` backend on CPU
(inductor would need minutes of C++ compilation). Each rank writes ``OUT/epochs.rank<r>.json``:
per epoch, whether the backbone and the head changed, the wrapper type and whether it is a
new wrapper object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from kvasir_ml.train import run as run_mod
from kvasir_ml.train.config import load_classifier_config

REPO = Path(__file__).resolve().parents[2]


def record_epochs(cfg, out: Path) -> list[dict]:
    """Train ``cfg`` into ``out/run``; per epoch: which parameter groups moved and the wrapper used."""
    epochs: list[dict] = []
    nets: list[object] = []
    run_epoch = run_mod._Trainer.run_epoch

    def spy(self, epoch, net):
        before = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        entry = run_epoch(self, epoch, net)
        moved = {k: not torch.equal(before[k], v.detach()) for k, v in self.model.named_parameters()}
        backbone = {f"backbone.{k}" for k, _ in self.model.backbone.named_parameters()}
        epochs.append({"epoch": epoch, "rank": self.rank, "world": self.world, "wrapper": type(net).__name__,
                       "new_wrapper": all(net is not n for n in nets),
                       "backbone_moved": any(moved[k] for k in backbone),
                       "backbone_all_still": not any(moved[k] for k in backbone),
                       "head_moved": any(m for k, m in moved.items() if k not in backbone)})
        nets.append(net)
        return entry

    run_mod._Trainer.run_epoch = spy
    try:
        run_mod.train_classifier(cfg, out / "run")
    finally:
        run_mod._Trainer.run_epoch = run_epoch
    return epochs


def configure(out: Path, compile_: bool, overrides: list[str]):
    if compile_:
        run_mod.COMPILE_DEVICES, run_mod.COMPILE_BACKEND = ("cuda", "cpu"), "aot_eager"
    extra = ["optim.warmup_epochs=1", "optim.epochs=2", f"runtime.compile={str(compile_).lower()}"]
    return load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", [*overrides, *extra])


def main() -> None:
    out, compile_, overrides = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
    torch.set_num_threads(1)
    epochs = record_epochs(configure(out, compile_, overrides), out)
    (out / f"epochs.rank{epochs[0]['rank']}.json").write_text(json.dumps(epochs))


if __name__ == "__main__":
    main()
