"""Configuration: pydantic models validated once, at the edge.

Experiment configs are YAML files under ``configs/`` plus ``key=value`` overrides
(dotted keys reach nested sections, values are parsed as YAML scalars). Unknown keys are
rejected everywhere (``extra="forbid"``). Subsystems define their own config models by
subclassing ``StrictModel``; this module holds the shared pieces.

Two keys belong to the file, not to the model (``FILE_KEYS``): ``kind`` names the model that
reads the file (``classifier``, ``detector``, ``experiment``; never guessed from the file
name), and ``base`` names another config file (relative to this one) that this file starts
from: the chain is deep-merged, the child winning (mappings merge key by key; lists and
scalars are replaced), and the result is validated once, as a file without ``base`` is.

Secrets (W&B and Label Studio API keys) are never part of a config: they come from the
environment at the point of use.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kvasir_ml.io import DuplicateKeyError, loads_yaml, read_yaml

T = TypeVar("T", bound=BaseModel)
# Config kinds -> "module:Model" (imported lazily: torch is heavy). A file names its kind (`kind:`).
CONFIG_KINDS = {
    "classifier": "kvasir_ml.train.config:ClassifierConfig",
    "detector": "kvasir_ml.detection.config:DetectorConfig",
    "experiment": "kvasir_ml.experiment.config:ExperimentConfig",
}
FILE_KEYS = ("base", "kind")  # read by the composition, never by a model
# numpy's RandomState (splits, bootstrap, synthetic data) takes seeds in [0, 2**32 - 1] only.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys raise, assignments are validated, and a float
    must be finite (``lr: .inf`` would otherwise train into NaN an epoch later)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class DatasetConfig(StrictModel):
    """Which dataset and split a run (or an experiment) uses; resolved by ``kvasir_ml.data.resolve``.

    The ``data`` sections of the classifier, detector and experiment configs subclass it,
    adding their own keys and, where they need them, other defaults.
    """

    canonical: str | None = Field(
        None, description="canonical annotation file (COCO JSON); null or 'synthetic' = synthesize the default "
                          "dataset into <run>/data (no download)")
    root: str | None = Field(None, description="folder the file_names are relative to; null = the folder "
                                               "the canonical file records (info.image_root), else its own folder")
    split_file: str | None = Field(
        None, description="a saved split.json to reuse (fair comparisons: the same file for every model); null = "
                          "make one from split_seed and fractions into <run>/split.json")
    split_seed: Seed = Field(0, description="seed of a new split (same seed and file: same split)")
    fractions: tuple[float, float, float] = Field((0.7, 0.15, 0.15),
                                                  description="train/val/test fractions of a new split")
    synthetic_n: int = Field(200, ge=16, description="images to synthesize when canonical is null/synthetic")
    synthetic_seed: Seed = Field(0, description="seed of the synthetic data (same seed on the same kind of CPU: byte-identical images; numpy's CPU-specific math kernels can change a few pixels, so the JPEG bytes, across CPU types)")
    synthetic_cooccurrence: Literal["default", "independent", "none"] = Field(
        "default",
        description="label sets of the synthetic data: 'default' = each class's labels plus a few class-specific "
                    "extra findings; 'independent' = polyp, dyed and ulcerative-colitis also appear on any frame "
                    "with probability 0.3, whatever its class (the positive control: a single-label model "
                    "cannot express them); 'none' = exactly the class's labels (the negative control)")
    synthetic_finding_contrast: float = Field(
        1.0, gt=0.0, le=1.0,
        description="how visible the synthetic findings are: 1 = full signatures; lower fades them (and the "
                    "vessels) towards the bare mucosa, a harder task with the same labels (the negative control "
                    "uses it to keep the single-label model off the AP ceiling)")
    near_duplicate_max_distance: int | None = Field(
        12, ge=0, le=64,
        description="a new split keeps images whose perceptual hashes differ in at most this many of 64 bits in "
                    "one split (re-encoded / re-cropped copies of a frame; measured on Kvasir-SEG, see "
                    "docs/near_duplicates.md); null = group exact duplicates only")
    near_duplicate_max_group: int | None = Field(
        None, ge=2,
        description="a near-duplicate group with more images (ties chain consecutive video frames) is cut at its "
                    "weakest links (largest hash distances) until every piece fits; the cut links are recorded in "
                    "split.json with the splits they landed in (those pairs may straddle); null = never cut "
                    "(groups over 0.5 % of the images are reported)")
    twin_map: str | None = Field(
        None,
        description="kvasirseg_to_hyperkvasir_uuid.csv: a new split keeps each Kvasir-SEG image and its "
                    "HyperKvasir twin (same frame, other name) in one split; null = no twin map")

    @property
    def is_synthetic(self) -> bool:
        return self.canonical in (None, "", "synthetic")

    @model_validator(mode="after")
    def _fractions_sum(self) -> "DatasetConfig":
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"data.fractions must be 3 non-negative numbers summing to 1, got {self.fractions}")
        return self


class TrackingConfig(StrictModel):
    """Experiment tracking (Weights & Biases)."""

    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline = local run files, no account (wandb sync uploads later); online = needs "
                               "WANDB_API_KEY in the environment; disabled = nothing written. WANDB_MODE in the "
                               "environment can only make it more private")
    project: str = Field("kvasir-ml", description="W&B project name")
    entity: str | None = Field(None, description="W&B entity (team or user); null = the account's default")
    group: str | None = Field(None, description="W&B group: the runs of one experiment share it (compare them "
                                                "side by side)")
    tags: list[str] = Field([], description="extra tags; task, inset mode and dataset are added automatically")
    dir: str | None = Field(None, description="where W&B run files go; null = <run>/wandb")
    log_model: bool = Field(True, description="log the best checkpoint as a model artifact")
    n_sample_images: int = Field(16, ge=0, description="test images logged with their predictions (and boxes)")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as a YAML scalar (``1``, ``true``, ``[1,2]``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = loads_yaml(raw, f"override {item!r}") if raw.strip() else None
    except DuplicateKeyError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def sub_model(annotation: Any) -> type[BaseModel] | None:
    """The config section a field's annotation names (a pydantic model), else None."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The (sub-)model that holds the key at ``loc`` (None when ``loc`` leaves the models)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        sub = sub_model(field.annotation) if field is not None else None
        if sub is None:
            return None
        model = sub
    return model


