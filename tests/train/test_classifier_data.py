"""Config validation, inset masking/cropping and the Dataset (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kvasir_ml.config import ConfigError
from kvasir_ml.data.inset import hiding_box_xywh_px
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.config import AugConfig, load_classifier_config
from kvasir_ml.train.augment import BatchAugment, build_batch_augment
from kvasir_ml.train.data import class_index, inset_inputs, scaled_inset_box

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
    # the hidden region (the nominal region plus a margin: frame size only) scaled to the 64 px cache image
    hx, hy, hw, hh = hiding_box_xywh_px(*size)
    assert scaled_inset_box(size, (64, 64)) == pytest.approx((hx / 10, hy * 64 / 480, hw / 10, hh * 64 / 480))
    assert hx == 0.0 and hy <= 320.0 and hx + hw >= 200.0 and hy + hh == 480.0  # covers the panel
    out = inset_inputs(rgb, size, "green", "branch", 16)
    img = out["image"]
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    assert int(img[:, 50, 5].sum()) == 0 and int(img[:, 5, 50].sum()) == 600
    assert out["inset"].shape == (3, 16, 16) and int(out["inset"].min()) == 200  # cropped before masking
    assert out["inset_state"].tolist() == [1.0, 0.0, 0.0]
    # Every state hides the same region, so the mask carries no signal.
    none = inset_inputs(rgb, size, "none", "masked", 16)["image"]
    assert torch.equal(none, inset_inputs(rgb, size, "black", "masked", 16)["image"])
    x, y, w, h = scaled_inset_box(size, (64, 64))
    assert int(none[:, int(y + h / 2), int(x + w / 2)].sum()) == 0
    assert set(inset_inputs(rgb, size, "none", "raw", 16)) == {"image"}
    assert int(inset_inputs(rgb, size, "green", "raw", 16)["image"].min()) == 200


def test_batch_augment_is_per_image_seeded_and_keeps_shape():
    aug = build_batch_augment(AugConfig())
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    y = aug(x)
    assert y.dtype == torch.float32 and y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 255
    # per image, not one draw for the batch: identical inputs come out different
    same = aug(x[:1].expand(4, -1, -1, -1).contiguous())
    assert not torch.equal(same[0], same[1])
    # the generator alone decides the draws: reseeding it (as every epoch does) replays them exactly
    aug.generator.manual_seed(3)
    first = aug(x)
    aug.generator.manual_seed(3)
    assert torch.equal(aug(x), first)
    assert build_batch_augment(AugConfig(enabled=False)) is None


def test_batch_augment_geometry_and_colour_match_their_definitions():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    off = dict(hflip=False, vflip=False, rotate_deg=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    # flips only: exact index flips, each image mirrored or not
    flips = BatchAugment(AugConfig(**{**off, "hflip": True}), seed=1)(x)
    for img, out in zip(x.float(), flips):
        assert torch.equal(out, img) or torch.equal(out, img.flip(2))
    # a rotation by (almost) 0 degrees leaves the image as it is
    tiny = BatchAugment(AugConfig(**{**off, "rotate_deg": 1e-6}))(x)
    assert torch.allclose(tiny, x.float(), atol=1e-2)
    # a rotation blacks out corners (black fill), never the centre of a bright image
    bright = torch.full((8, 3, 32, 32), 200, dtype=torch.uint8)
    rot = BatchAugment(AugConfig(**{**off, "rotate_deg": 180.0}), seed=3)(bright)
    assert float(rot[:, :, 16, 16].min()) == pytest.approx(200.0)
    assert float(rot[:, :, 0, 0].min()) < 100
    # hue by a full turn is the identity; torchvision's adjust_hue agrees on a partial turn
    from torchvision.transforms.v2 import functional as TF
    from kvasir_ml.train.augment import _shift_hue

    xf = x.float()
    assert torch.allclose(_shift_hue(xf, torch.ones(4)), xf, atol=1e-3)
    ours = _shift_hue(xf, torch.full((4,), 0.1))
    ref = torch.stack([TF.adjust_hue(img / 255.0, 0.1) * 255.0 for img in xf])
    assert torch.allclose(ours, ref, atol=0.5)


def test_class_index_maps_sources_onto_kvasir_v2_classes():
    tax = load_taxonomy()
    classes = tax.source("kvasir-v2").classes
    assert class_index({"source": "synthetic", "source_class": "polyps"}, "kvasir-v2", tax) == classes.index("polyps")
    assert class_index({"source": "hyperkvasir", "source_class": "cecum"}, "kvasir-v2", tax) == classes.index("normal-cecum")
    assert class_index({"source": "hyperkvasir", "source_class": "ileum"}, "kvasir-v2", tax) == -1
    assert class_index({"source": "kvasir-v2", "source_class": None}, "kvasir-v2", tax) == -1


@pytest.fixture(scope="module")
def tiny_data(synth_dir, tmp_path_factory):
    from kvasir_ml.train.prepare import prepare_data

    run_dir = tmp_path_factory.mktemp("data-run")
    cfg = load_classifier_config(CONFIGS / "classifier_multilabel_tiny.yaml", [
        f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={run_dir / 'cache'}",
        "data.image_size_px=48", "tracking.mode=disabled"])
    return cfg, prepare_data(cfg, run_dir)


@pytest.mark.parametrize("mode", ["raw", "masked", "branch"])
def test_batched_dataset_equals_per_image_reference(tiny_data, mode):
    """The pack slice + per-batch masking gives exactly what predict's inset_inputs gives."""
    from kvasir_ml.train.data import ClassifierDataset

    _, data = tiny_data
    rec = data.records["train"]
    ds = ClassifierDataset(rec, data.packs["train"], mode, 16)
    idx = [5, 0, 3, 3, len(rec) - 1]
    batch = ds[idx]
    for row, i in enumerate(idx):
        ref = inset_inputs(data.cache.get(rec.paths[i]), rec.sizes[i], rec.inset_states[i], mode, 16)
        assert set(ref) <= set(batch)
        for key, value in ref.items():
            assert torch.equal(batch[key][row], value), (key, i)
        assert torch.equal(batch["labels"][row], torch.from_numpy(rec.y_labels[i]))
    assert batch["index"].tolist() == idx
    single = ds[3]
    assert single["index"] == 3 and torch.equal(single["image"], batch["image"][2])


