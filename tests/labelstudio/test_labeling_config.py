"""The labeling config is generated from the taxonomy, the checked-in copy is in sync, and the
page is built for annotators: required inset, unique mnemonic hotkeys, grouped labels."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from kvasir_ml.labelstudio.labeling_config import (
    BOXES_NAME, DEFAULT_CONFIG_PATH, INSET_NAME, LABELS_NAME, RESERVED_HOTKEYS, labeling_config_xml,
)
from kvasir_ml.taxonomy import TaxonomyError, _parse
from kvasir_ml.taxonomy import load_taxonomy


def _controls(root):
    return {el.get("name"): el for el in root.iter() if el.tag in ("Choices", "RectangleLabels")}


def test_checked_in_config_matches_generated():
    assert DEFAULT_CONFIG_PATH.read_text(encoding="utf-8") == labeling_config_xml(), (
        "annotations/labeling_config.xml is out of date: run `kvasir-ml ls config`"
    )


def test_config_structure_follows_taxonomy():
    tax = load_taxonomy()
    root = ET.fromstring(labeling_config_xml())
    assert len(list(root.iter("Image"))) == 1
    controls = _controls(root)
    assert set(controls) == {BOXES_NAME, LABELS_NAME, INSET_NAME}
    rect = controls[BOXES_NAME]
    assert rect.get("canRotate") == "false"
    assert [lab.get("value") for lab in rect.iter("Label")] == tax.box_class_names
    labels, inset = controls[LABELS_NAME], controls[INSET_NAME]
    assert labels.get("choice") == "multiple"
    assert sorted(c.get("value") for c in labels.iter("Choice")) == sorted(tax.label_names)
    assert inset.get("choice") in ("single", "single-radio")
    assert [c.get("value") for c in inset.iter("Choice")] == list(tax.inset_states)


def test_inset_is_required_so_an_empty_submit_cannot_wipe_a_frame():
    inset = _controls(ET.fromstring(labeling_config_xml()))[INSET_NAME]
    assert inset.get("required") == "true" and inset.get("requiredMessage")


def test_hotkeys_are_mnemonic_unique_and_clear_of_label_studio_keys():
    root = ET.fromstring(labeling_config_xml())
    keys = {el.get("value") + "@" + el.tag: el.get("hotkey") for el in root.iter() if el.tag in ("Choice", "Label")}
    assert all(keys.values()), f"controls without a hotkey: {[k for k, v in keys.items() if not v]}"
    assert len(set(keys.values())) == len(keys), "two controls share a hotkey"
    assert not set(keys.values()) & RESERVED_HOTKEYS
    assert keys["polyp@Choice"] == "p"
    assert (keys["green@Choice"], keys["black@Choice"], keys["none@Choice"]) == ("g", "b", "n")
    assert keys["polyp@Label"] == "shift+p"


def test_labels_are_grouped_under_headers_with_visible_hints():
    tax = load_taxonomy()
    labels = _controls(ET.fromstring(labeling_config_xml()))[LABELS_NAME]
    headers = [h.get("value") for h in labels.iter("Header")]
    for title in ("upper GI", "lower GI", "Landmarks", "Findings", "Procedure", "Bowel prep / quality"):
        assert title in headers
    for choice in labels.iter("Choice"):
        label = next(lab for lab in tax.labels if lab.name == choice.get("value"))
        assert choice.get("html", "").startswith(label.name) and "<small>" in choice.get("html")
        assert choice.get("hint") == label.description


def test_cli_config_writes_file(tmp_path):
    from kvasir_ml.cli import main

    out = tmp_path / "cfg.xml"
    assert main(["ls", "config", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == labeling_config_xml()


def test_hotkeys_and_hints_come_from_the_taxonomy_and_clashes_are_refused():
    tax = load_taxonomy()
    polyp = next(lab for lab in tax.labels if lab.name == "polyp")
    root = ET.fromstring(labeling_config_xml(tax))
    choice = next(el for el in root.iter("Choice") if el.get("value") == "polyp")
    assert choice.get("hotkey") == polyp.hotkey and polyp.hint in choice.get("html")
    # a key Label Studio uses itself ("r": rectangle tool) is refused, naming it
    reserved = dataclasses.replace(tax, labels=tuple(dataclasses.replace(lab, hotkey="r") if lab is polyp else lab
                                                     for lab in tax.labels))
    with pytest.raises(ValueError, match=r"\['r'\] are shared or reserved"):
        labeling_config_xml(reserved)
    # two labels with one key never load
    raw = {"version": 1, "inset_states": list(tax.inset_states), "box_classes": [], "sources": {},
           "labels": [{"name": "a", "group": "finding", "region": "lower", "hotkey": "p"},
                      {"name": "b", "group": "finding", "region": "lower", "hotkey": "p"}]}
    with pytest.raises(TaxonomyError, match="distinct one-letter"):
        _parse(raw, "t.yaml")
