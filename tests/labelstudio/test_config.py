"""The labeling config is generated from the taxonomy and the checked-in copy is in sync."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kvasir_ml.labelstudio.config import DEFAULT_CONFIG_PATH, labeling_config_xml
from kvasir_ml.taxonomy import load_taxonomy


def test_checked_in_config_matches_generated():
    assert DEFAULT_CONFIG_PATH.read_text(encoding="utf-8") == labeling_config_xml(), (
        "annotations/labeling_config.xml is out of date: run `kvasir-ml ls config`"
    )


def test_config_structure_follows_taxonomy():
    tax = load_taxonomy()
    root = ET.fromstring(labeling_config_xml())
    assert len(root.findall("Image")) == 1
    rect = root.find("RectangleLabels")
    assert rect.get("canRotate") == "false"
    assert [lab.get("value") for lab in rect.findall("Label")] == tax.box_class_names
    labels, inset = root.findall("Choices")
    assert labels.get("choice") == "multiple"
    assert [c.get("value") for c in labels.findall("Choice")] == tax.label_names
    assert inset.get("choice") == "single"
    assert [c.get("value") for c in inset.findall("Choice")] == list(tax.inset_states)


def test_cli_config_writes_file(tmp_path):
    from kvasir_ml.cli import main

    out = tmp_path / "cfg.xml"
    assert main(["ls", "config", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == labeling_config_xml()
