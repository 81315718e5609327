"""Classifier checkpoints from elsewhere: named by name, versioned, refused by file (issue 19).

Checkpoints are built here from a random resnet18 (no training): what is checked is how a
checkpoint's names, versions and shapes are read, not what the model learned.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import dump_config
from kvasir_ml.evaluation.decoder import ClassDecoder
from kvasir_ml.models.classifier import KvasirClassifier
from kvasir_ml.inference.combined import predict_images
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.checkpoint import CheckpointError, save_checkpoint
from kvasir_ml.train.config import load_classifier_config

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"


def _checkpoint(path: Path, task: str, perm: list[int] | None = None, decoder: bool = False, **extra) -> Path:
    """A checkpoint of one fixed random model; ``perm`` lists its classes in another order
    (for a single-label model the head's rows are permuted with them: the same model)."""
    taxonomy = load_taxonomy()
    cfg = load_classifier_config(ML_TINY, [f"model.task={task}", "model.inset_mode=raw", "data.image_size_px=32"])
    classes, labels = list(taxonomy.source("kvasir-v2").classes), taxonomy.label_names
    torch.manual_seed(0)
    model = KvasirClassifier("resnet18", len(labels) if task == "multilabel" else len(classes), "raw")
    state = model.state_dict()
    order = perm or list(range(len(classes)))
    if task == "singlelabel":
        state["head.weight"], state["head.bias"] = state["head.weight"][order], state["head.bias"][order]
    rng = np.random.default_rng(0)
    dec = ClassDecoder(classes, labels, rng.normal(size=(len(classes), len(labels))), rng.normal(size=len(classes)))
    save_checkpoint(path, {"model": state, "config": dump_config(cfg), "label_names": labels,
                           "class_names": [classes[i] for i in order], "thresholds": [0.5] * len(labels),
                           "calibration": None, "decoder": dec.to_state() if decoder else None,
                           "taxonomy_version": taxonomy.version, **extra})
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        paths.append(folder / f"f{i}.png")
        Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _names(results: list[dict]) -> list[tuple]:
    return [(r["source_class"]["name"], round(r["source_class"]["score"], 6),
             tuple(round(v, 6) for v in r["labels"].values())) for r in results]


@pytest.mark.parametrize("task,decoder", [("singlelabel", False), ("multilabel", False), ("multilabel", True)])
def test_class_names_in_another_order_give_the_same_source_class(tmp_path, frames, task, decoder):
    n = len(load_taxonomy().source("kvasir-v2").classes)
    perm = list(reversed(range(n)))
    same = _checkpoint(tmp_path / "a.pt", task, decoder=decoder)
    other = _checkpoint(tmp_path / "b.pt", task, perm=perm, decoder=decoder)
    a = predict_images(frames, classifier_ckpt=same, device="cpu")
    b = predict_images(frames, classifier_ckpt=other, device="cpu")
    assert _names(a) == _names(b)
    assert len({r["source_class"]["name"] for r in a}) >= 1 and all("error" not in r for r in a + b)


def test_taxonomy_version_mismatch_is_named(tmp_path, frames, capsys):
    version = load_taxonomy().version
    path = _checkpoint(tmp_path / "old.pt", "multilabel", taxonomy_version=version + 1)
    with pytest.raises(CheckpointError, match=rf"old.pt was trained with taxonomy version {version + 1}, but "
                                              rf".*taxonomy.yaml is version {version}"):
        predict_images(frames, classifier_ckpt=path, device="cpu")
    assert cli_main(["predict", "--classifier", str(path), str(frames[0]), "--device", "cpu"]) == 2
    assert "taxonomy version" in capsys.readouterr().err


def test_a_checkpoint_with_a_label_fewer_or_a_config_key_from_another_version_names_the_file(tmp_path, frames,
                                                                                          capsys):
    labels = load_taxonomy().label_names
    fewer = _checkpoint(tmp_path / "fewer.pt", "multilabel", label_names=labels[:-1], thresholds=[0.5] * (len(labels) - 1))
    with pytest.raises(CheckpointError, match=rf"fewer.pt: its weights do not fit the {len(labels) - 1} labels it "
                                              r"names .*size mismatch for head.weight"):
        predict_images(frames, classifier_ckpt=fewer, device="cpu")
    cfg = dump_config(load_classifier_config(ML_TINY, ["model.inset_mode=raw"]))
    cfg["optim"]["warmup_lr"] = 0.1  # a key of some other version
    foreign = _checkpoint(tmp_path / "foreign.pt", "multilabel", config=cfg)
    assert cli_main(["predict", "--classifier", str(foreign), str(frames[0]), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "foreign.pt: its config does not fit this version of kvasir_ml" in err and "optim.warmup_lr" in err
    assert "Traceback" not in err


class _Trap:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_booby_trapped_weights_file_is_refused_before_the_run_folder_exists(tmp_path, capsys):
    marker, trap = tmp_path / "PWNED", tmp_path / "weights.pt"
    torch.save({"backbone": _Trap(marker)}, trap)
    out = tmp_path / "run"
    rc = cli_main(["train", "classifier", "--config", str(ML_TINY), "--out", str(out), f"model.weights={trap}",
                   "tracking.mode=disabled"])
    err = capsys.readouterr().err
    assert rc == 2 and "model.weights" in err and "weights.pt is refused: it cannot be loaded safely" in err
    assert "Traceback" not in err and not out.exists() and not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]  # no lock file left either
