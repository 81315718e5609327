"""Measure the inset detector on the real images in ../shared/data (see docs/inset.md).

Prints, for the 22 Kvasir v2 samples, the confusion against hand labels (made by looking at
each image) and, for Kvasir-SEG's 1000 images, the state counts, the agreement with hand
labels on a fixed random sample of 100, and the detector's speed.

    .venv/bin/python scripts/measure_inset.py [--data ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from kvasir_ml.data.images import load_rgb
from kvasir_ml.data.inset import INSET_STATES, detect_inset, hiding_box_xywh_px

REPO = Path(__file__).resolve().parents[1]
UPPER_GI = ("esophagitis", "normal-pylorus", "normal-z-line")
# Hand labels of kvasir-v2-samples (viewed one by one): these 11 show the green panel,
# the other 11 show neither panel nor black rectangle.
V2_GREEN = {
    "dyed-lifted-polyps/simula-site_dyed-and-lifted-polyp.jpg",
    "dyed-resection-margins/simula-site_dyed-resection-margin.jpg",
    "dyed-unspecified/matrikasubedi_dyed.jpg",
    "normal-cecum/0c192d17-18ae-4731-bbb5-1117b8576466.jpg",
    "normal-cecum/5cb6d900-c930-4094-91ca-ccff14a2e176.jpg",
    "normal-cecum/simula-site_cecum.jpg",
    "polyps/simula-site_polyp.jpg",
    "ulcerative-colitis/simula-site_ulcerative-colitis.jpg",
    "unlabeled/5bf0393a-daf5-4803-85c7-abb1f7640894.jpg",
    "unlabeled/5c7b4d18-acce-4c7e-89e1-8f76e01705d5.jpg",
    "unlabeled/5cc089d6-ebfe-448e-8685-57822b5f704a.jpg",
}
# Kvasir-SEG reference: random.Random(0).sample(sorted ids, 100) was viewed as contact sheets
# of the bottom-left corner; the hand label equals the detector's state except where listed.
SEG_SAMPLE_SEED, SEG_SAMPLE_N = 0, 100
SEG_HAND_CORRECTIONS: dict[str, str] = {}


def confusion(pairs: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{reference: {predicted: count}} over the three states."""
    table = {ref: {pred: 0 for pred in INSET_STATES} for ref in INSET_STATES}
    for ref, pred in pairs:
        table[ref][pred] += 1
    return table


def measure_v2(root: Path) -> dict:
    pairs, upper_green, rows = [], 0, []
    for path in sorted(root.glob("*/*.jpg")):
        rel = f"{path.parent.name}/{path.name}"
        ref = "green" if rel in V2_GREEN else "none"
        pred = detect_inset(load_rgb(path)).state
        pairs.append((ref, pred))
        upper_green += int(path.parent.name in UPPER_GI and pred == "green")
        rows.append({"file": rel, "reference": ref, "predicted": pred})
    correct = sum(r == p for r, p in pairs)
    return {"n": len(pairs), "correct": correct, "confusion": confusion(pairs), "upper_gi_called_green": upper_green, "images": rows}


def measure_seg(root: Path) -> dict:
    paths = sorted(root.glob("*.jpg"))
    states: dict[str, str] = {}
    outside: Counter = Counter()  # detected boxes reaching outside the models' hidden region
    detect_s, decode_s = 0.0, 0.0
    for path in paths:
        t0 = time.perf_counter()
        rgb = load_rgb(path)
        t1 = time.perf_counter()
        found = detect_inset(rgb)
        detect_s += time.perf_counter() - t1
        decode_s += t1 - t0
        states[path.stem] = found.state
        if found.box_xywh_px is not None:
            hx, hy, hw, _ = hiding_box_xywh_px(rgb.shape[1], rgb.shape[0])
            x, y, w, _ = found.box_xywh_px
            outside[found.state] += int(y < hy - 1 or x + w > hx + hw + 1)
    sample = random.Random(SEG_SAMPLE_SEED).sample(sorted(states), SEG_SAMPLE_N)
    pairs = [(SEG_HAND_CORRECTIONS.get(k, states[k]), states[k]) for k in sample]
    return {
        "n": len(paths),
        "counts": dict(Counter(states.values())),
        "outside_hidden_region": {s: outside[s] for s in ("green", "black")},
        "sample_n": len(sample),
        "sample_correct": sum(r == p for r, p in pairs),
        "sample_confusion": confusion(pairs),
        "detect_images_per_s": len(paths) / detect_s if detect_s else None,
        "decode_images_per_s": len(paths) / decode_s if decode_s else None,
        "green": sorted(k for k, v in states.items() if v == "green"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    result = {"kvasir_v2_samples": measure_v2(args.data / "kvasir-v2-samples"), "kvasir_seg": measure_seg(args.data / "kvasir-seg" / "images")}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    v2, seg = result["kvasir_v2_samples"], result["kvasir_seg"]
    print(f"kvasir-v2-samples: {v2['correct']}/{v2['n']} match hand labels; upper-GI called green: {v2['upper_gi_called_green']}")
    print(f"  confusion (reference -> predicted): {v2['confusion']}")
    print(f"kvasir-seg: {seg['n']} images, counts {seg['counts']}")
    print(f"  detected boxes reaching outside the hidden region: {seg['outside_hidden_region']}")
    print(f"  hand-checked sample: {seg['sample_correct']}/{seg['sample_n']}; confusion {seg['sample_confusion']}")
    print(f"  detect_inset: {seg['detect_images_per_s']:.0f} images/s (decode alone: {seg['decode_images_per_s']:.0f} images/s)")
    print(f"  green: {', '.join(seg['green'])}")


if __name__ == "__main__":
    main()