def test_dataset_reads_the_pack_without_mapping_it_and_names_a_cut_pack(tiny_data, tmp_path):
    """Batches are read (pread) straight from the pack file: equal to the pack's rows; a pack
    cut short after the dataset opened it, or an index past the end, is a clear error."""
    import shutil

    from kvasir_ml.train.data import ClassifierDataset

    _, data = tiny_data
    rec = data.records["train"]
    pack = shutil.copy(data.packs["train"], tmp_path / "pack.npy")
    ds = ClassifierDataset(rec, pack, "raw", 16)
    rows = np.load(pack)
    idx = [len(rec) - 1, 0, 2, 2]
    assert np.array_equal(ds[idx]["image"].permute(0, 2, 3, 1).numpy(), rows[idx])
    with pytest.raises(IndexError, match="out of range"):
        ds[[0, len(rec)]]
    with open(pack, "r+b") as fh:
        fh.truncate(Path(pack).stat().st_size - 10)
    with pytest.raises(ValueError, match="pack.npy.*cut short"):
        ds[[len(rec) - 1]]


def test_dataset_without_preadv_slices_the_memory_map(tiny_data, monkeypatch):
    """Where the OS has no ``preadv`` (Windows), batches come from the memory map: the same rows."""
    from kvasir_ml.train.data import ClassifierDataset

    _, data = tiny_data
    rec = data.records["train"]
    ds = ClassifierDataset(rec, data.packs["train"], "raw", 16)
    idx = [len(rec) - 1, 0, 2]
    with_pread = ds[idx]["image"].clone()
    monkeypatch.delattr("os.preadv")
    assert torch.equal(ds[idx]["image"], with_pread)
    assert np.array_equal(with_pread.permute(0, 2, 3, 1).numpy(), np.load(data.packs["train"])[idx])


def test_inset_is_masked_before_the_geometric_augmentation(tiny_data):
    """Flip a masked batch through the real path (loader -> model_inputs with the device
    augmentation): the black inset region moves with the image, so it was masked first."""
    from kvasir_ml.train.loop import model_inputs
    from kvasir_ml.train.prepare import make_loaders

    cfg, data = tiny_data
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"inset_mode": "masked"})})
    train, _, _ = make_loaders(cfg, data, torch.device("cpu"))
    batch = next(iter(train))
    flip = BatchAugment(AugConfig(hflip=True, vflip=False, rotate_deg=0.0, brightness=0.0, contrast=0.0,
                                  saturation=0.0, hue=0.0), seed=0)
    out = model_inputs(batch, torch.device("cpu"), False, flip)["image"]
    src = batch["image"].float()
    rec, width, n_flipped = data.records["train"], src.shape[-1], 0
    for row, i in enumerate(batch["index"].tolist()):
        rows, cols = scaled_inset_slices(rec, i, width)
        assert float(src[row, :, rows, cols].abs().sum()) == 0.0  # masked by the loader
        assert float(src[row].abs().sum()) > 0.0
        if torch.equal(out[row], src[row]):
            continue
        assert torch.equal(out[row], src[row].flip(2))
        n_flipped += 1
        mirrored = slice(width - cols.stop, width - cols.start)
        assert float(out[row, :, rows, mirrored].abs().sum()) == 0.0  # the mask moved with the flip
    assert 0 < n_flipped < len(batch["index"])


def scaled_inset_slices(rec, i, size_px):
    from kvasir_ml.train.data import hide_slices

    return hide_slices(rec.sizes[i], (size_px, size_px))


def test_loader_with_workers_gives_the_same_batches(tiny_data):
    from kvasir_ml.train.prepare import make_loaders

    cfg, data = tiny_data
    cpu = torch.device("cpu")
    cfg2 = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"workers": 2})})
    _, _, evals0 = make_loaders(cfg, data, cpu)
    _, _, evals2 = make_loaders(cfg2, data, cpu)
    for _ in range(2):  # persistent workers serve a second pass too
        for a, b in zip(evals0["val"], evals2["val"], strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
