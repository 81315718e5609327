"""Model construction, weights loading and losses (no training)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kvasir_ml.models.classifier import WeightsUnavailableError, build_model, preprocessing
from kvasir_ml.models.config import LossConfig, ModelConfig
from kvasir_ml.models.losses import AsymmetricLoss, build_loss, pos_weight_from_labels


def _batch(n: int = 2, size: int = 64, branch: int = 24) -> dict[str, torch.Tensor]:
    return {"image": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8),
            "inset": torch.randint(0, 256, (n, 3, branch, branch), dtype=torch.uint8),
            "inset_state": torch.eye(3)[:n]}


@pytest.mark.parametrize("mode", ["raw", "masked", "branch"])
def test_output_shape_per_inset_mode(mode):
    model = build_model(ModelConfig(arch="resnet18", inset_mode=mode, branch_features=16), n_outputs=5).eval()
    batch = _batch()
    inputs = batch if mode == "branch" else {"image": batch["image"]}
    assert model(**inputs).shape == (2, 5)
    assert hasattr(model, "branch") == (mode == "branch")


def test_branch_model_needs_the_inset():
    model = build_model(ModelConfig(arch="resnet18", inset_mode="branch", branch_features=16), n_outputs=3)
    with pytest.raises(ValueError, match="inset"):
        model(image=_batch()["image"])


def test_preprocessing_comes_from_the_weights_transforms():
    pre = preprocessing("resnet50")
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406])
    model = build_model(ModelConfig(arch="resnet18", inset_mode="raw"), n_outputs=2)
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    expected = (1.0 - torch.tensor(pre["mean"])) / torch.tensor(pre["std"])
    assert model.normalize(white)[0, :, 0, 0] == pytest.approx(expected.tolist(), rel=1e-5)


def test_imagenet_weights_missing_offline_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"resnet18-f37072fd\.pth.*hub/checkpoints"):
        build_model(ModelConfig(arch="resnet18", weights="imagenet", download_weights=False), n_outputs=2)


def test_local_checkpoint_weights_load_the_backbone(tmp_path):
    src = build_model(ModelConfig(arch="resnet18", inset_mode="raw"), n_outputs=4)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": src.state_dict()}, path)
    dst = build_model(ModelConfig(arch="resnet18", inset_mode="branch", weights=str(path)), n_outputs=7)
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    with pytest.raises(ValueError, match="neither"):
        build_model(ModelConfig(arch="resnet18", weights=str(tmp_path / "absent.pt")), n_outputs=2)


def test_a_matching_kvasir_checkpoint_starts_the_whole_model(tmp_path):
    """Fine-tuning (the annotation loop) keeps head and inset branch when the outputs match."""
    cfg = ModelConfig(arch="resnet18", inset_mode="branch", branch_features=16)
    src = build_model(cfg, n_outputs=3)
    torch.nn.init.normal_(src.head.weight)
    path = tmp_path / "best.pt"
    torch.save({"model": src.state_dict(), "config": {"model": cfg.model_dump()},
                "label_names": ["polyp", "dyed", "z-line"]}, path)
    warm = cfg.model_copy(update={"weights": str(path)})
    same = build_model(warm, 3, ["polyp", "dyed", "z-line"])
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), src.state_dict().values()))
    other = build_model(warm, 3, ["polyp", "z-line", "dyed"])  # another order: a new head
    assert torch.equal(other.backbone.conv1.weight, src.backbone.conv1.weight)
    assert not torch.equal(other.head.weight, src.head.weight)


def test_freezing_the_backbone_leaves_the_head_trainable():
    model = build_model(ModelConfig(arch="resnet18", inset_mode="branch", branch_features=16), n_outputs=3)
    model.set_backbone_frozen(True)
    assert not any(p.requires_grad for p in model.backbone_parameters())
    assert all(p.requires_grad for p in model.head_parameters())
    n_total = sum(1 for _ in model.parameters())
    assert len(model.backbone_parameters()) + len(model.head_parameters()) == n_total


def test_asl_without_focusing_is_bce():
    logits, targets = torch.randn(8, 5), torch.randint(0, 2, (8, 5)).float()
    asl = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    assert asl(logits, targets).item() == pytest.approx(nn.functional.binary_cross_entropy_with_logits(logits, targets).item(), rel=1e-5)
    # focusing down-weights easy negatives: the loss of confident negatives shrinks
    easy_neg = torch.full((4, 3), -4.0)
    assert AsymmetricLoss()(easy_neg, torch.zeros(4, 3)) < nn.functional.binary_cross_entropy_with_logits(easy_neg, torch.zeros(4, 3))


def test_pos_weight_and_loss_selection():
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]).numpy()
    w = pos_weight_from_labels(y, max_weight=5.0)
    assert w.tolist() == pytest.approx([1.0, 3.0, 5.0])  # 1/3 clipped up to 1; absent label -> max
    asl = build_loss(LossConfig(name="asl", asl_gamma_neg=2.0, asl_clip=0.1), "multilabel")
    logits, targets = torch.randn(6, 3), torch.randint(0, 2, (6, 3)).float()
    assert isinstance(asl, AsymmetricLoss)  # and built from the config's values, not the class defaults:
    assert asl(logits, targets).item() == pytest.approx(AsymmetricLoss(2.0, 0.0, 0.1)(logits, targets).item())
    assert asl(logits, targets).item() != pytest.approx(AsymmetricLoss()(logits, targets).item())
    bce = build_loss(LossConfig(pos_weight=True, pos_weight_max=5.0), "multilabel", y)
    assert bce.pos_weight.tolist() == pytest.approx([1.0, 3.0, 5.0])
    ce = build_loss(LossConfig(label_smoothing=0.1), "singlelabel")
    logits = torch.randn(3, 8)
    assert torch.isfinite(ce(logits, torch.tensor([0, -1, 7])))  # -1 = no class: ignored
