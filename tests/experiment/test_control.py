"""The positive/negative control script's contract: two controlled experiments, a JSON last line.

Tiny sizes: this checks the plumbing (data modes, pairing, the label subset, the verdicts),
not the outcome; the real run is ``scripts/bench_positive_control.py`` (README, benchmarks/results/).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bench_positive_control", REPO / "scripts" / "bench_positive_control.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two experiments of two runs each: ~25-45 s on 2 cores
def test_control_script_runs_both_controls_and_prints_json_last(tmp_path, capsys):
    out_json = tmp_path / "result.json"
    rc = _script().main(["--out", str(tmp_path / "controls"), "--images", "48", "--size", "32", "--epochs", "1",
                         "--seeds", "0", "1", "--resamples", "50", "--json", str(out_json)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result == json.loads(out_json.read_text())
    assert rc == (0 if result["passed"] else 1)
    for kind in ("positive", "negative"):
        r = result[kind]
        assert len(r["ci95"]) == 2 and r["ci95"][0] <= r["ci95"][1]
        assert abs(r["diff"] - (r["multilabel"] - r["singlelabel"])) < 1e-12
        # two seeds a side: an interval, but never a verdict
        assert r["verdict"] == "too few seeds for a verdict" and not r["star"] and r["n_seeds"] == [2, 2]
    assert not result["positive"]["passed"] and not result["passed"]
    assert result["negative"]["single_macro_ap"] == result["negative"]["singlelabel"]
    assert result["negative"]["off_ceiling"] == (result["negative"]["single_macro_ap"] <= 0.95)
    assert result["aa"]["cells"] == 0 and not result["aa"]["passed"]  # 2 seeds: no halves of 3
    assert result["labels"] == ["polyp", "dyed", "ulcerative-colitis"]
    # the two datasets differ as designed: independent extras vs label sets that are a function of the class
    for kind, mode in (("positive", "independent"), ("negative", "none")):
        info = json.loads((tmp_path / "controls" / kind / "data" / "annotations.coco.json").read_text())["info"]
        assert info["cooccurrence"] == mode
        assert result[kind]["cpu_s"] > 0
    # the negative control's findings are faded (off the ceiling); the positive one's are not
    info = {kind: json.loads((tmp_path / "controls" / kind / "data" / "annotations.coco.json").read_text())["info"]
            for kind in ("positive", "negative")}
    assert info["negative"]["finding_contrast"] == result["settings"]["sizes"]["negative"]["finding_contrast"] < 1
    assert "finding_contrast" not in info["positive"]
