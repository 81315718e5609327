"""Typed result files: ``metrics.json``, ``comparison.json`` and prediction records.

Each file is one pydantic model beside the canonical-file schema (``data/canonical_schema.py``).
Writers build the model and dump it (``write_result``); readers load through it
(``read_result``) and use attributes. The fields every reader relies on are declared and
typed; everything else a writer adds (per-class tables, calibration detail, provenance) is
kept as an extra key (``extra="allow"``), so a new field never breaks an old reader.

Versions: every file carries ``schema_version``. A file written before the field existed
has the same shape as version 1 and loads as version 1. A file whose version is newer than
this code knows is refused, naming the file, rather than half read. A malformed file is
refused with its name, the field at fault and what was found, e.g.::

    runs/a/metrics.json: test.macro_ap: Input should be a valid number (got 'high')

The JSON Schemas of these models are exported to ``docs/schemas/`` by
``scripts/export_schemas.py`` (a test checks the committed files are current).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kvasir_ml.io import atomic_write_json, read_json

METRICS_VERSION = 1


class ResultsError(ValueError):
    """A result file is malformed or from a newer schema; the message names the file and field."""


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    def get(self, key: str, default: Any = None) -> Any:
        """A declared or extra field by name (``default`` when absent or None): for loops over
        metric names such as ``CLASSIFIER_METRICS``."""
        value = getattr(self, key, None)
        return default if value is None else value


class _Versioned(_Result):
    schema_version: int = Field(1, description="the file's schema version; absent in files written before it existed "
                                "(they load as version 1)")


Score = float | None  # a metric; None where it is undefined (e.g. AP of a label without positives)


class SplitMetrics(_Result):
    """One scored subset (``test``, ``val``, ``all``, ``test_tta``, ...) of a classifier or detector."""

    n_images: int | None = None
    # classifier (both tasks are scored for every classifier)
    macro_ap: Score = None
    micro_ap: Score = None
    macro_f1: Score = None
    subset_accuracy: Score = None
    hamming_loss: Score = None
    top1: Score = None
    mcc: Score = None
    singlelabel_macro_f1: Score = None
    ece: Score = None
    ece_uncalibrated: Score = None
    thresholds: list[float] | None = Field(None, description="per label, in label_names order (val-tuned)")
    per_class: dict[str, dict[str, Any]] = Field(default_factory=dict, description="label -> {ap, f1, threshold, "
                                                 "support, ...}")
    class_names: list[str] | None = None
    confusion: list[list[int]] | None = Field(None, description="source-class confusion, rows = truth")
    calibration: dict[str, Any] | None = None
    # detector
    coco_ap: Score = None
    coco_ap50: Score = None
    coco_ap75: Score = None
    ultralytics_map50: Score = None
    ultralytics_map50_95: Score = None
    per_class_ap: dict[str, Score] = Field(default_factory=dict)
    per_class_ap50: dict[str, Score] = Field(default_factory=dict)


class GroundTruth(_Result):
    """What test was scored against (``eval.ground_truth``): folder or verified labels."""

    kind: str = "folder"
    n_test_images: int | None = None
    n_test_left_out: int = 0


class Selection(_Result):
    """The checkpoint selection rule and the epoch it chose."""

    rule: str = "val_macro_ap"  # runs written before the rule existed selected on val macro AP
    description: str | None = None
    epoch: int | None = None


class Evaluated(_Result):
    """``kvasir-ml eval``: which checkpoint was scored on what."""

    checkpoint: str
    checkpoint_sha256: str | None = None
    canonical: str
    canonical_sha256: str | None = None
    root: str | None = None
    own_data: bool = False
    split: str | None = None
    subset: Literal["test", "val", "all"]


class MetricsFile(_Versioned):
    """``metrics.json`` of a training run or of ``kvasir-ml eval`` (then with ``evaluated``)."""

    kind: Literal["classifier", "detector"] = "classifier"
    task: str | None = Field(None, description="multilabel, singlelabel or detection")
    model: str | None = None
    inset_mode: str | None = None
    seed: int | None = None
    dataset: str | None = None
    split_sha256: str | None = None
    device: str | None = None
    best_epoch: int | None = None
    imgsz: int | None = None
    n_images: dict[str, int] = Field(default_factory=dict, description="images per scored subset")
    n_boxes: dict[str, int] | None = None
    ground_truth: GroundTruth | None = None
    label_names: list[str] | None = None
    class_names: list[str] | None = None
    selection: Selection | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, description="one entry per epoch")
    val: SplitMetrics | None = None
    test: SplitMetrics | None = None
    all: SplitMetrics | None = None
    val_tta: SplitMetrics | None = None
    test_tta: SplitMetrics | None = None
    evaluated: Evaluated | None = None
    epoch_time_s_mean: float | None = None

    def scored(self, subset: str) -> SplitMetrics:
        """The metrics of ``subset`` (``test``, ``val``, ``all``, ...); KeyError when not scored."""
        found = getattr(self, subset, None)
        if not isinstance(found, SplitMetrics):
            raise KeyError(f"no {subset!r} metrics")
        return found


class Aggregate(_Result):
    """One metric over a variant's seeds: ``mean`` and ``std`` (sample, ddof=1) of the defined values."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    values: list[float | None] = Field(default_factory=list, description="per run, in the variant's seed order")


