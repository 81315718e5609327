"""Positive and negative controls of the multi- vs single-label comparison, on synthetic data.

A comparison that cannot detect the effect it exists for proves nothing. The effect: when
findings co-occur with a frame's class independently of it (a polyp in a caecum frame,
dye on the oesophagus), a single-label model, which predicts the class and maps it to
labels through the taxonomy, cannot express them, and a multi-label model can.

* **positive control** — synthetic data with ``synthetic_cooccurrence=independent``: polyp,
  dyed and ulcerative-colitis appear on any frame with probability 0.3 whatever its class.
  The multi-label model must beat the single-label one on macro AP over those three labels
  with a seed-aware ``*`` (``evaluation.verdict``), by at least 3 seed-to-seed SDs.
* **negative control** — ``synthetic_cooccurrence=none``: every label set is a function of
  the class, so the single-label model loses nothing and the comparison must give no ``*``.
  It can only fail if the single-label model is off the ceiling: its macro AP on those
  labels must be at most 0.95 (at 1.0 no difference could show). At full contrast the tiny
  nets reach 0.999, so the negative control's findings are faded
  (``synthetic_finding_contrast``, ``CONTROL_SIZES``): a harder task with the same labels.
* **A/A control** — within each control, each variant's seeds split in halves and compared
  half against half (``experiment.paired.aa_control``): every ``*`` there is false; the rate
  must be at most 5 % over at least 40 cells.

Both run the real experiment (``run_comparison``: same split machinery, controlled pair
``multilabel-masked`` vs ``singlelabel-masked``, checkpoint = last epoch, seed-aware
intervals), only smaller and with W&B off; the runs of both controls are trained by two
worker processes, then each control's comparison is written from its finished runs.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.config import TrackingConfig
from kvasir_ml.data.synth import INDEPENDENT_FINDINGS, INDEPENDENT_P
from kvasir_ml.experiment.config import ExperimentConfig, ExperimentDataConfig
from kvasir_ml.experiment.orchestrate import (PlannedRun, plan_classifier_runs, prepare_experiment_data,
                                              run_comparison, save_experiment_config, train_runs)

PAIR = "multilabel-masked-vs-singlelabel-masked"
SUBSET = "cooccurring"
METRIC = f"macro_ap[{SUBSET}]"
CONTROLS = {"positive": "independent", "negative": "none"}
NEGATIVE_CEILING = 0.95  # the negative control's single-label macro AP must be at most this (off the ceiling)
MIN_EFFECT_RATIO = 3.0  # the positive effect must be at least this many seed-to-seed SDs
MIN_AA_CELLS = 40


@dataclass(frozen=True)
class ControlSize:
    """The data and training budget of one control."""

    n_images: int
    image_size_px: int
    epochs: int
    finding_contrast: float = 1.0


# Each control sized to what it must show (measured on this project's CPU boxes):
# * positive: at 1000 images / 64 px / 10 epochs the effect is ~+0.07-0.09 macro AP, several seed SDs
#   (at 600 / 48 px / 8 epochs it shrank to +0.007: the tiny net cannot see the findings);
# * negative: findings faded to half contrast keep the single-label model off the ceiling
#   (macro AP ~0.89 on one seed at 600 / 48 px / 8 epochs; 0.999 at full contrast).
CONTROL_SIZES = {"positive": ControlSize(1000, 64, 10, 1.0), "negative": ControlSize(600, 48, 8, 0.5)}


def control_config(kind: str, size: ControlSize, seeds: Sequence[int], n_resamples: int, threads: int) -> ExperimentConfig:
    """The experiment of one control (``positive`` or ``negative``)."""
    return ExperimentConfig(
        name=f"control-{kind}",
        data=ExperimentDataConfig(synthetic_n=size.n_images, synthetic_seed=0, split_seed=0, fractions=(0.6, 0.2, 0.2),
                                  synthetic_cooccurrence=CONTROLS[kind], synthetic_finding_contrast=size.finding_contrast),
        base_configs={"multilabel": "configs/classifier_multilabel_tiny.yaml",
                      "singlelabel": "configs/classifier_singlelabel_tiny.yaml"},
        variants={"multilabel": ["masked"], "singlelabel": ["masked"]},
        seeds=list(seeds),
        overrides=[f"optim.epochs={size.epochs}", f"data.image_size_px={size.image_size_px}", "runtime.progress=false",
                   f"runtime.threads={threads}", "eval.select=last"],
        bootstrap_resamples=n_resamples,
        label_subsets={SUBSET: list(INDEPENDENT_FINDINGS)},
        tracking=TrackingConfig(mode="disabled"),
    )


def _summary(comparison: dict[str, Any]) -> dict[str, Any]:
    paired = comparison["paired"][PAIR]
    v = comparison["variants"]
    res = paired[METRIC]
    seed_sd = [x for x in res.get("seed_sd") or [] if x is not None]
    noise = math.sqrt(sum(x * x for x in seed_sd) / len(seed_sd)) if seed_sd else None
    return {
        "diff": res["diff"], "ci95": res["ci95"], "ci95_images": res["ci95_images"], "star": res["star"],
        "verdict": res["verdict"], "n_seeds": res["n_seeds"], "seeds_needed": res["seeds_needed"],
        "seed_sd": noise, "effect_over_seed_sd": (abs(res["diff"]) / noise) if noise else None,
        "multilabel": res["a"], "singlelabel": res["b"], "single_macro_ap": res["b"],
        "macro_ap_all_labels": {"diff": paired["macro_ap"]["diff"], "ci95": paired["macro_ap"]["ci95"],
                                "star": paired["macro_ap"]["star"]},
        "top1": {"multilabel": v["multilabel-masked"]["test"]["top1"]["mean"],
                 "singlelabel": v["singlelabel-masked"]["test"]["top1"]["mean"]},
        "per_label_ap": {lbl: {t: v[f"{t}-masked"]["per_class_ap"].get(lbl, {}).get("mean")
                               for t in ("multilabel", "singlelabel")} for lbl in INDEPENDENT_FINDINGS},
        "aa": {k: comparison["aa_control"][k] for k in ("cells", "starred", "rate", "seeds_per_side")},
    }


def judge(result: dict[str, Any], ceiling: float = NEGATIVE_CEILING, min_effect_ratio: float = MIN_EFFECT_RATIO) -> dict[str, Any]:
    """The verdicts of both controls (in place, and returned).

    * positive ``passed``: the seed-aware verdict says multi-label better (``*``, diff > 0) and the
      effect is at least ``min_effect_ratio`` x the seed-to-seed SD (a control that passes by luck
      of the seeds would not);
    * negative ``passed``: no ``*`` (the interval holds zero) and the single-label model's macro AP
      on the shared labels is at most ``ceiling`` (off the ceiling, so a difference COULD show);
    * ``aa``: the A/A cells of both controls pooled, ``passed`` when the false-``*`` rate is <= 5 %
      over at least ``MIN_AA_CELLS`` cells.
    """
    pos, neg = result["positive"], result["negative"]
    ratio = pos.get("effect_over_seed_sd")
    pos["passed"] = bool(pos["star"] and pos["diff"] > 0 and ratio is not None and ratio >= min_effect_ratio)
    neg["holds_zero"] = not neg["star"]
    neg["off_ceiling"] = neg["single_macro_ap"] is not None and neg["single_macro_ap"] <= ceiling
    neg["passed"] = neg["holds_zero"] and neg["off_ceiling"]
    cells = pos["aa"]["cells"] + neg["aa"]["cells"]
    starred = pos["aa"]["starred"] + neg["aa"]["starred"]
    result["aa"] = {"cells": cells, "starred": starred, "rate": starred / cells if cells else None,
                    "seeds_per_side": pos["aa"]["seeds_per_side"],
                    "passed": cells >= MIN_AA_CELLS and starred <= 0.05 * cells}
    result["passed"] = pos["passed"] and neg["passed"] and result["aa"]["passed"]
    return result


def _plan(kind: str, cfg: ExperimentConfig, out_dir: Path) -> list[PlannedRun]:
    """Synthesize the control's data, freeze its split, and plan its runs."""
    data = prepare_experiment_data(cfg.data, out_dir)
    save_experiment_config(cfg, out_dir)
    return plan_classifier_runs(cfg, data, out_dir)


