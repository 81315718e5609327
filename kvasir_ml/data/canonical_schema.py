"""The one schema of the canonical annotation file, checked on every load and save.

``validate_canonical`` checks types strictly (``"labels": "polyp"`` is not a list, ``"10"``
is not a number, ``true`` is not a size), values (positive image sizes, taxonomy labels,
finite boxes of positive size inside their image, ``file_name`` relative to the data root
without ``..`` escapes or absolute paths) and references (unique ids and file names, boxes
pointing at known images and categories). Every problem is listed, each naming the entry
by position, id and file name and the field at fault, e.g.::

    data.coco.json: images[3] (id 4, 'b/1.jpg'): labels: Input should be a valid list (got 'polyp')

Entries may carry extra keys (``segmented_file_name``, ``labelstudio``, ``box_origin``, ...):
writers add provenance there; readers ignore what they do not know.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import ValidationInfo, field_validator

from kvasir_ml.data.inset import INSET_STATES
from kvasir_ml.geometry import BoxError, validate_xywh_px
from kvasir_ml.io import UnsafePathError, safe_relative_path
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

MAX_LISTED = 20  # problems spelled out in the error message (all are in ``CanonicalError.problems``)


class CanonicalError(ValueError):
    """The canonical file is malformed; the message names the file, each entry and field.

    Attributes:
        problems: every problem found, one line each.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [message])
        super().__init__(message)


# A JSON number, strictly: no strings ("10"), no booleans (true), nothing infinite, NaN or beyond a float.
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Box = tuple[Number, Number, Number, Number]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class CanonicalImage(_Entry):
    id: StrictInt
    file_name: StrictStr
    width: StrictInt = Field(gt=0)
    height: StrictInt = Field(gt=0)
    labels: list[StrictStr]
    source: StrictStr | None = None
    source_class: StrictStr | None = None
    inset: Literal[INSET_STATES] | None = None  # type: ignore[valid-type]
    inset_box: Box | None = None
    content_sha256: StrictStr | None = None
    # Set by `kvasir-ml verify pull`: the labels and boxes are the annotators' verified answers;
    # provenance inside (project, annotators, when, agreement, adjudication, previous labels).
    verified: dict[str, Any] | None = None

    @field_validator("file_name")
    @classmethod
    def _relative(cls, value: str) -> str:
        try:
            safe_relative_path(value, "file_name")
        except UnsafePathError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get("label_names")
        unknown = [v for v in value if known is not None and v not in known]
        if unknown:
            raise ValueError(f"{unknown} not in the taxonomy's labels ({', '.join(sorted(known or []))})")
        return value

    @field_validator("inset_box")
    @classmethod
    def _box_area(cls, value: Box | None) -> Box | None:
        if value is not None and (value[2] <= 0 or value[3] <= 0):
            raise ValueError(f"{list(value)} has zero or negative width/height")
        return value


class CanonicalAnnotation(_Entry):
    id: StrictInt
    image_id: StrictInt
    category_id: StrictInt
    bbox: Box
    area: Number | None = None
    iscrowd: StrictInt = Field(0, ge=0, le=1)


class CanonicalCategory(_Entry):
    id: StrictInt
    name: StrictStr


class CanonicalFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    info: dict[str, Any] = {}
    categories: list[CanonicalCategory]
    images: list[CanonicalImage]
    annotations: list[CanonicalAnnotation]