def _origin(key: str, overrides: list[str] | tuple[str, ...], source: str) -> str:
    """Which input set ``key``: the last override naming it (or a section above it), else the file."""
    for item in reversed(overrides):
        okey = item.split("=", 1)[0].strip()
        if key == okey or key.startswith(okey + ".") or okey.startswith(key + "."):
            return f"override {item!r}"
    return source


def _format_validation_error(exc: ValidationError, model: type[BaseModel], source: str,
                             overrides: list[str] | tuple[str, ...]) -> str:
    lines = ["invalid config:"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = f"unknown key{f' (did you mean {close[0]!r}?)' if close else ''}; known here: {', '.join(known)}"
        lines.append(f"  {key}: {msg}  [from {_origin(key, overrides, source)}]")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file's top-level mapping.

    Raises:
        ConfigError: missing file, invalid YAML, a key given twice or not a mapping (naming the file).
    """
    try:
        raw = read_yaml(path) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except ValueError as exc:  # invalid YAML, a duplicate key, not UTF-8: the message names the file
        raise ConfigError(f"config {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return raw


def deep_merge(base: dict, child: dict) -> dict:
    """``child`` over ``base``: mappings merge key by key (recursively); anything else in
    ``child`` (a scalar, a list, null) replaces the base's value whole. Inputs are not changed."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_chain(path: str | Path) -> list[tuple[Path, dict]]:
    """The files a config is composed of, with their own mappings: ``path``, its ``base``, that
    file's ``base``, ...

    Raises:
        ConfigError: a ``base`` that is not a file name, does not exist, or leads back to a
            file already in the chain (naming the files of the cycle).
    """
    chain = [(Path(path), read_yaml_mapping(path))]
    while chain[-1][1].get("base") is not None:
        here, base = chain[-1][0], chain[-1][1]["base"]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"config {here}: base must be a config file name (relative to this file), "
                              f"got {base!r}")
        nxt = here.parent / base
        if not nxt.is_file():
            raise ConfigError(f"config {here}: base {base!r} not found (looked for {nxt})")
        if nxt.resolve() in [p.resolve() for p, _ in chain]:
            cycle = " -> ".join(str(p) for p in [*(p for p, _ in chain), nxt])
            raise ConfigError(f"config {chain[0][0]}: the base chain is a cycle: {cycle}")
        chain.append((nxt, read_yaml_mapping(nxt)))
    return chain


