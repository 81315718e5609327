"""Pure converters between canonical entries and Label Studio tasks, results and predictions.

Label Studio rectangles are ``x, y, width, height`` in percent of the original image, with
``original_width/height`` beside them; canonical boxes are ``x, y, w, h`` in pixels. Both
directions go through ``kvasir_ml.geometry`` so the conversion is written once and is
exact up to float rounding (round trip well within 0.01 px).

Class ids never come from Label Studio: boxes and labels travel by *name* and are mapped
to ids with the taxonomy's fixed order.

Rules for bad regions (each yields a ``Problem`` naming the task):

* rotated rectangle (``rotation`` not 0 mod 360) — rejected (the canonical file holds
  axis-aligned boxes only; the labeling config disables rotation);
* rectangle partly outside the image — clipped with a warning when at least
  ``MIN_INSIDE_FRACTION`` (half) of its area lies inside, rejected otherwise;
  overshoot within 0.5 px (rounding) is clipped silently;
* unknown box class, label or inset state — rejected;
* no ``original_width/height`` — the image size known from the canonical file or the
  image itself is used (warning); with neither, rejected.

A rejected region makes the whole annotation unusable (error); the caller keeps the
image's previous state and reports it, so a half-converted annotation never becomes
ground truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence, TypeGuard
from urllib.parse import parse_qs, quote, urlparse

from kvasir_ml.geometry import (
    clip_xywh_px, inside_fraction_xywh_px, outside_image_xywh_px, xywh_pct_to_xywh_px, xywh_px_to_xywh_pct,
)
from kvasir_ml.io import UnsafePathError
from kvasir_ml.io import safe_relative_path as io_safe_relative_path
from kvasir_ml.labelstudio.labeling_config import BOXES_NAME, IMAGE_KEY, IMAGE_NAME, INSET_NAME, LABELS_NAME
from kvasir_ml.labelstudio.uncertainty import frame_confidence
from kvasir_ml.taxonomy import Taxonomy

LOCAL_FILES_PREFIX = "/data/local-files/?d="
MIN_INSIDE_FRACTION = 0.5
MIN_BOX_SIDE_PX = 1.0  # a box narrower or lower than one pixel is a slip, not an object (e.g. width 1e-9 %)
_BORDER_TOLERANCE_PX = 0.5


class ConvertError(ValueError):
    """One task or region cannot be converted; the message names the task."""


@dataclass
class Problem:
    """Something wrong with one task. ``severity`` "error": not applied; "warning": applied."""

    task_id: Any
    kind: str
    message: str
    severity: str = "error"
    file_name: str | None = None

    def __str__(self) -> str:
        where = f"task {self.task_id}" + (f" ({self.file_name})" if self.file_name else "")
        return f"{self.severity}: {where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Labeling:
    """What one annotation (or prediction) says about one image."""

    labels: list[str] = field(default_factory=list)
    boxes: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)
    inset: str | None = None


# ---- image keys and URLs -----------------------------------------------------------
def image_url(file_name: str) -> str:
    """Local-files URL of a canonical ``file_name`` (relative to the document root = data root)."""
    return LOCAL_FILES_PREFIX + quote(file_name, safe="/")


def safe_relative_path(raw: str, what: str = "image path") -> str:
    """Normalise a relative POSIX path and refuse anything that escapes its root.

    Raises:
        ConvertError: absolute path, ``..`` escape, empty path or NUL byte.
    """
    try:
        return io_safe_relative_path(raw, what)
    except UnsafePathError as exc:
        raise ConvertError(str(exc)) from None


def image_key_from_task_data(data: dict[str, Any]) -> str:
    """The canonical ``file_name`` of a task: ``data.file_name`` or the local-files URL.

    Handles ``/data/local-files/?d=...`` (absolute or relative URL, URL-encoded).

    Raises:
        ConvertError: no usable key, an uploaded/remote image, or a path escaping the root.
    """
    key = data.get(IMAGE_KEY)
    if isinstance(key, str) and key:
        return safe_relative_path(key, f"data.{IMAGE_KEY}")
    url = data.get(IMAGE_NAME)
    if not isinstance(url, str) or not url:
        raise ConvertError(f"task data has neither {IMAGE_KEY!r} nor an {IMAGE_NAME!r} URL")
    try:
        parsed = urlparse(url)
        values = parse_qs(parsed.query).get("d")
    except ValueError as exc:  # e.g. "http://[" (invalid IPv6 host)
        raise ConvertError(f"image URL {url!r:.100} cannot be parsed ({exc})") from None
    if parsed.path.rstrip("/").endswith("/data/local-files") or parsed.path == "/data/local-files/":
        if not values:
            raise ConvertError(f"local-files URL {url!r} has no ?d= parameter")
        # parse_qs decodes once, as Label Studio's local-files view does: a second unquote would turn
        # the file "x%41.jpg" (URL "x%2541.jpg") into "xA.jpg", another image.
        return safe_relative_path(values[0], "local-files path")
    raise ConvertError(f"image URL {url!r} is not a local-files URL; cannot map it to the data root")


def resolve_in_root(data_root: str | Path, file_name: str) -> Path:
    """Absolute path of ``file_name`` under ``data_root``; refuse escapes (also via symlinks).

    Raises:
        ConvertError: the path resolves outside the data root, or cannot be resolved (symlink loop).
    """
    root = Path(data_root).resolve()
    try:
        path = (root / safe_relative_path(file_name)).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError in Python 3.11), a name too long
        raise ConvertError(f"image path {file_name!r:.200} cannot be resolved ({type(exc).__name__}: "
                           f"{getattr(exc, 'strerror', None) or 'symlink loop'})") from None
    if path != root and root not in path.parents:
        raise ConvertError(f"image path {file_name!r} resolves outside the data root {root}")
    return path


def annotation_time(value: Any) -> datetime:
    """An annotation's ``updated_at``/``created_at`` as an aware datetime, for ordering.

    Label Studio writes ISO 8601 with ``Z`` or an offset; compared as text, ``10:00+02:00``
    (08:00 UTC) sorts after ``09:00Z``. One without an offset is taken as UTC; a missing or
    unreadable one sorts first.
    """
    if isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return _NO_TIME
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return _NO_TIME


_NO_TIME = datetime.min.replace(tzinfo=timezone.utc)


# ---- canonical -> Label Studio -------------------------------------------------------
def box_to_result(
    class_name: str, xywh_px: Sequence[float], width_px: float, height_px: float,
    score: float | None = None, region_id: str | None = None,
) -> dict[str, Any]:
    """One canonical pixel box as a ``rectanglelabels`` result (percent of the original size)."""
    x, y, w, h = xywh_px_to_xywh_pct(xywh_px, width_px, height_px)
    result: dict[str, Any] = {
        "type": "rectanglelabels", "from_name": BOXES_NAME, "to_name": IMAGE_NAME,
        "original_width": int(width_px), "original_height": int(height_px), "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [class_name]},
    }
    if region_id is not None:
        result["id"] = region_id
    if score is not None:
        result["score"] = float(score)
    return result


def choices_result(from_name: str, choices: Sequence[str], score: float | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "choices", "from_name": from_name, "to_name": IMAGE_NAME,
                              "value": {"choices": list(choices)}}
    if score is not None:
        result["score"] = float(score)
    return result


def task_payload(file_name: str, predictions: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Import payload of one image: URL + stable key, predictions inline (one bulk call)."""
    task: dict[str, Any] = {"data": {IMAGE_NAME: image_url(file_name), IMAGE_KEY: file_name}}
    if predictions:
        task["predictions"] = list(predictions)
    return task


