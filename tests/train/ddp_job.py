"""Run under ``torchrun --nproc_per_node 2`` by test_ddp.py (not collected by pytest itself).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/train/ddp_job.py OUT [--full-only] [key=value ...]

A 2-epoch run into OUT/full, the same run stopped after epoch 1 into OUT/killed, then
resumed (in the same processes: one launch keeps the test short; the resume restores
everything from last.pt, as a new process would). ``--full-only``: only the run into OUT/full. Every rank writes what it trained with
(``OUT/<run>.rank<r>.json``: the LRs it built optimizers with and a checksum of its weights).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from kvasir_ml.train import run as run_mod
from kvasir_ml.train.config import ClassifierConfig, load_classifier_config

REPO = Path(__file__).resolve().parents[2]


def train(cfg: ClassifierConfig, out: Path, record: Path, **kwargs) -> None:
    seen: dict = {"lrs": []}
    make_optimizer, train_epochs = run_mod.make_optimizer, run_mod._Trainer.train

    def spy_optimizer(model, lr, *args):
        seen["lrs"].append(lr)
        return make_optimizer(model, lr, *args)

    def spy_train(self, *args, **kw):
        done = train_epochs(self, *args, **kw)
        seen.update(rank=self.rank, world=self.world,
                    # parameters only: BatchNorm running statistics are each rank's own under DDP
                    checksum=float(sum(p.detach().double().sum() for p in self.model.parameters())))
        return done

    run_mod.make_optimizer, run_mod._Trainer.train = spy_optimizer, spy_train
    try:
        run_mod.train_classifier(cfg, out, **kwargs)
    finally:
        run_mod.make_optimizer, run_mod._Trainer.train = make_optimizer, train_epochs
    (record.parent / f"{record.name}.rank{seen['rank']}.json").write_text(json.dumps(seen))


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    full_only = "--full-only" in overrides
    overrides = [o for o in overrides if o != "--full-only"]
    torch.set_num_threads(1)
    cfg = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", overrides)
    train(cfg, out / "full", out / "full")
    if full_only:
        return
    train(cfg, out / "killed", out / "killed", stop_after_epoch=1)
    train(cfg, out / "killed", out / "resumed", resume=True)


if __name__ == "__main__":
    main()
