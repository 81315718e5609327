"""Positive and negative controls of the multi- vs single-label comparison, on synthetic data.

A comparison that cannot detect the effect it exists for proves nothing. The effect: when
findings co-occur with a frame's class independently of it (a polyp in a caecum frame,
dye on the oesophagus), a single-label model, which predicts the class and maps it to
labels through the taxonomy, cannot express them, and a multi-label model can.

* **positive control** — synthetic data with ``synthetic_cooccurrence=independent``: polyp,
  dyed and ulcerative-colitis appear on any frame with probability 0.3 whatever its class.
  The multi-label model must beat the single-label one on macro AP over those three labels,
  with the paired 95% interval above zero.
* **negative control** — ``synthetic_cooccurrence=none``: every label set is a function of
  the class, so the single-label model loses nothing and the interval must hold zero.

Both run the real experiment (``run_comparison``: same split machinery, controlled pair
``multilabel-masked`` vs ``singlelabel-masked``, checkpoint = last epoch, the paired
bootstrap over test images), only smaller and with W&B off.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.config import TrackingConfig
from kvasir_ml.data.synth import INDEPENDENT_FINDINGS, INDEPENDENT_P
from kvasir_ml.experiment.config import ExperimentConfig, ExperimentDataConfig
from kvasir_ml.experiment.orchestrate import run_comparison

PAIR = "multilabel-masked-vs-singlelabel-masked"
SUBSET = "cooccurring"
METRIC = f"macro_ap[{SUBSET}]"
CONTROLS = {"positive": "independent", "negative": "none"}


def control_config(kind: str, n_images: int, image_size_px: int, epochs: int, seeds: Sequence[int],
                   n_resamples: int, threads: int) -> ExperimentConfig:
    """The experiment of one control (``positive`` or ``negative``)."""
    return ExperimentConfig(
        name=f"control-{kind}",
        data=ExperimentDataConfig(synthetic_n=n_images, synthetic_seed=0, split_seed=0, fractions=(0.6, 0.2, 0.2),
                                  synthetic_cooccurrence=CONTROLS[kind]),
        base_configs={"multilabel": "configs/classifier_multilabel_tiny.yaml",
                      "singlelabel": "configs/classifier_singlelabel_tiny.yaml"},
        variants={"multilabel": ["masked"], "singlelabel": ["masked"]},
        seeds=list(seeds),
        overrides=[f"optim.epochs={epochs}", f"data.image_size_px={image_size_px}", "runtime.progress=false",
                   f"runtime.threads={threads}", "eval.select=last"],
        bootstrap_resamples=n_resamples,
        label_subsets={SUBSET: list(INDEPENDENT_FINDINGS)},
        tracking=TrackingConfig(mode="disabled"),
    )


def _summary(comparison: dict[str, Any]) -> dict[str, Any]:
    paired = comparison["paired"][PAIR]
    v = comparison["variants"]
    return {
        "diff": paired[METRIC]["diff"], "ci95": paired[METRIC]["ci95"],
        "multilabel": paired[METRIC]["a"], "singlelabel": paired[METRIC]["b"],
        "macro_ap_all_labels": {"diff": paired["macro_ap"]["diff"], "ci95": paired["macro_ap"]["ci95"]},
        "top1": {"multilabel": v["multilabel-masked"]["test"]["top1"]["mean"],
                 "singlelabel": v["singlelabel-masked"]["test"]["top1"]["mean"]},
        "per_label_ap": {lbl: {t: v[f"{t}-masked"]["per_class_ap"].get(lbl, {}).get("mean")
                               for t in ("multilabel", "singlelabel")} for lbl in INDEPENDENT_FINDINGS},
    }


def run_controls(out_dir: str | Path, n_images: int = 1000, image_size_px: int = 64, epochs: int = 10,
                 seeds: Sequence[int] = (0, 1), n_resamples: int = 2000, threads: int = 1) -> dict[str, Any]:
    """Run both controls into ``out_dir/{positive,negative}`` and judge them.

    Args:
        out_dir: parent folder (re-running reuses finished runs).
        n_images: synthetic images per control (split 60/20/20).
        image_size_px, epochs, seeds: the tiny ResNet18s' input side, epochs and seeds.
        n_resamples: paired-bootstrap resamples.
        threads: torch CPU threads per run.

    Returns:
        ``{"positive": {"diff", "ci95", "passed", ...}, "negative": {"diff", "ci95", "holds_zero", ...},
        "metric", "labels", "passed", "settings", "wall_time_s"}``; ``passed`` = the positive
        interval lies above zero and the negative one holds zero.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    result: dict[str, Any] = {}
    for kind in CONTROLS:
        t0 = time.perf_counter()
        cfg = control_config(kind, n_images, image_size_px, epochs, seeds, n_resamples, threads)
        comparison = run_comparison(cfg, out_dir / kind, progress=False)["comparison"]
        result[kind] = {**_summary(comparison), "wall_time_s": round(time.perf_counter() - t0, 1),
                        "report": str(out_dir / kind / "comparison.md")}
    lo, _ = result["positive"]["ci95"]
    nlo, nhi = result["negative"]["ci95"]
    result["positive"]["passed"] = bool(lo > 0)
    result["negative"]["holds_zero"] = bool(nlo <= 0 <= nhi)
    result.update(
        metric=f"macro AP over the co-occurring labels {list(INDEPENDENT_FINDINGS)}: multilabel-masked - "
               "singlelabel-masked, paired 95% bootstrap interval over test images, seeds pooled",
        labels=list(INDEPENDENT_FINDINGS),
        passed=result["positive"]["passed"] and result["negative"]["holds_zero"],
        settings={"n_images": n_images, "split": [0.6, 0.2, 0.2], "image_size_px": image_size_px, "epochs": epochs,
                  "seeds": list(seeds), "n_resamples": n_resamples, "threads": threads, "arch": "resnet18",
                  "selection": "last", "independent_p": INDEPENDENT_P},
        wall_time_s=round(time.perf_counter() - start, 1),
    )
    return result
