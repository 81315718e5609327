"""Real-data smoke: Kvasir-SEG indexed, split, 1 epoch at 128 px on a few images (CPU), then scored on
CVC-ClinicDB (`kvasir-ml eval --data`, boxes from its masks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.realdata
def test_kvasir_seg_smoke_run(shared_data, tmp_path, no_network):
    seg = shared_data / "kvasir-seg"
    if not (seg / "images").is_dir():
        pytest.skip(f"{seg} has no images/")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from run_kvasir_seg_detector import main
    finally:
        sys.path.remove(str(REPO / "scripts"))
    out = tmp_path / "run"
    assert main(["--out", str(out), "--data", str(seg), "--smoke", "tracking.mode=disabled"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "kvasir-seg" and metrics["inset_mode"] == "detected"
    assert sum(metrics["n_images"].values()) == 48
    for key in ("coco_ap", "coco_ap50", "coco_ap75", "ultralytics_map50", "ultralytics_map50_95"):
        assert isinstance(metrics["test"][key], float) and 0.0 <= metrics["test"][key] <= 1.0, key
    assert set(metrics["test"]["per_class_ap"]) == {"polyp", "resection-margin"}
    assert 0.0 <= metrics["test"]["per_class_ap"]["polyp"] <= 1.0  # Kvasir-SEG: every frame has a polyp
    assert metrics["test"]["per_class_ap"]["resection-margin"] is None  # and no resection margins
    assert (out / "checkpoints" / "best.pt").is_file() and list((out / "plots").glob("*.png"))
    # cross-dataset: the Kvasir-SEG detector on CVC-ClinicDB, boxes derived from its masks
    from kvasir_ml.cli import main as cli_main

    cvc = tmp_path / "cvc.coco.json"
    assert cli_main(["data", "index", "cvc-clinicdb", str(shared_data / "cvc-clinicdb-sample"), "--out", str(cvc)]) == 0
    assert cli_main(["eval", str(out / "checkpoints" / "best.pt"), "--out", str(tmp_path / "on-cvc"),
                     "--data", str(cvc)]) == 0
    on_cvc = json.loads((tmp_path / "on-cvc" / "metrics.json").read_text())
    assert on_cvc["dataset"] == "cvc-clinicdb" and on_cvc["n_images"] == {"all": 20}
    assert 0.0 <= on_cvc["all"]["coco_ap50"] <= 1.0 and on_cvc["all"]["per_class_ap"]["resection-margin"] is None
    assert no_network == []
