"""The label taxonomy: label vocabulary, box classes and source-class mappings.

Everything is read from ``annotations/taxonomy.yaml``; nothing else in the package
hard-codes a label list. The taxonomy is immutable once loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from kvasir_ml.io import read_yaml
from kvasir_ml.resources import annotation_file

DEFAULT_TAXONOMY_PATH = annotation_file("taxonomy.yaml")
# What the inset detector (``data.inset.detect_inset``) can return; the taxonomy file must list
# exactly these. Defined here, the lower layer, so the taxonomy imports nothing from data/.
INSET_STATES = ("green", "black", "none")


class TaxonomyError(ValueError):
    """The taxonomy file is inconsistent, or a name is not in it."""


@dataclass(frozen=True)
class Label:
    name: str
    group: str
    region: str
    description: str = ""
    hotkey: str = ""  # Label Studio key that ticks the label (box classes: shift + their label's)
    hint: str = ""  # short text shown beside it on the labeling page


@dataclass(frozen=True)
class BoxClass:
    name: str
    label: str
    description: str = ""


@dataclass(frozen=True)
class SourceSet:
    """One dataset's source classes (the single-label classes) and their label sets."""

    name: str
    classes: tuple[str, ...]
    label_sets: dict[str, tuple[str, ...]]
    aliases: dict[str, str] = field(default_factory=dict)
    ignored_folders: tuple[str, ...] = ()
    description: str = ""

    def canonical_class(self, name: str) -> str:
        """Return the canonical class name for ``name`` or one of its aliases.

        Raises:
            TaxonomyError: the name is neither a class nor an alias of this source.
        """
        if name in self.label_sets:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise TaxonomyError(
            f"unknown class {name!r} for source {self.name!r}; known: {', '.join(self.classes)}"
        )


@dataclass(frozen=True)
class Taxonomy:
    version: int
    labels: tuple[Label, ...]
    box_classes: tuple[BoxClass, ...]
    inset_states: tuple[str, ...]
    sources: dict[str, SourceSet]
    path: str = ""

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def box_class_names(self) -> list[str]:
        return [box.name for box in self.box_classes]

    def label_index(self, name: str) -> int:
        try:
            return self.label_names.index(name)
        except ValueError:
            raise TaxonomyError(f"unknown label {name!r}; known: {', '.join(self.label_names)}") from None

    def box_class_index(self, name: str) -> int:
        """0-based index (YOLO class id); the COCO category id is index + 1."""
        try:
            return self.box_class_names.index(name)
        except ValueError:
            raise TaxonomyError(
                f"unknown box class {name!r}; known: {', '.join(self.box_class_names)}"
            ) from None

    def source(self, name: str) -> SourceSet:
        try:
            return self.sources[name]
        except KeyError:
            raise TaxonomyError(f"unknown source {name!r}; known: {', '.join(self.sources)}") from None

    def labels_for(self, source: str, source_class: str) -> list[str]:
        """Label set of one source class (aliases accepted), in vocabulary order."""
        src = self.source(source)
        wanted = set(src.label_sets[src.canonical_class(source_class)])
        return [name for name in self.label_names if name in wanted]

    def encode_labels(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Multi-hot float32 vector over the vocabulary. Unknown names raise."""
        vec = np.zeros(len(self.labels), dtype=np.float32)
        for name in names:
            vec[self.label_index(name)] = 1.0
        return vec

    def class_region(self, source: str, source_class: str) -> str:
        """``upper`` or ``lower`` GI when every label of the class lies there, else ``mixed``."""
        wanted = set(self.labels_for(source, source_class))
        regions = {label.region for label in self.labels if label.name in wanted}
        return regions.pop() if len(regions) == 1 else "mixed"

    def class_label_matrix(self, source: str) -> np.ndarray:
        """(n_classes, n_labels) 0/1 matrix: row c is the label set of source class c.

        Used to map single-label probabilities to label scores and back.
        """
        src = self.source(source)
        matrix = np.zeros((len(src.classes), len(self.labels)), dtype=np.float32)
        for row, cls in enumerate(src.classes):
            for name in src.label_sets[cls]:
                matrix[row, self.label_index(name)] = 1.0
        return matrix


def _parse(raw: dict, path: str) -> Taxonomy:
    labels = tuple(Label(**item) for item in raw["labels"])
    names = [label.name for label in labels]
    if len(set(names)) != len(names):
        raise TaxonomyError(f"{path}: duplicate label names")
    keys = [label.hotkey for label in labels if label.hotkey]  # optional; the labeling config needs them
    if not all(len(k) == 1 and k.islower() for k in keys) or len(set(keys)) != len(keys):
        raise TaxonomyError(f"{path}: label hotkeys must be distinct one-letter lower-case keys, got {keys}")
    boxes = tuple(BoxClass(**item) for item in raw["box_classes"])
    for box in boxes:
        if box.label not in names:
            raise TaxonomyError(f"{path}: box class {box.name!r} implies unknown label {box.label!r}")
    sources: dict[str, SourceSet] = {}
    for src_name, src in raw["sources"].items():
        label_sets: dict[str, tuple[str, ...]] = {}
        aliases: dict[str, str] = {}
        for cls, spec in src["classes"].items():
            for label in spec["labels"]:
                if label not in names:
                    raise TaxonomyError(f"{path}: {src_name}/{cls} maps to unknown label {label!r}")
            label_sets[cls] = tuple(spec["labels"])
            for alias in spec.get("aliases", []):
                aliases[alias] = cls
        sources[src_name] = SourceSet(
            name=src_name,
            classes=tuple(src["classes"]),
            label_sets=label_sets,
            aliases=aliases,
            ignored_folders=tuple(src.get("ignored_folders", [])),
            description=src.get("description", ""),
        )
    if tuple(raw["inset_states"]) != INSET_STATES:
        raise TaxonomyError(f"{path}: inset_states {raw['inset_states']} must be {list(INSET_STATES)} "
                            "(the states kvasir_ml.data.inset detects)")
    return Taxonomy(
        version=int(raw["version"]),
        labels=labels,
        box_classes=boxes,
        inset_states=tuple(raw["inset_states"]),
        sources=sources,
        path=path,
    )


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (cached per path).

    Args:
        path: taxonomy YAML; defaults to the shipped ``annotations/taxonomy.yaml``.
    """
    path = Path(path) if path else DEFAULT_TAXONOMY_PATH
    try:
        raw = read_yaml(path)
    except ValueError as exc:  # invalid YAML or a key given twice: the message names the file and line
        raise TaxonomyError(str(exc)) from None
    return _parse(raw, str(path))
