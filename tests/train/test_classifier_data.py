"""Config validation, inset masking/cropping and the Dataset (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kvasir_ml.config import ConfigError
from kvasir_ml.data.inset import hiding_box_xywh_px, nominal_inset_box_xywh_px
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.config import AugConfig, load_classifier_config
from kvasir_ml.train.data import build_augmentation, class_index, inset_inputs, scaled_inset_box

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="optim.epoch"):
        load_classifier_config(CONFIGS / "classifier_multilabel_tiny.yaml", ["optim.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch: resnet18\n  colour: blue\n")
    with pytest.raises(ConfigError, match="model.colour"):
        load_classifier_config(bad)
    with pytest.raises(ConfigError, match="fractions"):
        load_classifier_config(None, ["data.fractions=[0.5,0.5,0.5]"])


@pytest.mark.parametrize("name", ["multilabel_resnet50", "multilabel_resnet50_masked", "multilabel_resnet50_raw",
                                  "singlelabel_resnet50", "multilabel_tiny", "singlelabel_tiny"])
def test_shipped_configs_load(name):
    cfg = load_classifier_config(CONFIGS / f"classifier_{name}.yaml")
    assert cfg.model.task == ("singlelabel" if name.startswith("single") else "multilabel")


def test_inset_is_scaled_to_cache_resolution_and_masked_on_every_image():
    rgb = np.full((64, 64, 3), 200, dtype=np.uint8)
    size = (640, 480)  # original frame
    box = (0.0, 320.0, 200.0, 160.0)  # bottom-left, original px
    # the hidden region (nominal ∪ detected, plus a margin) scaled to the 64 px cache image
    hx, hy, hw, hh = hiding_box_xywh_px(*size, box)
    assert scaled_inset_box(size, box, (64, 64)) == pytest.approx((hx / 10, hy * 64 / 480, hw / 10, hh * 64 / 480))
    assert hx == 0.0 and hy <= 320.0 and hx + hw >= 200.0 and hy + hh == 480.0  # covers the panel
    out = inset_inputs(rgb, size, "green", box, "branch", 16)
    img = out["image"]
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    assert int(img[:, 50, 5].sum()) == 0 and int(img[:, 5, 50].sum()) == 600
    assert out["inset"].shape == (3, 16, 16) and int(out["inset"].min()) == 200  # cropped before masking
    assert out["inset_state"].tolist() == [1.0, 0.0, 0.0]
    # No detected box: the nominal region is masked anyway, so the mask carries no signal.
    none = inset_inputs(rgb, size, "none", None, "masked", 16)["image"]
    x, y, w, h = scaled_inset_box(size, nominal_inset_box_xywh_px(*size), (64, 64))
    assert int(none[:, int(y + h / 2), int(x + w / 2)].sum()) == 0
    assert set(inset_inputs(rgb, size, "none", None, "raw", 16)) == {"image"}
    assert int(inset_inputs(rgb, size, "green", box, "raw", 16)["image"].min()) == 200


def test_augmentation_keeps_dtype_and_shape():
    aug = build_augmentation(AugConfig())
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    y = aug(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert build_augmentation(AugConfig(enabled=False)) is None


def test_class_index_maps_sources_onto_kvasir_v2_classes():
    tax = load_taxonomy()
    classes = tax.source("kvasir-v2").classes
    assert class_index({"source": "synthetic", "source_class": "polyps"}, "kvasir-v2", tax) == classes.index("polyps")
    assert class_index({"source": "hyperkvasir", "source_class": "cecum"}, "kvasir-v2", tax) == classes.index("normal-cecum")
    assert class_index({"source": "hyperkvasir", "source_class": "ileum"}, "kvasir-v2", tax) == -1
    assert class_index({"source": "kvasir-v2", "source_class": None}, "kvasir-v2", tax) == -1
