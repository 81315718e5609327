"""The Label Studio labeling config, generated from the taxonomy (never edited by hand).

One ``Image``; a ``RectangleLabels`` for the detector's box classes (rotation disabled,
because the canonical file stores axis-aligned boxes); a multi-choice ``Choices`` for the
image-level labels; a single-choice ``Choices`` for the state of the position-map inset.
The control names below are the contract between the config and ``convert.py``.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from kvasir_ml.resources import annotation_file
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

DEFAULT_CONFIG_PATH = annotation_file("labeling_config.xml")

# Names shared by the config, the task payload and the converters.
IMAGE_NAME = "image"  # <Image name=...> and the task data key holding the image URL
IMAGE_KEY = "file_name"  # task data key: stable image key = canonical file_name
BOXES_NAME = "boxes"  # <RectangleLabels name=...>
LABELS_NAME = "labels"  # <Choices name=...> image-level labels (multiple)
INSET_NAME = "inset"  # <Choices name=...> inset state (single)

# Fixed, readable colours for box classes (cycled); the order follows the taxonomy.
_BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0")


def labeling_config_xml(taxonomy: Taxonomy | None = None) -> str:
    """Build the labeling config XML from the taxonomy.

    Args:
        taxonomy: defaults to ``annotations/taxonomy.yaml``.

    Returns:
        The XML text (deterministic: same taxonomy, same bytes).
    """
    taxonomy = taxonomy or load_taxonomy()
    lines = [
        f"<!-- Generated from annotations/taxonomy.yaml (version {taxonomy.version}) by "
        "`kvasir-ml ls config`. Do not edit by hand. -->",
        "<View>",
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true"/>',
        '  <Header value="Boxes (axis-aligned; draw around each finding)"/>',
        f'  <RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}" canRotate="false" strokeWidth="2">',
    ]
    for i, box in enumerate(taxonomy.box_classes):
        colour = _BOX_COLOURS[i % len(_BOX_COLOURS)]
        lines.append(
            f"    <Label value={quoteattr(box.name)} background={quoteattr(colour)} hint={quoteattr(box.description)}/>"
        )
    lines += [
        "  </RectangleLabels>",
        '  <Header value="Image-level labels (all that apply)"/>',
        f'  <Choices name="{LABELS_NAME}" toName="{IMAGE_NAME}" choice="multiple" showInline="false">',
    ]
    for label in taxonomy.labels:
        hint = f"{label.group}, {label.region}: {label.description}"
        lines.append(f"    <Choice value={quoteattr(label.name)} hint={quoteattr(hint)}/>")
    lines += [
        "  </Choices>",
        '  <Header value="Position-map inset (bottom-left panel)"/>',
        f'  <Choices name="{INSET_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true">',
    ]
    for state in taxonomy.inset_states:
        lines.append(f"    <Choice value={quoteattr(state)}/>")
    lines += ["  </Choices>", "</View>", ""]
    return "\n".join(lines)


def write_labeling_config(out_path: str | Path = DEFAULT_CONFIG_PATH, taxonomy: Taxonomy | None = None) -> Path:
    """Write the generated config (atomically; an existing different file is backed up).

    Returns:
        The path written.
    """
    from kvasir_ml.io import atomic_write_text

    out_path = Path(out_path)
    text = labeling_config_xml(taxonomy)
    if out_path.exists() and out_path.read_text(encoding="utf-8") == text:
        return out_path
    atomic_write_text(out_path, text, keep_backup=out_path.exists())
    return out_path