def prediction_from_combined(
    entry: dict[str, Any], width_px: int, height_px: int, model_version: str, taxonomy: Taxonomy,
    task_id: Any = None,
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A Label Studio prediction from one ``kvasir_ml.inference.combined`` entry.

    Boxes are in the pixel frame of the predicted image (``entry["width"/"height"]`` when
    present); percent is relative, so they are converted with that frame and stamped with
    the canonical ``width_px/height_px`` as the original size.

    Returns:
        ``(prediction or None when the entry carries nothing, problems)``; the prediction
        score is ``uncertainty.frame_confidence(entry)`` (low = uncertain: sort ascending).
    """
    problems: list[Problem] = []
    if "error" in entry:
        return None, [Problem(task_id, "prediction-error", f"prediction failed: {entry['error']}", "warning")]
    frame_w, frame_h = entry.get("width") or width_px, entry.get("height") or height_px
    results: list[dict[str, Any]] = []
    for i, box in enumerate(entry.get("boxes") or []):
        name = box.get("class")
        if name not in taxonomy.box_class_names:
            problems.append(Problem(task_id, "unknown-box-class", f"predicted box class {name!r} not in the taxonomy", "warning"))
            continue
        pct = xywh_px_to_xywh_pct(box["xywh_px"], frame_w, frame_h)
        px = xywh_pct_to_xywh_px(pct, width_px, height_px)
        results.append(box_to_result(name, px, width_px, height_px, score=box.get("score"), region_id=f"pred-box-{i}"))
    label_scores = entry.get("labels") or {}
    chosen = [n for n in taxonomy.label_names if n in set(entry.get("predicted_labels") or [])]
    unknown = set(entry.get("predicted_labels") or []) - set(taxonomy.label_names)
    if unknown:
        problems.append(Problem(task_id, "unknown-label", f"predicted labels {sorted(unknown)} not in the taxonomy", "warning"))
    if chosen:
        chosen_scores = [float(label_scores[n]) for n in chosen if n in label_scores]
        score = sum(chosen_scores) / len(chosen_scores) if chosen_scores else None
        results.append(choices_result(LABELS_NAME, chosen, score))
    state = (entry.get("inset") or {}).get("state")
    if state in taxonomy.inset_states:
        results.append(choices_result(INSET_NAME, [state]))
    if not results:
        return None, problems
    overall = frame_confidence(entry)
    return {"model_version": model_version, "score": overall, "result": results}, problems


# ---- Label Studio -> canonical -------------------------------------------------------
def result_box_xywh_px(
    result: dict[str, Any], width_px: float, height_px: float, task_id: Any = None
) -> tuple[tuple[float, float, float, float], Problem | None]:
    """Pixel box of a rectangle result in an image of ``width_px`` x ``height_px``.

    Returns:
        ``(box, warning or None)``; a warning when the box was clipped.

    Raises:
        ConvertError: rotated, degenerate, non-numeric or mostly outside the image.
    """
    value = result.get("value")
    value = value if isinstance(value, dict) else {}
    # Strict: "10" or true are not coordinates (float() would quietly make them 10.0 and 1.0).
    raw: list[Any] = [value.get(k) for k in ("x", "y", "width", "height")]
    rotation = value.get("rotation", 0) if value.get("rotation") is not None else 0
    if not all(_is_number(v) for v in (*raw, rotation)):
        bad = {k: v for k, v in zip(("x", "y", "width", "height", "rotation"), (*raw, rotation)) if not _is_number(v)}
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} has missing or non-numeric "
                           f"coordinates {bad!r:.120} (numbers expected, not strings or booleans)")
    pct = tuple(float(v) for v in raw)
    rotation = float(rotation)
    if not all(math.isfinite(v) for v in (*pct, rotation)):
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} has non-finite coordinates")
    if abs((rotation + 180.0) % 360.0 - 180.0) > 1e-6:
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} is rotated by {rotation:g} degrees; "
                           "only axis-aligned boxes are accepted (redraw it without rotation)")
    x, y, w, h = xywh_pct_to_xywh_px(pct, width_px, height_px)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} has coordinates too large to convert")
    if w <= 0 or h <= 0:
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} has zero or negative size")
    if min(w, h) < MIN_BOX_SIDE_PX - 1e-6:  # (tolerance: a 1 px box comes back from percent as 0.9999999 px)
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} is {w:.3g} x {h:.3g} px, below the "
                           f"minimum box side of {MIN_BOX_SIDE_PX:g} px (a stray click?); redraw or delete it")
    inside = inside_fraction_xywh_px((x, y, w, h), width_px, height_px)
    outside = outside_image_xywh_px((x, y, w, h), width_px, height_px, _BORDER_TOLERANCE_PX)
    if inside < MIN_INSIDE_FRACTION:
        raise ConvertError(f"task {task_id}: rectangle {result.get('id')!r} lies mostly outside the image "
                           f"({100 * inside:.0f}% inside); rejected")
    box = clip_xywh_px((x, y, w, h), width_px, height_px)
    warning = None
    if outside:
        warning = Problem(task_id, "box-clipped", f"rectangle {result.get('id')!r} extended past the image border "
                          f"({100 * inside:.0f}% inside); clipped to the image", "warning")
    return box, warning


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def result_size(result: dict[str, Any]) -> tuple[int, int] | None:
    """``(original_width, original_height)`` of a result when both are finite positive numbers."""
    if not isinstance(result, dict):
        return None
    w, h = result.get("original_width"), result.get("original_height")
    if _is_number(w) and _is_number(h) and math.isfinite(w) and math.isfinite(h) and w >= 1 and h >= 1:
        return int(w), int(h)
    return None


def labeling_from_results(
    results: Sequence[dict[str, Any]], size_px: tuple[int, int] | None, taxonomy: Taxonomy, task_id: Any = None,
) -> tuple[Labeling, list[Problem]]:
    """Convert one annotation's results.

    Args:
        results: the annotation's ``result`` list.
        size_px: the image's known ``(width, height)`` (canonical file or image header);
            percent is converted with it. None: each result's ``original_width/height``.

    Returns:
        ``(labeling, problems)``. Any "error" problem means the labeling must not be applied.
        Labels implied by boxes (taxonomy ``box_classes[].label``) are added.
    """
    out, problems = Labeling(), []
    labels: set[str] = set()
    for index, result in enumerate(results, start=1):
        if isinstance(result, dict) and not result.get("id"):
            result = {**result, "id": f"#{index} (no id)"}  # name it in messages by its place in the list
        if not isinstance(result, dict):
            problems.append(Problem(task_id, "malformed-result", f"result {result!r} is not an object"))
            continue
        kind, name, value = result.get("type"), result.get("from_name"), result.get("value")
        if not isinstance(value, dict):
            problems.append(Problem(task_id, "malformed-result", f"result {result.get('id')!r} has no 'value' object "
                                    f"(got {value!r:.60})"))
            continue
        if kind in ("rectanglelabels", "rectangle") or name == BOXES_NAME:
            classes = value.get("rectanglelabels") or []
            if not _is_str_list(classes) or len(classes) != 1:
                problems.append(Problem(task_id, "box-label", f"rectangle {result.get('id')!r} has labels {classes!r}; expected exactly one"))
                continue
            if classes[0] not in taxonomy.box_class_names:
                problems.append(Problem(task_id, "unknown-label", f"box class {classes[0]!r} is not in the taxonomy "
                                        f"(known: {', '.join(taxonomy.box_class_names)})"))
                continue
            size = size_px or result_size(result)
            if result_size(result) is None and size is not None:
                problems.append(Problem(task_id, "no-size", f"rectangle {result.get('id')!r} has no original_width/height; "
                                        f"converted with the image's size {size[0]}x{size[1]}", "warning"))
            if size is None:
                problems.append(Problem(task_id, "no-size", f"rectangle {result.get('id')!r} has no original_width/height "
                                        "and the image size is unknown (give --data-root or a base canonical file)"))
                continue
            try:
                box, warning = result_box_xywh_px(result, size[0], size[1], task_id)
            except ConvertError as exc:
                problems.append(Problem(task_id, "bad-box", str(exc).split(": ", 1)[-1]))
                continue
            if warning:
                problems.append(warning)
            out.boxes.append((classes[0], box))
        elif kind == "choices" and not _is_str_list(value.get("choices") or []):
            problems.append(Problem(task_id, "malformed-result", f"choices {value.get('choices')!r:.60} of "
                                    f"{name!r} are not a list of names"))
        elif kind == "choices" and name == LABELS_NAME:
            for choice in value.get("choices") or []:
                if choice in taxonomy.label_names:
                    labels.add(choice)
                else:
                    problems.append(Problem(task_id, "unknown-label", f"label {choice!r} is not in the taxonomy"))
        elif kind == "choices" and name == INSET_NAME:
            choices = value.get("choices") or []
            if len(choices) != 1 or choices[0] not in taxonomy.inset_states:
                problems.append(Problem(task_id, "unknown-inset", f"inset choice {choices!r} is not one of {list(taxonomy.inset_states)}"))
            else:
                out.inset = choices[0]
        else:
            problems.append(Problem(task_id, "unknown-result", f"result of type {kind!r} from {name!r} is not part of the "
                                    "labeling config; ignored", "warning"))
    implied = {taxonomy.box_classes[taxonomy.box_class_index(c)].label for c, _ in out.boxes}
    out.labels = [n for n in taxonomy.label_names if n in labels | implied]
    return out, problems
