"""Config composition: ``base:`` chains deep-merged (the child wins), validated once; ``kind:``
names the model (never the file name); ``config show`` prints the resolved whole.

``config_reference/resolved_before_composition.json`` holds every shipped config as it resolved
before the variants were rewritten onto their bases (commit 38ae278, full files). If you change
a shipped config on purpose, regenerate it: ``python tests/test_config_compose.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import ConfigError, deep_merge, dump_config, load_config
from kvasir_ml.configdoc import kind_of, model_class, rendered_file, show_config, sync_configs
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.train.config import ClassifierConfig

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).parent / "config_reference" / "resolved_before_composition.json"
VARIANTS = ["classifier_multilabel_resnet50_masked.yaml", "classifier_multilabel_resnet50_raw.yaml",
            "classifier_singlelabel_resnet50.yaml", "classifier_singlelabel_tiny.yaml", "experiment_compare_tiny.yaml"]


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"x": 1, "y": [1, 2], "z": {"deep": 1, "keep": 2}}, "b": 1}
    child = {"a": {"y": [3], "z": {"deep": 9}}, "b": None, "c": 4}
    assert deep_merge(base, child) == {"a": {"x": 1, "y": [3], "z": {"deep": 9, "keep": 2}}, "b": None, "c": 4}
    assert base["a"]["y"] == [1, 2]  # inputs untouched


def test_child_wins_sections_merge_and_lists_are_replaced(tmp_path):
    _write(tmp_path / "common" / "base.yaml", {
        "kind": "classifier", "name": "base",
        "optim": {"epochs": 3, "lr": 0.01}, "tracking": {"tags": ["a", "b"], "group": "g"}})
    _write(tmp_path / "mid.yaml", {"base": "common/base.yaml", "optim": {"epochs": 5}, "tracking": {"tags": ["c"]}})
    leaf = _write(tmp_path / "runs" / "leaf.yaml", {"base": "../mid.yaml", "name": "leaf", "optim": {"lr": 0.5}})
    cfg = load_config(ClassifierConfig, leaf)
    assert cfg.name == "leaf" and cfg.optim.epochs == 5 and cfg.optim.lr == 0.5  # nearest file wins
    assert cfg.tracking.tags == ["c"] and cfg.tracking.group == "g"  # list replaced, sibling key kept
    assert cfg.optim.warmup_epochs == ClassifierConfig().optim.warmup_epochs  # untouched: the model's default
    assert load_config(ClassifierConfig, leaf, ["optim.epochs=7"]).optim.epochs == 7  # overrides come last


def test_a_cycle_is_refused_naming_its_files(tmp_path):
    _write(tmp_path / "a.yaml", {"base": "b.yaml", "kind": "classifier"})
    _write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(ClassifierConfig, tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", {"base": "self.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(ClassifierConfig, tmp_path / "self.yaml")


def test_a_missing_or_malformed_base_is_refused_naming_both_files(tmp_path):
    child = _write(tmp_path / "child.yaml", {"base": "nowhere.yaml", "kind": "classifier"})
    with pytest.raises(ConfigError, match=r"child\.yaml: base 'nowhere.yaml' not found \(looked for .*nowhere\.yaml\)"):
        load_config(ClassifierConfig, child)
    _write(tmp_path / "child.yaml", {"base": ["a.yaml"]})
    with pytest.raises(ConfigError, match="base must be a config file name"):
        load_config(ClassifierConfig, child)


def test_an_error_in_a_base_names_the_chain(tmp_path):
    _write(tmp_path / "base.yaml", {"kind": "classifier", "optim": {"epochz": 3}})
    child = _write(tmp_path / "child.yaml", {"base": "base.yaml"})
    with pytest.raises(ConfigError, match=r"did you mean 'epochs'.*child\.yaml or its base .*base\.yaml"):
        load_config(ClassifierConfig, child)


@pytest.mark.parametrize("name", sorted(json.loads(REFERENCE.read_text(encoding="utf-8"))))
def test_shipped_configs_resolve_as_they_did_before_composition(name):
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))[name]
    path = REPO / "configs" / name
    assert kind_of(path) == ref["kind"]
    now = dump_config(load_config(model_class(ref["kind"]), path))
    changed = sorted(k for k in ref["config"] if now.get(k) != ref["config"][k])
    assert not changed, f"{name} resolves differently in {changed} (on purpose? regenerate {REFERENCE.name})"


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_hold_only_what_differs_from_their_base(name):
    path = REPO / "configs" / name
    own = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert own["base"] and (path.parent / own["base"]).is_file()
    keys = {k for k in own if k not in ("base", "kind")}
    assert len(path.read_text(encoding="utf-8").splitlines()) < 30 and keys, f"{name} lists more than a variant"


@pytest.mark.parametrize("name", ["classifier_singlelabel_resnet50.yaml", "experiment_compare_tiny.yaml",
                                  "detector_tiny.yaml"])
def test_show_prints_the_whole_config_which_loads_back_to_the_same(name, tmp_path, capsys):
    overrides, path = ["tracking.project=p2"], str(REPO / "configs" / name)
    assert cli_main(["config", "show", path, *overrides]) == 0
    text = capsys.readouterr().out
    assert "base" not in yaml.safe_load(text)  # resolved whole: no chain left to follow
    copy = _write(tmp_path / "shown.yaml", {})
    copy.write_text(text, encoding="utf-8")
    kind = kind_of(copy)
    assert kind == kind_of(REPO / "configs" / name)
    assert load_config(model_class(kind), copy) == load_config(model_class(kind), path, overrides)


def test_kind_comes_from_the_file_not_its_name(tmp_path):
    """A variant and its base renamed to names promising another kind still load as classifiers."""
    src = REPO / "configs"
    shutil.copyfile(src / "classifier_multilabel_resnet50.yaml", tmp_path / "detector_looks_like.yaml")
    text = (src / "classifier_multilabel_resnet50_masked.yaml").read_text(encoding="utf-8")
    (tmp_path / "experiment_ablation.yaml").write_text(
        text.replace("base: classifier_multilabel_resnet50.yaml", "base: detector_looks_like.yaml"), encoding="utf-8")
    renamed = tmp_path / "experiment_ablation.yaml"
    assert kind_of(renamed) == "classifier"
    assert load_config(ClassifierConfig, renamed) == load_config(ClassifierConfig, src / "classifier_multilabel_resnet50_masked.yaml")
    assert "kind: classifier" in show_config(renamed)
    sync_configs(tmp_path)  # regenerated by its kind (the base line's padding changed with its name)
    assert sync_configs(tmp_path, check=True) == [] and kind_of(renamed) == "classifier"
    assert load_config(ClassifierConfig, renamed).model.inset_mode == "masked"
    with pytest.raises(ConfigError, match=r"is a classifier config \(kind: classifier\); this reads detector"):
        load_config(DetectorConfig, renamed)


def test_a_file_without_kind_or_with_an_unknown_kind_is_refused_clearly(tmp_path):
    plain = _write(tmp_path / "classifier_named.yaml", {"optim": {"epochs": 2}})
    with pytest.raises(ConfigError, match=r"classifier_named\.yaml: no `kind:` key; add `kind: classifier\|detector"):
        kind_of(plain)
    assert load_config(ClassifierConfig, plain).optim.epochs == 2  # the caller names the model: accepted
    odd = _write(tmp_path / "odd.yaml", {"kind": "segmenter"})
    with pytest.raises(ConfigError, match="kind 'segmenter' is not one of classifier, detector, experiment"):
        load_config(ClassifierConfig, odd)
    assert cli_main(["config", "show", str(plain)]) == 2
    assert cli_main(["config", "show", str(plain), "--kind", "classifier"]) == 0


def test_sync_writes_a_variant_as_its_own_keys_documented(tmp_path):
    shutil.copyfile(REPO / "configs" / "classifier_multilabel_tiny.yaml", tmp_path / "tiny.yaml")
    variant = _write(tmp_path / "variant.yaml", {"base": "tiny.yaml", "optim": {"epochs": 9}, "name": "v"})
    assert sync_configs(tmp_path, check=True) == [variant]
    before = load_config(ClassifierConfig, variant)
    sync_configs(tmp_path)
    text = variant.read_text(encoding="utf-8")
    assert text == rendered_file(variant) and load_config(ClassifierConfig, variant) == before
    lines = [line for line in text.splitlines() if line.strip()]
    assert [line.split(":")[0] for line in lines] == ["base", "kind", "name", "optim", "  epochs"]
    assert "# (int, >= 1) total epochs" in lines[-1]


if __name__ == "__main__":  # regenerate the reference (see the module docstring)
    out = {}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if "kind" in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) or "base" in path.read_text():
            kind = kind_of(path)
            out[path.name] = {"kind": kind, "config": dump_config(load_config(model_class(kind), path))}
    REFERENCE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE} ({len(out)} configs)", file=sys.stderr)
