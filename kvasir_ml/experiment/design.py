"""The controlled design of a multi- vs single-label comparison, checked before anything trains.

A difference between a multi-label and a single-label run may only come from the task.
So, for every inset mode trained in both tasks and every seed, the two resolved run
configs must be equal except in the keys listed in ``ALLOWED_DIFFERENCES`` (the task
itself, the run name, where W&B logs, and the multi-label loss's own settings, which the
single-label cross-entropy does not read). Two regularisers have no counterpart in the
other task and are refused instead: label smoothing (cross-entropy only) and checkpoint
selection on val macro AP (the multi-label task's own metric). The asymmetric loss is
refused for the multi-label side: its scores are not calibrated probabilities, and the
class metrics of a multi-label model come from decoding them (``models/losses.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

from kvasir_ml.config import dump_config
from kvasir_ml.rundir import config_differences as run_config_differences

# Dotted config keys (or whole sections) that may differ between the multi- and single-label run of a pair.
ALLOWED_DIFFERENCES = ("name", "model.task", "loss.name", "loss.pos_weight", "loss.pos_weight_max",
                       "loss.asl_gamma_neg", "loss.asl_gamma_pos", "loss.asl_clip", "tracking")
FAIR_SELECTION_RULES = ("last", "val_loss")


class DesignError(ValueError):
    """The planned runs would not make a controlled comparison; the message says what differs."""


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two dumped configs, allowed ones left out
    (``rundir.config_differences``, the differ resumes use, with this module's allowance)."""
    return run_config_differences(a, b, ALLOWED_DIFFERENCES)


def check_controlled(planned: Sequence[Any]) -> dict[str, Any]:
    """Check every (multilabel-<mode>, singlelabel-<mode>) pair of planned classifier runs.

    Args:
        planned: ``PlannedRun``s (``variant``, ``seed``, ``config``, ``kind``).

    Returns:
        ``{"controlled": True, "pairs": [...], "allowed_differences": [...], "selection": rule}``
        for ``comparison.json``.

    Raises:
        DesignError: a pair differs in a key outside ``ALLOWED_DIFFERENCES``, uses label
            smoothing, the asymmetric loss or selects checkpoints by val macro AP, or the
            variants use different selection rules.
    """
    runs = {(r.variant, r.seed): dump_config(r.config) for r in planned if r.kind == "classifier"}
    rules = {cfg["eval"]["select"] for cfg in runs.values()}
    problems = []
    if len(rules) > 1:
        problems.append(f"the variants select checkpoints by different rules {sorted(rules)}")
    unfair = sorted(rules - set(FAIR_SELECTION_RULES))
    if unfair:
        problems.append(f"eval.select={unfair[0]} picks each model by a task's own metric; use one of "
                        f"{list(FAIR_SELECTION_RULES)}")
    pairs = []
    for (variant, seed), multi in runs.items():
        if not variant.startswith("multilabel-"):
            continue
        single = runs.get(("singlelabel-" + variant.split("-", 1)[1], seed))
        if single is None:
            continue
        pairs.append(f"{variant}-vs-singlelabel-{variant.split('-', 1)[1]}")
        diffs = config_differences(multi, single)
        if diffs:
            problems.append(f"{variant} vs singlelabel seed {seed}: configs differ in {', '.join(diffs)}")
        if multi["loss"]["name"] == "asl":
            problems.append(f"{variant} seed {seed}: loss.name=asl gives scores that are not calibrated "
                            "probabilities, so the label-set decoding behind the multi-label model's top-1, MCC "
                            "and confusion matrices is biased; use bce (its pos_weight keeps outputs calibrated)")
        if single["loss"]["label_smoothing"] > 0:
            problems.append(f"singlelabel seed {seed}: loss.label_smoothing={single['loss']['label_smoothing']} "
                            "regularises only the single-label model; set it to 0")
    if problems:
        raise DesignError("not a controlled comparison: " + "; ".join(dict.fromkeys(problems)))
    return {"controlled": True, "pairs": sorted(set(pairs)), "allowed_differences": list(ALLOWED_DIFFERENCES),
            "selection": sorted(rules)[0] if rules else None}
