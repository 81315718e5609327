"""The comparison experiment config: which variants, which seeds, which data, one split.

Sections mirror ``configs/experiment_compare*.yaml`` (every key there carries a ``# (type)
description`` comment). Unknown keys raise (``StrictModel``). A model variant is a
(task, inset mode) pair; every variant is trained once per seed from its task's base
classifier config, and the experiment pins what must be shared for the comparison to be
fair: the dataset, the frozen split, the image cache, the seed list and the W&B group.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from kvasir_ml.config import DatasetConfig, Seed, StrictModel, TrackingConfig, load_config
from kvasir_ml.models.config import InsetMode, Task

# Source-class pairs the Kvasir article reports as most often confused.
DEFAULT_HARD_PAIRS = (("esophagitis", "normal-z-line"), ("dyed-lifted-polyps", "dyed-resection-margins"))


class ExperimentDataConfig(DatasetConfig):
    """The one dataset and the one split (frozen into <out>/split.json) every run of the experiment uses."""

    cache_dir: str | None = Field(None, description="decoded image cache shared by all runs; null = <out>/cache")

    @model_validator(mode="after")
    def _fractions_positive(self) -> "ExperimentDataConfig":
        # every run is scored on val and test, so no split may be empty
        if min(self.fractions) <= 0:
            raise ValueError(f"data.fractions must be 3 positive numbers summing to 1, got {self.fractions}")
        return self


class ExperimentConfig(StrictModel):
    """Everything one comparison experiment needs."""

    name: str = Field("multilabel-vs-singlelabel", description="experiment name (the W&B group by default)")
    data: ExperimentDataConfig = ExperimentDataConfig()
    base_configs: dict[Task, str] = Field(
        {"multilabel": "configs/classifier_multilabel_resnet50.yaml",
         "singlelabel": "configs/classifier_singlelabel_resnet50.yaml"},
        description="base classifier config per task (a file, or a shipped config's name)")
    variants: dict[Task, list[InsetMode]] = Field(
        {"multilabel": ["raw", "masked", "branch"], "singlelabel": ["raw", "masked", "branch"]},
        description="task -> inset modes to train; each (task, inset mode) pair is one model variant; multi vs "
                    "single is compared within one inset mode, other modes against masked (the inset ablation)")
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1,
                             description="training seeds (runtime.seed); every variant is trained once per seed")
    overrides: list[str] = Field([], description="key=value overrides applied to every run, after its base config")
    skip_finished: bool = Field(True, description="reuse runs whose folder already holds metrics.json (after a "
                                                  "config check); continue an interrupted experiment")
    hard_pairs: list[tuple[str, str]] = Field([(a, b) for a, b in DEFAULT_HARD_PAIRS],
                                              description="source-class pairs whose confusion the report shows")
    tracking: TrackingConfig = Field(TrackingConfig(), description="W&B settings given to every run; group "
                                                                   "defaults to the experiment's name")
    bootstrap_resamples: int = Field(
        2000, ge=0, description="paired-bootstrap resamples of the test images for the intervals of each "
                                "multi- vs single-label difference (0: no intervals)")
    bootstrap_seed: Seed = Field(0, description="seed of the bootstrap resampling (the intervals are reproducible)")
    label_subsets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="named label subsets whose macro AP the paired sections add as macro_ap[<name>], e.g. "
                    "{cooccurring: [polyp, dyed, ulcerative-colitis]}")

    @model_validator(mode="after")
    def _check(self) -> "ExperimentConfig":
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if not any(self.variants.values()):
            raise ValueError("variants: no (task, inset mode) pair to train")
        missing = [t for t, modes in self.variants.items() if modes and t not in self.base_configs]
        if missing:
            raise ValueError(f"base_configs has no config for task(s) {missing}")
        return self

    @property
    def group(self) -> str:
        return self.tracking.group or self.name


def load_experiment_config(path: str | Path | None = None,
                           overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load ``configs/experiment_compare*.yaml`` plus ``key=value`` overrides (unknown keys raise ConfigError)."""
    return load_config(ExperimentConfig, path, overrides)
