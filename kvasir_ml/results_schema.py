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


M = TypeVar("M", bound=_Versioned)
CURRENT_VERSION: dict[type, int] = {MetricsFile: METRICS_VERSION}


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
    version, current = raw.get("schema_version", 1), CURRENT_VERSION[model]
    if isinstance(version, int) and not isinstance(version, bool) and version > current:
        raise ResultsError(f"{origin}: schema_version {version} is newer than this kvasir_ml reads "
                           f"({current}); update kvasir_ml")
    try:
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