def _train_one(run: PlannedRun) -> float:
    """Train one planned run (a finished one is reused); returns the CPU seconds it used."""
    def used() -> float:  # this process and its reaped children (DataLoader workers)
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    before = used()
    train_runs([run], skip_finished=True, progress=False)
    return used() - before


def _report(kind: str, cfg: ExperimentConfig, out_dir: Path) -> dict[str, Any]:
    """The control's comparison from its finished runs (``run_comparison`` reuses them)."""
    comparison = run_comparison(cfg, out_dir, progress=False)["comparison"]
    return {**_summary(comparison), "report": str(out_dir / "comparison.md")}


def _interleave(plans: dict[str, list[PlannedRun]]) -> list[tuple[str, PlannedRun]]:
    """Runs of the controls alternated (positive, negative, positive...): the two workers share the load."""
    queues = {k: list(v) for k, v in plans.items()}
    order: list[tuple[str, PlannedRun]] = []
    while any(queues.values()):
        for kind, queue in queues.items():
            if queue:
                order.append((kind, queue.pop(0)))
    return order


def run_controls(out_dir: str | Path, sizes: dict[str, ControlSize] | None = None,
                 seeds: Sequence[int] = (0, 1, 2, 3, 4, 5), n_resamples: int = 2000, threads: int = 1,
                 workers: int = 2) -> dict[str, Any]:
    """Run both controls into ``out_dir/{positive,negative}`` and judge them (``judge``).

    Args:
        out_dir: parent folder (re-running reuses finished runs).
        sizes: per control, images (split 60/20/20), input side, epochs and finding contrast;
            default ``CONTROL_SIZES``.
        seeds: training seeds. The A/A control splits each variant's seeds in halves, so 2 x 3
            seeds give it verdicts.
        n_resamples: bootstrap resamples of the comparisons.
        threads: torch CPU threads per run.
        workers: runs trained at once, each in its own process (the runs of both controls share
            them; 1 trains in this process).

    Returns:
        ``{"positive": {"diff", "ci95", "star", "verdict", "seed_sd", "effect_over_seed_sd", "passed", "cpu_s", ...},
        "negative": {"diff", "ci95", "single_macro_ap", "holds_zero", "off_ceiling", "passed", ...},
        "aa": {"cells", "starred", "rate", "passed"}, "metric", "labels", "passed", "settings", "wall_time_s",
        "cpu_s"}``; ``cpu_s`` is the training's CPU time (what a quiet machine's wall time is made of).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    sizes = {**CONTROL_SIZES, **(sizes or {})}
    configs = {kind: control_config(kind, sizes[kind], seeds, n_resamples, threads) for kind in CONTROLS}
    plans = {kind: _plan(kind, configs[kind], out_dir / kind) for kind in CONTROLS}
    order = _interleave(plans)
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # no forked torch state
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            cpu = list(pool.map(_train_one, [run for _, run in order]))
    else:
        cpu = [_train_one(run) for _, run in order]
    result: dict[str, Any] = {kind: _report(kind, configs[kind], out_dir / kind) for kind in CONTROLS}
    for kind in CONTROLS:
        result[kind]["cpu_s"] = round(sum(c for (k, _), c in zip(order, cpu) if k == kind), 1)
    result.update(
        metric=f"macro AP over the co-occurring labels {list(INDEPENDENT_FINDINGS)}: multilabel-masked - "
               "singlelabel-masked, seed-aware 95% interval (retraining + test images)",
        labels=list(INDEPENDENT_FINDINGS),
        settings={"sizes": {k: asdict(v) for k, v in sizes.items()}, "split": [0.6, 0.2, 0.2],
                  "seeds": list(seeds), "n_resamples": n_resamples, "threads": threads, "workers": workers,
                  "arch": "resnet18", "selection": "last", "independent_p": INDEPENDENT_P,
                  "negative_ceiling": NEGATIVE_CEILING, "min_effect_ratio": MIN_EFFECT_RATIO},
        cpu_s=round(sum(cpu), 1),
        wall_time_s=round(time.perf_counter() - start, 1),
    )
    return judge(result)
