"""The loop functions on random tensors: train_one_epoch, evaluate, lr_find, checkpoints."""

from __future__ import annotations

import pytest
import torch

from kvasir_ml.models.classifier import build_model
from kvasir_ml.models.config import LossConfig, ModelConfig
from kvasir_ml.models.losses import build_loss
from kvasir_ml.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kvasir_ml.train.loop import evaluate, lr_find, train_one_epoch
from kvasir_ml.train.run import make_optimizer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a busy 2-core machine: one thread avoids thread-sync thrashing (5-10x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _loader(n_batches: int = 3, batch: int = 4, size: int = 32, n_labels: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8),
             "labels": torch.randint(0, 2, (batch, n_labels), generator=g).float(),
             "class": torch.randint(0, n_labels, (batch,), generator=g)} for _ in range(n_batches)]


def test_train_one_epoch_and_evaluate():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", inset_mode="raw"), n_outputs=3)
    loss_fn = build_loss(LossConfig(), "multilabel")
    optimizer = make_optimizer(model, 1e-3, 0.1, 0.0)
    loader = _loader()
    stats = train_one_epoch(model, loader, loss_fn, optimizer, None, CPU, "multilabel", progress=False)
    assert stats["n_images"] == 12 and stats["train_loss"] > 0 and stats["img_s"] > 0
    assert stats["data_time_s"] >= 0 and stats["step_time_s"] > 0
    out = evaluate(model, loader, CPU, "multilabel", loss_fn)
    assert out["outputs"].shape == (12, 3) and ((out["outputs"] >= 0) & (out["outputs"] <= 1)).all()
    single = evaluate(model, loader, CPU, "singlelabel")
    assert single["outputs"].sum(axis=1) == pytest.approx([1.0] * 12)


def test_lr_find_leaves_the_model_untouched():
    model = build_model(ModelConfig(arch="resnet18", inset_mode="raw"), n_outputs=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lr_find(model, _loader(), build_loss(LossConfig(), "multilabel"),
                     lambda m, lr: make_optimizer(m, lr, 1.0, 0.0), CPU, "multilabel", n_steps=6)
    assert 1 <= len(result["lrs"]) <= 6 and result["lrs"] == sorted(result["lrs"])
    assert result["suggested_lr"] > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    torch.manual_seed(3)
    state = {"model": {"w": torch.ones(2)}, "config": {"a": 1}, "label_names": ["x"], "class_names": ["c"],
             "thresholds": [0.5], "rng": rng_state(), "history": [{"epoch": 1, "val_macro_ap": None}]}
    expected = torch.rand(3)
    path = save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(path)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected)
    assert loaded["history"][0]["val_macro_ap"] is None and loaded["format"] == 1
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a kvasir_ml classifier checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