class HardPair(_Result):
    """Mutual confusion of two source classes, over a variant's seeds."""

    a: str
    b: str
    n_runs: int
    a_as_b: Aggregate
    b_as_a: Aggregate
    rate: Aggregate
    matrix_sum: list[list[int]]
    support_a: int | None = None
    support_b: int | None = None


class Variant(_Result):
    """One model variant (``<task>-<inset mode>`` or ``detector-<inset mode>``) over its seeds."""

    name: str
    kind: Literal["classifier", "detector"]
    task: str | None = None
    inset_mode: str | None = None
    model: str | None = None
    n_seeds: int
    seeds: list[int | None]
    run_dirs: list[str]
    split_sha256: list[str] = Field(default_factory=list)
    test: dict[str, Aggregate]
    test_tta: dict[str, Aggregate] | None = None
    selection: list[str] = Field(default_factory=list)
    per_class_ap: dict[str, Aggregate] = Field(default_factory=dict)
    confusion_sum: list[list[int]] | None = None
    hard_pairs: dict[str, HardPair] = Field(default_factory=dict)

    def scored(self, key: str) -> dict[str, Aggregate] | None:
        """``test`` or ``test_tta`` (None when the variant has no such section)."""
        return self.test if key == "test" else self.test_tta if key == "test_tta" else None


# pair name -> metric -> paired-bootstrap result (``evaluation.bootstrap.paired_bootstrap``:
# diff, ci95, ci95_images, star, verdict, n_seeds, seeds_needed, per_seed, ...)
PairedSection = dict[str, dict[str, dict[str, Any]]]
COMPARISON_VERSION = 2


class ComparisonFile(_Versioned):
    """``comparison.json``: runs grouped into variants, test metrics over seeds, paired intervals."""

    schema_version: int = COMPARISON_VERSION
    format_version: int | None = Field(None, description="the version's former name, still written for old readers")
    metrics: list[str] = Field(description="the classifier table's columns")
    detector_metrics: list[str] = Field(default_factory=list)
    std: str | None = None
    datasets: list[str] = Field(default_factory=list)
    split_sha256: list[str] = Field(default_factory=list)
    same_split: bool = True
    ground_truth: dict[str, Any] | None = None
    hard_pairs: list[list[str]] = Field(default_factory=list)
    hard_pairs_missing: list[str] = Field(default_factory=list)
    label_names: list[str] | None = None
    class_names: list[str] | None = None
    chance: dict[str, float | None] | None = None
    variants: dict[str, Variant]
    paired: PairedSection = Field(default_factory=dict)
    inset_ablation: PairedSection = Field(default_factory=dict)
    paired_tta: PairedSection = Field(default_factory=dict)
    inset_ablation_tta: PairedSection = Field(default_factory=dict)
    aa_control: dict[str, Any] | None = None
    paired_bootstrap: dict[str, Any] | None = None
    design: dict[str, Any] = Field(default_factory=dict)
    plots: dict[str, str] = Field(default_factory=dict)
    experiment: str | None = None
    group: str | None = None

    def variants_of(self, kind: str) -> list[Variant]:
        return [v for v in self.variants.values() if v.kind == kind]

    def section(self, name: str) -> PairedSection:
        """A paired section by name (``paired``, ``inset_ablation`` or their ``_tta`` twins)."""
        return getattr(self, name) or {}


M = TypeVar("M", bound=_Versioned)
CURRENT_VERSION: dict[type, int] = {MetricsFile: METRICS_VERSION, ComparisonFile: COMPARISON_VERSION}


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "top level"
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        out.append(f"{field}: {err['msg'].removeprefix('Value error, ')} (got {got})")
    return out