def compose_yaml(path: str | Path, chain: list[tuple[Path, dict]] | None = None) -> dict:
    """A config file's mapping with its ``base`` chain merged in (the child wins), ``base``
    removed and ``kind`` kept (the nearest file that names it wins).

    Args:
        path: the config file.
        chain: ``base_chain(path)`` when the caller has it already.

    Raises:
        ConfigError: as ``base_chain`` and ``read_yaml_mapping``.
    """
    raw: dict = {}
    for _, own in reversed(chain if chain is not None else base_chain(path)):
        raw = deep_merge(raw, {k: v for k, v in own.items() if k != "base"})
    return raw


def kind_of_model(model: type[BaseModel]) -> str | None:
    """The ``kind`` a config model reads (None for a model that is no kind's)."""
    name = f"{model.__module__}:{model.__qualname__}"
    return next((kind for kind, target in CONFIG_KINDS.items() if target == name), None)


def check_kind(kind: Any, model: type[BaseModel], source: str) -> None:
    """Refuse a file whose ``kind`` is unknown or is not the kind ``model`` reads.

    A file without ``kind`` passes here: the caller names the model (``train classifier
    --config``, a run folder's resolved ``config.yaml``); where the kind must come from the
    file, ``configdoc.kind_of`` requires the key.
    """
    if kind is None:
        return
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"{source}: kind {kind!r} is not one of {', '.join(CONFIG_KINDS)}")
    expected = kind_of_model(model)
    if expected is not None and kind != expected:
        raise ConfigError(f"{source} is a {kind} config (kind: {kind}); this reads {expected} configs")


def load_config(
    model: type[T],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> T:
    """Build a validated config from a YAML file (its ``base`` chain merged in) plus overrides.

    Args:
        model: the pydantic config class (a ``StrictModel`` subclass).
        path: YAML file, or the name of a shipped config (``configs/<name>.yaml`` or ``<name>.yaml``,
            used when no such file exists here); None means the model's defaults.
        overrides: ``key=value`` strings, dotted keys for nested sections.

    Raises:
        ConfigError: unreadable YAML, a broken ``base`` chain, a ``kind`` other than the model's,
            unknown keys (with the closest known key), wrong types — naming the key and whether
            the file (or its bases) or which override set it.
    """
    raw: dict = {}
    source = "the defaults"
    if path is not None:
        from kvasir_ml.resources import find_config

        path = find_config(path) or path
        chain = base_chain(path)
        source = f"config file {path}" + (f" or its base {', '.join(str(p) for p, _ in chain[1:])}"
                                          if len(chain) > 1 else "")
        raw = compose_yaml(path, chain)
        check_kind(raw.pop("kind", None), model, f"config {path}")
    raw = apply_overrides(raw, overrides)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, model, source, overrides)) from None


def dump_config(config: BaseModel) -> dict:
    """JSON/YAML-safe dict of a config (what goes into run folders, checkpoints and W&B)."""
    return config.model_dump(mode="json")


def save_config(config: BaseModel, path: str | Path) -> None:
    from kvasir_ml.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(dump_config(config), sort_keys=False))
