"""``run_comparison(cfg, out_dir)``: one dataset, one frozen split, every variant x seed, one report.

The experiment folder::

    experiment.yaml         the resolved ExperimentConfig
    data/                   the synthetic dataset (only when data.canonical is synthetic)
    split.json              the frozen split every run uses (made once, then reused)
    cache/                  decoded images shared by all runs (unless data.cache_dir)
    runs/<variant>/seed<N>/ one run folder per variant and seed (classifier or detector)
    comparison.json  comparison.md  plots/*.png
    wandb/                  the W&B ``compare`` run (same group as the training runs)

Re-running the same experiment skips finished runs (``skip_finished``) after checking that
their saved config is the one this experiment would train, and resumes interrupted ones
from ``checkpoints/last.pt``; so a long GPU experiment can be continued after a crash.

Under ``torchrun`` (classifier runs in DDP) every rank calls ``run_comparison``: rank 0 alone
writes (experiment config, data, split, report) and decides which runs to skip or resume;
detector runs train on rank 0 while the others wait.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import BaseModel
from tqdm.auto import tqdm

from kvasir_ml.config import TrackingConfig, dump_config
from kvasir_ml.experiment.compare import RunRecord, compare_runs, load_run, pooled_predictions
from kvasir_ml.evaluation.bootstrap import DEFAULT_RESAMPLES
from kvasir_ml.experiment.config import ExperimentConfig, ExperimentDataConfig
from kvasir_ml.experiment.design import DesignError, check_controlled
from kvasir_ml.experiment.report import log_comparison_run, write_report
from kvasir_ml.io import atomic_write_text, read_yaml
from kvasir_ml.rundir import config_differences

log = logging.getLogger(__name__)


class ExperimentError(ValueError):
    """The experiment cannot go on (a stale run folder, a split mismatch); the message says which."""


@dataclass
class ExperimentData:
    """The shared inputs of every run of one experiment."""

    canonical: Path
    root: Path
    split_file: Path
    split_sha256: str
    cache_dir: Path


@dataclass
class PlannedRun:
    """One run to train: its variant, seed, folder and fully resolved config."""

    variant: str
    seed: int
    run_dir: Path
    config: BaseModel  # ClassifierConfig or DetectorConfig
    kind: str = "classifier"


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given if it exists, else the shipped config of that name.

    Raises:
        ExperimentError: found in neither place.
    """
    from kvasir_ml.resources import find_config

    found = find_config(path)
    if found is None:
        raise ExperimentError(f"base config {path} not found (looked in {Path.cwd()} and the shipped configs)")
    return found


def prepare_experiment_data(data: ExperimentDataConfig, out_dir: Path, may_write: bool = True) -> ExperimentData:
    """Canonical file (synthesized into ``out_dir/data`` if asked) and the frozen split.

    The split is made (or copied from ``data.split_file``) once into ``out_dir/split.json``;
    later calls reuse it, so every run of the experiment sees the same images.

    Raises:
        DatasetError: a missing canonical file, or ``data.split_file`` naming unknown images
            or differing from the split the experiment folder already froze.
    """
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.resolve import resolve_dataset, resolve_split

    canonical, root = resolve_dataset(data, out_dir, may_write)
    split = resolve_split(load_canonical(canonical), data, out_dir, may_write)
    split_path = out_dir / "split.json"
    cache_dir = Path(data.cache_dir) if data.cache_dir else out_dir / "cache"
    return ExperimentData(canonical.resolve(), root.resolve(), split_path.resolve(), split.sha256, cache_dir.resolve())


def _shared_fields(data: ExperimentData) -> dict[str, Any]:
    return {"canonical": str(data.canonical), "root": str(data.root), "split_file": str(data.split_file)}


