"""Contract: every config path named in configs/, docs/, the README, scripts/ and the package
exists and loads with the config model it is meant for (a sweep once pointed at a file that
did not exist)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from kvasir_ml.config import load_config, read_yaml_mapping
from kvasir_ml.configdoc import kind_of
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.experiment.config import load_experiment_config
from kvasir_ml.train.config import load_classifier_config

REPO = Path(__file__).resolve().parents[1]
# A path as text: configs/<name>.yaml, where <name> may hold a glob (*) or a {a,b} group.
CONFIG_REF = re.compile(r"configs/[A-Za-z0-9_.*{},-]+?\.yaml")
SOURCES = ["README.md", "docs/*.md", "configs/*.yaml", "scripts/*.py", "kvasir_ml/**/*.py", "Makefile"]


def _expand_braces(ref: str) -> list[str]:
    parts = re.split(r"(\{[^}]*\})", ref)
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*choices)]


def _named_config_paths() -> dict[str, set[str]]:
    """{path or glob as written (braces expanded): {files that name it}}."""
    refs: dict[str, set[str]] = {}
    for pattern in SOURCES:
        for src in REPO.glob(pattern):
            for ref in CONFIG_REF.findall(src.read_text(encoding="utf-8")):
                for one in _expand_braces(ref):
                    refs.setdefault(one, set()).add(str(src.relative_to(REPO)))
    return refs


def _load(path: Path) -> None:
    """Load ``path`` with the model its ``kind:`` names (a W&B sweep file: its trial command's config)."""
    raw = read_yaml_mapping(path)
    if "kind" not in raw and {"command", "parameters"} <= set(raw):
        _check_sweep(path)
        return
    kind = kind_of(path)  # the file's (or its base's) `kind:`, never its name
    if kind == "classifier":
        load_classifier_config(path)
    elif kind == "detector":
        load_config(DetectorConfig, path)
    else:
        cfg = load_experiment_config(path)
        for task, base in cfg.base_configs.items():
            base_path = REPO / base
            assert base_path.is_file(), f"{path}: base config of {task} {base} does not exist"
            load_classifier_config(base_path, cfg.overrides)


def _sample(spec: dict) -> object:
    if "values" in spec:
        return spec["values"][0]
    if "value" in spec:
        return spec["value"]
    return spec["min"]


def _check_sweep(path: Path) -> None:
    """The trial command's --config loads, and so does every sampled parameter as an override."""
    from kvasir_ml.train.report import SCALAR_KEYS

    sweep = yaml.safe_load(path.read_text(encoding="utf-8"))
    command = sweep["command"]
    config = REPO / command[command.index("--config") + 1]
    assert config.is_file(), f"{path}: the trial command's --config {config} does not exist"
    for key, spec in sweep["parameters"].items():
        load_classifier_config(config, [f"{key}={_sample(spec)}"])
    logged = {f"val_{k}" for k in SCALAR_KEYS} | {"val_loss", "train_loss"}
    assert sweep["metric"]["name"] in logged, f"{path}: metric {sweep['metric']['name']} is never logged"


def test_config_references_are_found():
    refs = _named_config_paths()
    assert "configs/sweep_classifier.yaml" in refs
    assert "configs/classifier_multilabel_resnet50_masked.yaml" in refs  # from a {,_masked,_raw} group


@pytest.mark.parametrize("ref", sorted(_named_config_paths()))
def test_every_named_config_exists_and_loads(ref):
    where = ", ".join(sorted(_named_config_paths()[ref]))
    matches = sorted(REPO.glob(ref)) if "*" in ref else [REPO / ref]
    assert matches and all(m.is_file() for m in matches), f"{ref} (named in {where}) does not exist"
    for path in matches:
        _load(path)


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads(path):
    _load(path)
