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


def _problems(runs: dict[tuple[str, Any], dict[str, Any]]) -> tuple[list[str], list[str], set[str]]:
    """(pairs, problems, selection rules) of dumped classifier configs keyed by (variant, seed).

    The multi-label run of a seed is checked against the single-label run of the same seed
    and inset mode; without one (runs gathered by hand), against every single-label run of
    that mode, the training seed then left out of the check.
    """
    rules = {r for cfg in runs.values() if (r := (cfg.get("eval") or {}).get("select")) is not None}
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
        mode = variant.split("-", 1)[1]
        same_seed = runs.get((f"singlelabel-{mode}", seed))
        partners = [(seed, same_seed)] if same_seed is not None else \
            [(s, cfg) for (v, s), cfg in runs.items() if v == f"singlelabel-{mode}"]
        for other_seed, single in partners:
            pairs.append(f"{variant}-vs-singlelabel-{mode}")
            free = ALLOWED_DIFFERENCES if other_seed == seed else (*ALLOWED_DIFFERENCES, "runtime.seed")
            diffs = run_config_differences(multi, single, free)
            if diffs:
                problems.append(f"{variant} seed {seed} vs singlelabel-{mode} seed {other_seed}: configs differ in "
                                f"{', '.join(diffs)}")
            if (single.get("loss") or {}).get("label_smoothing", 0) > 0:
                problems.append(f"singlelabel seed {other_seed}: loss.label_smoothing="
                                f"{single['loss']['label_smoothing']} regularises only the single-label model; "
                                "set it to 0")
        if (multi.get("loss") or {}).get("name") == "asl":
            problems.append(f"{variant} seed {seed}: loss.name=asl gives scores that are not calibrated "
                            "probabilities, so the label-set decoding behind the multi-label model's top-1, MCC "
                            "and confusion matrices is biased; use bce")
    return sorted(set(pairs)), list(dict.fromkeys(problems)), rules


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
    pairs, problems, rules = _problems(runs)
    if problems:
        raise DesignError("not a controlled comparison: " + "; ".join(problems))
    return {"controlled": True, "pairs": pairs, "allowed_differences": list(ALLOWED_DIFFERENCES),
            "selection": sorted(rules)[0] if rules else None}


def design_of_runs(runs: Sequence[tuple[str, Any, dict[str, Any] | None, str]]) -> dict[str, Any]:
    """The same check on finished runs gathered by hand (``kvasir-ml runs compare``); never raises.

    Args:
        runs: ``(variant, seed, dumped config or None, source)`` per classifier run.

    Returns:
        ``{"controlled": bool, "pairs", "differences": [what is not like for like], "allowed_differences",
        "selection"}``; ``controlled`` is False when a pair's configs differ, a rule above is broken,
        or a paired run's config is unknown (no config.yaml, or a W&B run without one).
    """
    task_variants = {v for v, _, _, _ in runs}
    paired_modes = {v.split("-", 1)[1] for v in task_variants if v.startswith("multilabel-")
                    and "singlelabel-" + v.split("-", 1)[1] in task_variants}
    missing = [f"{src}: no config to check the design with" for v, _, cfg, src in runs
               if cfg is None and v.split("-", 1)[-1] in paired_modes]
    known = {(v, s): cfg for v, s, cfg, _ in runs if cfg is not None}
    pairs, problems, rules = _problems(known)
    differences = [*missing, *problems]
    return {"controlled": not differences, "pairs": pairs, "differences": differences,
            "allowed_differences": list(ALLOWED_DIFFERENCES), "selection": sorted(rules)[0] if len(rules) == 1 else None}