def _run_tracking(base: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """A run's tracking section: the experiment decides mode, project, entity, group and dir;
    the base config keeps log_model and n_sample_images."""
    t = cfg.tracking
    return {**base, "mode": t.mode, "project": t.project, "entity": t.entity, "group": cfg.group,
            "tags": list(dict.fromkeys([*base.get("tags", []), *t.tags])), "dir": t.dir}


def plan_classifier_runs(cfg: ExperimentConfig, data: ExperimentData, out_dir: Path) -> list[PlannedRun]:
    """One ``PlannedRun`` per (task, inset mode, seed), configs resolved from the base configs."""
    from kvasir_ml.train.config import ClassifierConfig, load_classifier_config

    planned = []
    for task, modes in cfg.variants.items():
        base = dump_config(load_classifier_config(resolve_config_path(cfg.base_configs[task]), cfg.overrides))
        for mode in modes:
            variant = f"{task}-{mode}"
            for seed in cfg.seeds:
                raw = copy.deepcopy(base)
                raw["name"] = variant
                raw["data"].update(_shared_fields(data), cache_dir=str(data.cache_dir))
                raw["model"].update(task=task, inset_mode=mode)
                raw["runtime"]["seed"] = seed
                raw["tracking"] = _run_tracking(raw["tracking"], cfg)
                planned.append(PlannedRun(variant, seed, out_dir / "runs" / variant / f"seed{seed}",
                                          ClassifierConfig.model_validate(raw)))
    return planned


def plan_detector_run(config_path: str | Path, overrides: Sequence[str], cfg: ExperimentConfig,
                      data: ExperimentData, out_dir: Path, seed: int = 0) -> PlannedRun:
    """A detector run on the experiment's data and split (variant ``detector-<inset mode>``)."""
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig

    raw = dump_config(load_config(DetectorConfig, resolve_config_path(config_path), list(overrides)))
    raw["data"].update(_shared_fields(data))
    raw["train"]["seed"] = seed
    raw["tracking"] = _run_tracking(raw["tracking"], cfg)
    det = DetectorConfig.model_validate(raw)
    variant = f"detector-{det.data.inset_mode}"
    return PlannedRun(variant, seed, out_dir / "runs" / variant / f"seed{seed}", det, kind="detector")


def _check_finished(run: PlannedRun) -> None:
    saved_path = run.run_dir / "config.yaml"
    saved = read_yaml(saved_path) if saved_path.is_file() else {}
    diffs = config_differences(dump_config(run.config), saved or {})
    if diffs:
        raise ExperimentError(f"{run.run_dir} holds a finished run whose config differs from this experiment's "
                              f"in {', '.join(diffs[:8])}; use a new experiment folder or remove that run")


def train_runs(planned: Sequence[PlannedRun], skip_finished: bool = True, progress: bool = True) -> list[Path]:
    """Train the planned runs in order (finished ones skipped, interrupted classifiers resumed).

    Returns:
        The run folders, in plan order.

    Raises:
        ExperimentError: a finished run trained with another config.
        RunDirError: a run folder exists but is neither finished nor resumable.
    """
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.train import distributed as ddp
    from kvasir_ml.train.run import train_classifier

    rank, world = ddp.join_process_group()
    bar = tqdm(planned, desc="experiment", unit="run", disable=not progress or rank != 0)
    for run in bar:
        bar.set_postfix_str(f"{run.variant} seed {run.seed}")
        # Rank 0 decides from the files it wrote (an error is raised on every rank); all act on it.
        if ddp.on_rank0(lambda: _skip_finished(run, skip_finished), rank, world):
            continue
        if run.kind == "detector":
            if rank == 0:  # ultralytics runs its own DDP; one process trains it here
                train_detector(run.config, run.run_dir)
            ddp.barrier(world)
        else:
            resume = ddp.broadcast_from_rank0((run.run_dir / "checkpoints" / "last.pt").is_file(), world)
            train_classifier(run.config, run.run_dir, resume=resume)
    bar.close()
    return [run.run_dir for run in planned]


def _skip_finished(run: PlannedRun, skip_finished: bool) -> bool:
    """Whether to skip the run: a finished run is reused when its config is this experiment's.

    Raises:
        ExperimentError: a finished run trained with another config.
    """
    if not (skip_finished and (run.run_dir / "metrics.json").is_file()):
        return False
    _check_finished(run)
    log.info("%s: finished earlier, reused", run.run_dir)
    return True


def report_records(records: Sequence[RunRecord], out_dir: str | Path, name: str, tracking: TrackingConfig,
                   hard_pairs: Sequence[tuple[str, str]], title: str = "Multi-label vs single-label",
                   n_resamples: int = DEFAULT_RESAMPLES, bootstrap_seed: int = 0,
                   label_subsets: Mapping[str, Sequence[str]] | None = None,
                   design: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare finished runs, write the report into ``out_dir`` and log the W&B compare run.

    Args:
        records: finished runs (``load_run`` / ``load_runs``).
        out_dir: where comparison.json/.md and plots/ go.
        name: experiment name (W&B run ``<name>-compare``).
        tracking: tracking config of the compare run (its group should be the runs' group).
        hard_pairs: source-class pairs for the confusion section.
        title: the Markdown title.
        n_resamples, bootstrap_seed, label_subsets: paired-bootstrap settings (``compare_runs``).
        design: what ``design.check_controlled`` found (recorded as ``comparison["design"]``); None =
            check the runs' own configs (runs gathered by hand).

    Returns:
        ``{"comparison": dict, "paths": {key: Path}, "wandb_dir": Path | None}``.
    """
    out_dir = Path(out_dir)
    comparison = compare_runs(records, hard_pairs, n_resamples, bootstrap_seed, label_subsets, design)
    comparison["experiment"] = name
    comparison["group"] = tracking.group
    curves, labels = pooled_predictions(records)
    paths = write_report(comparison, out_dir, title, curves, labels)
    wandb_dir = log_comparison_run(comparison, tracking, out_dir, name, paths)
    return {"comparison": comparison, "paths": paths, "wandb_dir": wandb_dir}


def save_experiment_config(cfg: ExperimentConfig, out_dir: Path) -> None:
    path = out_dir / "experiment.yaml"
    text = yaml.safe_dump(dump_config(cfg), sort_keys=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text, keep_backup=True)


def run_comparison(cfg: ExperimentConfig, out_dir: str | Path, progress: bool = True,
                   extra_runs: Sequence[PlannedRun] = ()) -> dict[str, Any]:
    """Train every variant for every seed on one frozen split, then write the comparison.

    Args:
        cfg: the experiment config.
        out_dir: the experiment folder (created; reused to continue an experiment).
        progress: a progress bar over the runs (each run's own bars follow its config).
        extra_runs: more runs on the same data (e.g. the quickstart's detector), trained
            after the classifiers and included in the report.

    Returns:
        What ``report_records`` returns, plus ``"data"`` (``ExperimentData``) and ``"run_dirs"``
        (on non-zero torchrun ranks ``comparison`` is None: rank 0 writes the report).

    Raises:
        ExperimentError: stale run folders, a split that is not the experiment's, or runs that would
            not make a controlled comparison (``design.check_controlled``).
    """
    from kvasir_ml.train import distributed as ddp

    out_dir = Path(out_dir)
    rank, world = ddp.join_process_group()  # under torchrun: rank 0 alone writes
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_experiment_config(cfg, out_dir)
    data = ddp.rank0_first(lambda may_write: prepare_experiment_data(cfg.data, out_dir, may_write), rank, world)
    planned = [*plan_classifier_runs(cfg, data, out_dir), *extra_runs]
    try:
        design = check_controlled(planned)
    except DesignError as exc:
        raise ExperimentError(str(exc)) from None
    run_dirs = train_runs(planned, cfg.skip_finished, progress)
    reported: list[dict[str, Any]] = []

    def report() -> None:
        tracking = cfg.tracking.model_copy(update={"group": cfg.group})
        result = report_records([load_run(d) for d in run_dirs], out_dir, cfg.name, tracking, cfg.hard_pairs,
                                title=f"Multi-label vs single-label: {cfg.name}", n_resamples=cfg.bootstrap_resamples,
                                bootstrap_seed=cfg.bootstrap_seed, label_subsets=cfg.label_subsets, design=design)
        if result["comparison"]["split_sha256"] != [data.split_sha256]:
            raise ExperimentError(f"{out_dir}: runs report splits {result['comparison']['split_sha256']}, "
                                  f"expected only the frozen {data.split_sha256}")
        reported.append(result)

    # Rank 0 reports while the others wait, so every rank leaves the process group together (a rank
    # that left early aborted at exit now and then under gloo) and a report error is raised on all.
    ddp.on_rank0(report, rank, world)
    if rank != 0:
        return {"comparison": None, "paths": {}, "wandb_dir": None, "data": data, "run_dirs": run_dirs}
    return {**reported[0], "data": data, "run_dirs": run_dirs}