def _where(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """``images[3] (id 4, 'b/1.jpg')`` for an error location inside the file."""
    if len(loc) < 2 or not isinstance(loc[1], int) or not isinstance(raw.get(loc[0]), list):
        return ".".join(map(str, loc)) or "top level"
    entry = raw[loc[0]][loc[1]]
    head = f"{loc[0]}[{loc[1]}]"
    if isinstance(entry, dict):
        bits = [f"id {entry.get('id')!r}"] if "id" in entry else []
        if loc[0] == "images" and isinstance(entry.get("file_name"), str):
            bits.append(repr(entry["file_name"]))
        if loc[0] == "annotations" and "image_id" in entry:
            bits.append(f"image id {entry.get('image_id')!r}")
        head += f" ({', '.join(bits)})" if bits else ""
    return head


def _schema_problems(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc[2:]) if len(loc) > 2 else ""
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{_where(raw, loc[:2])}: {field + ': ' if field else ''}{msg} (got {got})")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reference_problems(raw: dict[str, Any], taxonomy: Taxonomy, bad: set[tuple[str, int]]) -> list[str]:
    """Checks across entries: unique ids/names, known references, boxes inside their image.

    Entries in ``bad`` (already failed the schema) are skipped, except that a bad image's id
    still counts as known, so its boxes are not reported a second time.
    """
    out: list[str] = []
    cats = {}
    for i, cat in enumerate(raw["categories"]):
        if ("categories", i) in bad:
            continue
        if cat["name"] not in taxonomy.box_class_names:
            out.append(f"categories[{i}] (id {cat['id']}): name: {cat['name']!r} is not a taxonomy box class "
                       f"({', '.join(taxonomy.box_class_names)})")
        cats[cat["id"]] = cat["name"]
    images: dict[Any, dict[str, Any] | None] = {}
    names: set[str] = set()
    for i, img in enumerate(raw["images"]):
        if ("images", i) in bad:
            if isinstance(img, dict) and _is_int(img.get("id")):  # its boxes are still checked on valid sides
                images.setdefault(img["id"], {k: img.get(k) if _is_int(img.get(k)) and img[k] > 0 else None
                                              for k in ("width", "height")})
            continue
        if img["id"] in images:
            out.append(f"{_where(raw, ('images', i))}: id: duplicate image id {img['id']}")
        if img["file_name"] in names:
            out.append(f"{_where(raw, ('images', i))}: file_name: duplicate file_name {img['file_name']!r}")
        images.setdefault(img["id"], img)
        names.add(img["file_name"])
    bad_categories = any(k == "categories" for k, _ in bad)
    for i, ann in enumerate(raw["annotations"]):
        if ("annotations", i) in bad:
            continue
        where = _where(raw, ("annotations", i))
        if ann["image_id"] not in images:
            out.append(f"{where}: image_id: no image has id {ann['image_id']}")
        if ann["category_id"] not in cats and not bad_categories:
            out.append(f"{where}: category_id: unknown category id {ann['category_id']}")
        img = images.get(ann["image_id"]) or {}
        width, height = img.get("width"), img.get("height")
        try:  # unknown image or image size: only the box's own sides can be checked
            validate_xywh_px(ann["bbox"], width or math.inf, height or math.inf,
                             tolerance_px=0.5 if width and height else math.inf)
        except BoxError as exc:
            out.append(f"{where}: bbox: {exc}")
    return out


def validate_canonical(raw: Any, origin: str, taxonomy: Taxonomy | None = None) -> None:
    """Check a canonical file (parsed JSON) against the schema; raise naming every problem.

    Args:
        raw: the parsed JSON.
        origin: the file name (or a description) for messages.
        taxonomy: labels and box classes to check against (default: the project taxonomy).

    Raises:
        CanonicalError: with ``problems`` listing every bad entry and field.
    """
    if not isinstance(raw, dict):
        raise CanonicalError(f"{origin}: top level must be a JSON object, got {type(raw).__name__}")
    taxonomy = taxonomy or load_taxonomy()
    try:
        CanonicalFile.model_validate(raw, context={"label_names": set(taxonomy.label_names)})
        problems, bad = [], set()
    except ValidationError as exc:
        problems = _schema_problems(raw, exc)
        locs = [tuple(err["loc"]) for err in exc.errors(include_url=False)]
        bad = {(str(loc[0]), loc[1]) for loc in locs if len(loc) >= 2 and isinstance(loc[1], int)}
        if any(len(loc) < 2 or not isinstance(loc[1], int) for loc in locs):
            bad = None  # a whole section is malformed: nothing to cross-check
    if bad is not None:
        problems += _reference_problems(raw, taxonomy, bad)
    if problems:
        lines = [f"{origin}: {p}" for p in problems]
        more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        head = f"{origin}: {len(lines)} problem(s) in the canonical file:\n  " if len(lines) > 1 else ""
        raise CanonicalError(head + "\n  ".join(lines[:MAX_LISTED]) + more, lines)
