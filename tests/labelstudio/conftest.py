"""Label Studio fixtures: one real server per test session, on 127.0.0.1, offline.

The first start on a fresh machine migrates the database (~35-90 s on 2 busy cores). So
that CI does not wait for it, ``tests/conftest.py`` starts the server in the background as
soon as collection finds a ``labelstudio`` test (it migrates while the other tests run);
``ls_server`` waits for it. A migrated, empty database is also cached in pytest's cache
folder so later sessions start in seconds (`pytest --cache-clear` drops it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from ls_boot import label_studio_boot


@pytest.fixture(scope="session")
def ls_data_root(request) -> Path:
    """The server's document root; tests put their images in sub-folders of it."""
    return label_studio_boot(request.config).data_root


@pytest.fixture(scope="session")
def ls_server(ls_data_root, request):
    """A running Label Studio server (session scope; stopped at session end); skipped when
    Label Studio is not installed."""
    if importlib.util.find_spec("label_studio") is None:
        pytest.skip("label-studio is not installed (pip install -e '.[dev]')")
    return label_studio_boot(request.config).wait()


@pytest.fixture(scope="session")
def ls_client(ls_server):
    from kvasir_ml.labelstudio.client import LSClient, LSConnection

    return LSClient(LSConnection(ls_server.url, ls_server.token), max_attempts=2, backoff_s=0.1)


def make_tiny_dataset(root: Path, folder: str, n: int = 6) -> CanonicalDataset:
    """``n`` small JPEGs of varied odd sizes under ``root/folder`` and their canonical file."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    ds = CanonicalDataset.new("synthetic")
    classes = ["polyps", "normal-cecum", "dyed-resection-margins", "esophagitis", "dyed-lifted-polyps", "normal-z-line"]
    from kvasir_ml.taxonomy import load_taxonomy

    tax = load_taxonomy()
    for i in range(n):
        w, h = 97 + 13 * i, 61 + 7 * i
        name = f"{folder}/frame {i:02d}.jpg"  # a space: exercises URL encoding
        Image.new("RGB", (w, h), (40 * i % 255, 90, 120)).save(root / name)
        cls = classes[i % len(classes)]
        iid = ds.add_image(name, w, h, tax.labels_for("synthetic", cls), "synthetic", cls, inset="none")
        if "polyp" in tax.labels_for("synthetic", cls):
            ds.add_box(iid, "polyp", [3.3, 4.7, w / 3, h / 4])
    ds.save(root / f"{folder}.coco.json", keep_backup=False)
    return ds


@pytest.fixture(scope="session")
def tiny_dataset():
    """The ``make_tiny_dataset(root, folder, n)`` factory."""
    return make_tiny_dataset


CLASSIFIER_TINY = ["optim.epochs=1", "tracking.mode=disabled", "runtime.threads=1"]
DETECTOR_TINY = ["train.epochs=1", "train.imgsz=64", "tracking.mode=disabled", "eval.n_overlays=0"]


@pytest.fixture(scope="session")
def tiny_fine_tune() -> dict[str, list[str]]:
    """Config overrides that keep fine-tuning tiny (1 epoch, 64 px, no tracking)."""
    return {"classifier": CLASSIFIER_TINY, "detector": DETECTOR_TINY}


@pytest.fixture(scope="session")
def loop_models(ls_data_root, tmp_path_factory):
    """24 synthetic frames under the server's document root, and a tiny classifier and
    detector trained on them (resnet18 / yolov8n, 64 px, 1 epoch): the "previous models"
    of the ML backend and loop tests. Returns ``(canonical, classifier ckpt, detector ckpt)``."""
    from kvasir_ml.config import load_config
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.synth import synthesize
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    repo = Path(__file__).resolve().parents[2]
    ds = load_canonical(synthesize(ls_data_root / "loopdata", n=24, seed=5))
    for img in ds.images:  # file names relative to the server's document root
        img["file_name"] = f"loopdata/{img['file_name']}"
    canonical = ls_data_root / "loop.coco.json"
    ds.save(canonical, keep_backup=False)
    runs = tmp_path_factory.mktemp("loop-models")
    data = [f"data.canonical={canonical}", f"data.root={ls_data_root}"]
    cls_cfg = load_classifier_config(repo / "configs" / "classifier_multilabel_tiny.yaml", data + CLASSIFIER_TINY)
    train_classifier(cls_cfg, runs / "classifier")
    det_cfg = load_config(DetectorConfig, repo / "configs" / "detector_tiny.yaml", data + DETECTOR_TINY)
    train_detector(det_cfg, runs / "detector")
    return canonical, runs / "classifier" / "checkpoints" / "best.pt", runs / "detector" / "checkpoints" / "best.pt"
