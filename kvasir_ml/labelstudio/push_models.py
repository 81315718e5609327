"""Push a canonical dataset with the models' pre-annotations: from a ``kvasir-ml predict`` file or
straight from checkpoints, under one ``model_version``. ``ls push`` and one turn of ``loop`` both
call ``push_with_predictions``; the model_version rule lives here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.client import LSClient
from kvasir_ml.labelstudio.convert import Problem
from kvasir_ml.labelstudio.sync import (
    PushReport, match_predictions, model_version_for, predictions_from_checkpoints, push_dataset,
)
from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES


def read_prediction_file(path: str | Path) -> tuple[list[Any], str]:
    """The entries of a ``kvasir-ml predict`` file (JSON list, or ``.jsonl``) and their model_version.

    The version is the one ``predict`` stamped on every entry (the checkpoints' version: pushing the
    file or the same checkpoints directly gives one version, never two copies of one model), else
    ``predictions-<first 8 hex of the file's sha256>``.

    Raises:
        ValueError: the file is not a list of entries (naming it).
    """
    from kvasir_ml.io import read_json, sha256_file

    if str(path).endswith(".jsonl"):  # `kvasir-ml predict --out FILE.jsonl`
        from kvasir_ml.inference.stream import read_predictions

        # checked record by record (file, line and field named), then handed on as the entries they were
        entries = [r.model_dump(exclude_unset=True, by_alias=True) for r in read_predictions(path)]
    else:
        entries = read_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of prediction entries")
    stamped = {e.get("model_version") for e in entries if isinstance(e, dict)}
    version = stamped.pop() if len(stamped) == 1 and None not in stamped else f"predictions-{sha256_file(path)[:8]}"
    return entries, str(version)


def push_with_predictions(
    client: LSClient, dataset: CanonicalDataset, data_root: str | Path, project: str | int,
    predictions_file: str | Path | None = None, classifier: str | Path | None = None,
    detector: str | Path | None = None, model_version: str | None = None, device: str = "auto",
    trust_detector: bool = False, conf: float | None = PRELABEL_CONF, max_boxes: int = PRELABEL_MAX_BOXES,
    batch_size: int = 1000, expert_version: str | None = None,
) -> PushReport:
    """``push_dataset`` with pre-annotations from a predictions file or from checkpoints (or none).

    Args:
        predictions_file: a ``kvasir-ml predict`` output (``read_prediction_file``); not with checkpoints.
        classifier, detector: checkpoints run on every image (``predictions_from_checkpoints``).
        model_version: the pre-annotations' name; default the file's stamp or the checkpoints' version.
        device, trust_detector, conf, max_boxes: as ``predictions_from_checkpoints``.
        batch_size, expert_version: as ``push_dataset``.

    Returns:
        The push report; its ``model_version`` is the version pushed (None without predictions), and
        predictions that match no image of the dataset are among its problems (warnings).

    Raises:
        ValueError: both a predictions file and checkpoints.
    """
    if predictions_file and (classifier or detector):
        raise ValueError("give either --predictions (a file from `kvasir-ml predict`) or --classifier/--detector, "
                         "not both: the same model would be pushed twice under two versions")
    data_root = Path(data_root)
    entries: list[Any] | None = None
    if predictions_file:
        entries, stamped = read_prediction_file(predictions_file)
        model_version = model_version or stamped
    elif classifier or detector:
        entries = predictions_from_checkpoints(dataset, data_root, classifier, detector, device,
                                               trust_detector=trust_detector, conf=conf, max_boxes=max_boxes)
        model_version = model_version or model_version_for(classifier, detector)
    predictions: dict[str, dict] | None = None
    problems: list[Problem] = []
    if entries is not None:
        predictions, problems = match_predictions(entries, data_root, {img["file_name"] for img in dataset.images})
    report = push_dataset(client, dataset, data_root, project, predictions=predictions,
                          model_version=model_version if entries is not None else None, batch_size=batch_size,
                          expert_version=expert_version)
    report.problems = problems + report.problems
    report.model_version = model_version if entries is not None else None
    return report
