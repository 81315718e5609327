"""The Label Studio labeling config, generated from the taxonomy (never edited by hand).

Layout (built for endoscopy frames at 1000 px screen height): the image on the left, every
control in one column on the right, so nothing needs scrolling between them.

* ``RectangleLabels`` for the detector's box classes (rotation disabled: the canonical file
  stores axis-aligned boxes);
* a single-choice ``Choices`` for the state of the position-map inset, ``required`` so an
  empty Submit can no longer wipe a frame (a frame always has an inset state);
* a multi-choice ``Choices`` for the image-level labels, grouped under headers by the
  taxonomy's ``group`` (landmark / finding / procedure / quality) and ``region``
  (upper / lower GI), each choice showing its mnemonic hotkey and a short visible hint.

The control names below are the contract between the config and ``convert.py``; the hotkeys
are the contract with the annotators (docs/labelstudio.md lists them).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from kvasir_ml.resources import annotation_file
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

DEFAULT_CONFIG_PATH = annotation_file("labeling_config.xml")

# Names shared by the config, the task payload and the converters.
IMAGE_NAME = "image"  # <Image name=...> and the task data key holding the image URL
IMAGE_KEY = "file_name"  # task data key: stable image key = canonical file_name
BOXES_NAME = "boxes"  # <RectangleLabels name=...>
LABELS_NAME = "labels"  # <Choices name=...> image-level labels (multiple)
INSET_NAME = "inset"  # <Choices name=...> inset state (single, required)

# Fixed, readable colours for box classes (cycled); the order follows the taxonomy.
_BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0")

# Mnemonic hotkeys come from the taxonomy (each label's ``hotkey``; a box class takes shift +
# its label's, so "p" ticks the polyp label and "shift+p" draws a polyp box; an inset state
# its first letter). Label Studio's own single keys on an image page are r (rectangle tool),
# v (move), h (pan) and u (unselect region): the taxonomy may not use them.
RESERVED_HOTKEYS = frozenset({"r", "v", "h", "u"})  # Label Studio's image tools and region keys


def hotkeys(taxonomy: Taxonomy) -> dict[str, dict[str, str]]:
    """``{"labels": {label: key}, "boxes": {box class: key}, "inset": {state: key}}``.

    Raises:
        ValueError: a label without a hotkey, two controls sharing a key, or a key Label Studio
            reserves.
    """
    missing = [label.name for label in taxonomy.labels if not label.hotkey]
    if missing:
        raise ValueError(f"{taxonomy.path}: labels {missing} have no hotkey; add one to each in the taxonomy")
    labels = {label.name: label.hotkey for label in taxonomy.labels}
    out = {"labels": labels,
           "boxes": {box.name: f"shift+{labels[box.label]}" for box in taxonomy.box_classes},
           "inset": {state: state[0] for state in taxonomy.inset_states}}
    keys = [k for table in out.values() for k in table.values()]
    clash = sorted({k for k in keys if keys.count(k) > 1 or k in RESERVED_HOTKEYS})
    if clash:
        raise ValueError(f"{taxonomy.path}: hotkeys {clash} are shared or reserved by Label Studio "
                         f"({', '.join(sorted(RESERVED_HOTKEYS))}); change the labels' hotkey in the taxonomy")
    return out


GROUP_TITLES = {"landmark": "Landmarks", "finding": "Findings", "procedure": "Procedure", "quality": "Bowel prep / quality"}
REGION_TITLES = {"upper": "upper GI", "lower": "lower GI"}

_PANEL_STYLE = "flex: 0 0 430px; padding-left: 12px"
_SUBHEADER_STYLE = "margin: 4px 0 0 0"
_GROUP_STYLE = "margin: 6px 0 0 0; font-size: 13px; color: #666; text-transform: uppercase"
# Tighter rows than Label Studio's default (40 px line height), scoped to our panel.
_PANEL_CSS = (".kv-panel .lsf-choice { line-height: 24px; } .kv-panel .lsf-choice small { color: #777; }"
              # A window up to 1500 px wide (1366x768 laptops) leaves the image ~300 px beside a 430 px
              # panel and Label Studio's own task list and side panel: the panel narrows to 300 px (the
              # hints go; the full description stays on hover) so the image takes the width it frees.
              " @media (max-width: 1500px) { .kv-panel { flex-basis: 300px !important; padding-left: 6px !important; }"
              " .kv-panel .lsf-choice small { display: none; }"
              " .kv-panel .lsf-choice { line-height: 20px; } .kv-panel .lsf-choice label span { font-size: 13px; }"
              " .kv-panel h4 { margin: 6px 0 2px 0 !important; }"
              " .kv-panel h4:not([style*=uppercase]) { font-size: 15px !important; line-height: 1.3 !important; } }")
_IMAGE_STYLE = "flex: 1 1 auto; min-width: 0"


def _label_choices(taxonomy: Taxonomy, keys: dict[str, str]) -> list[str]:
    """The labels' ``<Choice>`` lines in two columns, upper GI | lower GI, each grouped under
    one header per group (taxonomy order), so all labels fit beside the image unscrolled."""
    groups = list(dict.fromkeys(label.group for label in taxonomy.labels))
    regions = list(dict.fromkeys(label.region for label in taxonomy.labels))
    lines = ['<View style="display: flex; gap: 10px">']
    for region in regions:
        lines += ['  <View style="flex: 1 1 50%; min-width: 0">',
                  f"    <Header value={quoteattr(REGION_TITLES.get(region, region))} size=\"5\" style=\"{_SUBHEADER_STYLE}\"/>"]
        for group in groups:
            members = [lab for lab in taxonomy.labels if (lab.group, lab.region) == (group, region)]
            if not members:
                continue
            lines.append(f"    <Header value={quoteattr(GROUP_TITLES.get(group, group))} size=\"5\" "
                         f"style=\"{_GROUP_STYLE}\"/>")
            for label in members:
                html = f"{escape(label.name)} <small>{escape(label.hint)}</small>"
                lines.append(f"    <Choice value={quoteattr(label.name)} hotkey={quoteattr(keys[label.name])} "
                             f"html={quoteattr(html)} hint={quoteattr(label.description)}/>")
        lines.append("  </View>")
    lines.append("</View>")
    return lines


def labeling_config_xml(taxonomy: Taxonomy | None = None) -> str:
    """Build the labeling config XML from the taxonomy.

    Args:
        taxonomy: defaults to ``annotations/taxonomy.yaml``.

    Returns:
        The XML text (deterministic: same taxonomy, same bytes).

    Raises:
        ValueError: hotkeys shared or reserved (``hotkeys``).
    """
    taxonomy = taxonomy or load_taxonomy()
    keys = hotkeys(taxonomy)
    lines = [
        f"<!-- Generated from annotations/taxonomy.yaml (version {taxonomy.version}) by "
        "`kvasir-ml ls config`. Do not edit by hand. -->",
        "<View>",
        f"  <Style>{_PANEL_CSS}</Style>",
        '  <View style="display: flex; align-items: flex-start">',
        f"    <View style={quoteattr(_IMAGE_STYLE)}>",
        f'      <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true" maxHeight="calc(100vh - 150px)"/>',
        "    </View>",
        f"    <View className=\"kv-panel\" style={quoteattr(_PANEL_STYLE)}>",
        '      <Header value="Inset: position map, bottom left (required)" size="5"/>',
        f'      <Choices name="{INSET_NAME}" toName="{IMAGE_NAME}" choice="single-radio" showInline="true" required="true" '
        'requiredMessage="Choose the inset state (g green, b black, n none) before submitting">',
    ]
    for state in taxonomy.inset_states:
        key = keys["inset"][state]
        lines.append(f"        <Choice value={quoteattr(state)} hotkey={quoteattr(key)} "
                     f"/>")
    lines += [
        "      </Choices>",
        '      <Header value="Boxes: axis-aligned, around each finding" size="5"/>',
        f'      <RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}" canRotate="false" strokeWidth="2" showInline="true">',
    ]
    for i, box in enumerate(taxonomy.box_classes):
        colour = _BOX_COLOURS[i % len(_BOX_COLOURS)]
        key = keys["boxes"][box.name]
        lines.append(f"        <Label value={quoteattr(box.name)} background={quoteattr(colour)} hotkey={quoteattr(key)} "
                     f"hint={quoteattr(box.description)}/>")
    lines += [
        "      </RectangleLabels>",
        '      <Header value="Image-level labels (all that apply)" size="5"/>',
        f'      <Choices name="{LABELS_NAME}" toName="{IMAGE_NAME}" choice="multiple">',
        *["        " + line for line in _label_choices(taxonomy, keys["labels"])],
        "      </Choices>",
        "    </View>",
        "  </View>",
        "</View>",
        "",
    ]
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


# ---- video tasks ------------------------------------------------------------------------------
VIDEO_NAME = "video"  # <Video name=...> and the task data key holding the video URL
VIDEO_BOXES_NAME = "box"  # <VideoRectangle name=...>: one region per track
VIDEO_LABELS_NAME = "videoLabels"  # <Labels name=...>: the track's box class


def video_labeling_config_xml(fps: float, taxonomy: Taxonomy | None = None) -> str:
    """The labeling config of video tasks: the video, a ``VideoRectangle`` per track and the
    taxonomy's box classes as its ``Labels``.

    Args:
        fps: the videos' frame rate. Label Studio takes it from the config, not the file, so one
            project holds videos of one rate (``push_video`` refuses others).
        taxonomy: defaults to ``annotations/taxonomy.yaml``.
    """
    taxonomy = taxonomy or load_taxonomy()
    if not fps > 0:
        raise ValueError(f"video labeling config: fps must be > 0, got {fps}")
    lines = [
        f"<!-- Generated from annotations/taxonomy.yaml (version {taxonomy.version}) by kvasir-ml for video "
        "tasks. Do not edit by hand. -->",
        "<View>",
        '  <Header value="Correct each track: move its box on a keyframe, end it where the finding leaves view" '
        'size="5"/>',
        f'  <Video name="{VIDEO_NAME}" value="${VIDEO_NAME}" framerate={quoteattr(repr(float(fps)))}/>',
        f'  <VideoRectangle name="{VIDEO_BOXES_NAME}" toName="{VIDEO_NAME}"/>',
        f'  <Labels name="{VIDEO_LABELS_NAME}" toName="{VIDEO_NAME}">',
    ]
    for i, box in enumerate(taxonomy.box_classes):
        colour = _BOX_COLOURS[i % len(_BOX_COLOURS)]
        lines.append(f"    <Label value={quoteattr(box.name)} background={quoteattr(colour)} "
                     f"hint={quoteattr(box.description)}/>")
    lines += ["  </Labels>", "</View>", ""]
    return "\n".join(lines)