def parse_result(model: type[M], raw: Any, origin: str) -> M:
    """Validate parsed JSON as ``model``; ``origin`` (the file name) is named in every error.

    Raises:
        ResultsError: not an object, a version newer than this code, or fields of the wrong
            type (each named, with what was found).
    """
    if not isinstance(raw, dict):
        raise ResultsError(f"{origin}: top level must be a JSON object, got {type(raw).__name__}")
    # comparison.json named its version format_version before schema_version existed
    version, current = raw.get("schema_version", raw.get("format_version", 1)), CURRENT_VERSION[model]
    if isinstance(version, int) and not isinstance(version, bool) and version > current:
        raise ResultsError(f"{origin}: schema_version {version} is newer than this kvasir_ml reads "
                           f"({current}); update kvasir_ml")
    try:
        if "schema_version" not in raw and isinstance(version, int):
            raw = {**raw, "schema_version": version}
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc)
        raise ResultsError(f"{origin}: " + f"\n{origin}: ".join(problems)) from None


def read_result(model: type[M], path: str | Path) -> M:
    """Read a result file (``read_json``: strict JSON, errors name the file) as ``model``."""
    return parse_result(model, read_json(path), str(path))


def dump_result(result: _Versioned) -> dict[str, Any]:
    """The JSON body of a result: what the writer set, ``schema_version`` always included.
    Python-mode dump: floats stay floats (a JSON-mode dump would turn NaN into null)."""
    return {"schema_version": result.schema_version, **result.model_dump(exclude_unset=True)}


def write_result(path: str | Path, result: _Versioned, keep_backup: bool = False) -> Path:
    """Write ``result`` as JSON atomically (``keep_backup``: the file it replaces is kept aside)."""
    atomic_write_json(path, dump_result(result), keep_backup=keep_backup)
    return Path(path)


def read_metrics(path: str | Path) -> MetricsFile:
    """``metrics.json`` as a ``MetricsFile`` (raises ``ResultsError`` naming the file and field)."""
    return read_result(MetricsFile, path)


def write_metrics(path: str | Path, metrics: MetricsFile | dict[str, Any]) -> MetricsFile:
    """Validate ``metrics`` (a dict is checked as ``MetricsFile``) and write it to ``path``."""
    model = metrics if isinstance(metrics, MetricsFile) else parse_result(MetricsFile, metrics, str(path))
    write_result(path, model)
    return model


def as_comparison(comparison: ComparisonFile | dict[str, Any], origin: str = "comparison") -> ComparisonFile:
    """``compare_runs``' dict (or a loaded file) as a ``ComparisonFile``."""
    return comparison if isinstance(comparison, ComparisonFile) else parse_result(ComparisonFile, comparison, origin)


def read_comparison(path: str | Path) -> ComparisonFile:
    """``comparison.json`` as a ``ComparisonFile`` (raises ``ResultsError`` naming the file and field)."""
    return read_result(ComparisonFile, path)


PREDICTION_VERSION = 1


class InsetPrediction(_Result):
    state: str
    box_xywh_px: list[float] | None = None


class SourceClassPrediction(_Result):
    name: str
    score: float


class BoxPrediction(_Result):
    class_: str = Field(alias="class")
    score: float
    xywh_px: list[float]


class PredictionRecord(_Versioned):
    """One image's line of ``kvasir-ml predict`` output (JSON Lines, or an entry of its JSON list).
    A failed image has ``error`` and only what was known before it failed."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    image: str
    width: int | None = None
    height: int | None = None
    inset: InsetPrediction | None = None
    labels: dict[str, float] = Field(default_factory=dict, description="every label's calibrated score")
    predicted_labels: list[str] = Field(default_factory=list, description="labels at or above their threshold")
    source_class: SourceClassPrediction | None = Field(None, description="the decoded source class")
    boxes: list[BoxPrediction] = Field(default_factory=list)
    error: str | None = None
    model_version: str | None = None


CURRENT_VERSION[PredictionRecord] = PREDICTION_VERSION


def dump_prediction(entry: PredictionRecord | dict[str, Any]) -> dict[str, Any]:
    """A prediction's JSON body, checked as ``PredictionRecord``, ``schema_version`` first."""
    record = entry if isinstance(entry, PredictionRecord) else parse_result(PredictionRecord, entry, "prediction")
    return {"schema_version": record.schema_version, **record.model_dump(exclude_unset=True, by_alias=True)}


def prediction_line(entry: PredictionRecord | dict[str, Any]) -> str:
    """One JSON Lines line (newline included) for a prediction, checked as ``PredictionRecord``."""
    import json

    return json.dumps(dump_prediction(entry), ensure_ascii=False) + "\n"
