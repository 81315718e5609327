"""Config documentation has one source (the models' Field descriptions): every key is
described, configs/ is generated from the models, and errors name their origin."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kvasir_ml.config import ConfigError, load_config
from kvasir_ml.configdoc import CONFIG_KINDS, field_docs, kind_of, model_class, render_config, show_config, sync_configs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", sorted(CONFIG_KINDS))
def test_every_key_has_a_description(kind):
    missing = [f.key for f in field_docs(model_class(kind)) if not f.description.strip()]
    assert not missing, f"{kind} config keys without Field(description=...): {missing}"


def test_configs_folder_is_generated_from_the_models():
    stale = sync_configs(REPO / "configs", check=True)
    assert not stale, f"run `kvasir-ml config sync`: {[p.name for p in stale]} differ from the models"


MODEL_CONFIGS = sorted(p for p in (REPO / "configs").glob("*_*.yaml") if not p.name.startswith("sweep_"))


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.name)
def test_rendered_yaml_loads_back_to_the_same_config(path, tmp_path):
    model = model_class(kind_of(path))
    cfg = load_config(model, path)
    text = render_config(cfg, "# header")
    assert text.startswith("# header\n\n")
    copy = tmp_path / path.name
    copy.write_text(text)
    assert load_config(model, copy) == cfg
    assert len([line for line in text.splitlines() if "# (" in line]) == sum(
        1 for f in field_docs(model) if not f.is_section)


def test_show_marks_overrides_and_describes_each_key():
    text = show_config("classifier_multilabel_tiny.yaml", ["optim.lr=0.01"])
    lr = next(line for line in text.splitlines() if line.strip().startswith("lr:"))
    assert "0.01" in lr and "[set]" in lr and "learning rate" in lr
    epochs = next(line for line in text.splitlines() if line.strip().startswith("epochs:"))
    assert "[set]" not in epochs
    assert yaml.safe_load(text)["optim"]["lr"] == 0.01


def test_errors_name_the_override_and_suggest_the_closest_key():
    with pytest.raises(ConfigError) as err:
        load_config(model_class("classifier"), "classifier_multilabel_tiny.yaml", ["optim.lrr=3", "optim.epochs=x"])
    text = str(err.value)
    assert "optim.lrr: unknown key (did you mean 'lr'?)" in text and "[from override 'optim.lrr=3']" in text
    assert "optim.epochs:" in text and "[from override 'optim.epochs=x']" in text


def test_errors_name_the_file_when_the_file_is_wrong(tmp_path):
    bad = tmp_path / "classifier_bad.yaml"
    bad.write_text("optim:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"did you mean 'epochs'.*\[from config file .*classifier_bad.yaml\]"):
        load_config(model_class("classifier"), bad)


def test_detector_cache_accepts_what_its_description_says():
    cfg = model_class("detector")
    assert load_config(cfg, None, ["train.cache=true"]).train.cache is True
    assert load_config(cfg, None, ["train.cache=disk"]).train.cache == "disk"
    with pytest.raises(ConfigError, match="train.cache"):
        load_config(cfg, None, ["train.cache=gpu"])
