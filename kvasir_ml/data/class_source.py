"""Which single-label class an image gets under ``data.class_source``, and a refusal when the
chosen class source would silently drop classes of the dataset.

The single-label baseline's classes are one taxonomy source's classes (``class_source``,
default ``kvasir-v2``). An image of another source gets the class of the same name, else the
one class with the same label set (HyperKvasir ``cecum`` -> Kvasir v2 ``normal-cecum``;
``esophagitis-a`` and ``esophagitis-b-d`` -> ``esophagitis``). HyperKvasir has 23 classes;
9 of them (``barretts``, ``ileum``, ``bbps-0-1``, ...) have no Kvasir v2 counterpart, so with
the default their images would fall out of single-label training and of every single-label
metric while the multi-label model trains and is scored on them: a comparison on different
data that says nothing about it. ``check_class_source`` refuses that by name.
"""

from __future__ import annotations

from collections import Counter

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.taxonomy import Taxonomy, TaxonomyError


class ClassSourceError(ValueError):
    """The class source leaves classes of the dataset without a single-label class."""


def single_label_class(taxonomy: Taxonomy, source: str | None, source_class: str | None,
                       class_source: str) -> int:
    """Index of an image's class among ``taxonomy.source(class_source).classes``, or -1.

    A class of the same name counts (Kvasir-SEG's and the synthetic source's ``polyps``);
    otherwise the one class whose label set equals the source class's label set. -1: no
    source class, an unknown source/class, or no (or more than one) matching class.
    """
    classes = taxonomy.source(class_source).classes
    if not source_class:
        return -1
    if source_class in classes:
        return classes.index(source_class)
    try:
        wanted = set(taxonomy.labels_for(source or "", source_class))  # no source: unknown, like any other
    except TaxonomyError:  # unknown source/class: the image simply has no single-label target
        return -1
    matches = [i for i, c in enumerate(classes) if set(taxonomy.labels_for(class_source, c)) == wanted]
    return matches[0] if len(matches) == 1 else -1


def dropped_classes(ds: CanonicalDataset, class_source: str, taxonomy: Taxonomy) -> dict[str, int]:
    """Source classes of ``ds`` that the taxonomy knows but ``class_source`` cannot express.

    Images without a source class, or with one the taxonomy does not know (e.g. drawn in
    Label Studio), are not counted: they never had a single-label class to lose.

    Returns:
        ``{"<source>/<class>": number of images}``, sorted by name.
    """
    counts: Counter = Counter()
    for img in ds.images:
        source, cls = img.get("source"), img.get("source_class")
        if not cls:
            continue
        try:
            taxonomy.labels_for(source or "", cls)
        except TaxonomyError:
            continue
        if single_label_class(taxonomy, source, cls, class_source) < 0:
            counts[f"{source}/{cls}"] += 1
    return dict(sorted(counts.items()))


def sources_keeping_every_class(ds: CanonicalDataset, taxonomy: Taxonomy) -> list[str]:
    """The taxonomy sources under which no class of ``ds`` is dropped (to suggest one)."""
    return [name for name in taxonomy.sources if not dropped_classes(ds, name, taxonomy)]


def check_class_source(ds: CanonicalDataset, class_source: str, taxonomy: Taxonomy, origin: str) -> None:
    """Refuse a class source that would silently drop classes of the dataset.

    Args:
        ds: the dataset a run trains and is scored on.
        class_source: ``data.class_source``.
        taxonomy: the project taxonomy.
        origin: the canonical file (named in the error).

    Raises:
        ClassSourceError: naming each dropped class with its image count, the settings that
            keep every class, and how to drop them deliberately.
    """
    dropped = dropped_classes(ds, class_source, taxonomy)
    if not dropped:
        return
    n_images = sum(dropped.values())
    listed = ", ".join(f"{name} ({n})" for name, n in dropped.items())
    keep = sources_keeping_every_class(ds, taxonomy)
    fix = (f"set data.class_source={keep[0]} to keep every class" if keep
           else "no taxonomy source covers every class of this file")
    raise ClassSourceError(
        f"{origin}: data.class_source={class_source} has no single-label class for {len(dropped)} classes of "
        f"this file ({n_images} images): {listed}. The single-label model would be trained and scored without "
        f"them while the multi-label model keeps them. {fix[0].upper() + fix[1:]}; to leave them out on purpose, "
        f"remove those images from the canonical file")
