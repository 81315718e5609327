"""docs/schemas/*.schema.json are generated from kvasir_ml/results_schema.py and must be current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _exporter():
    spec = importlib.util.spec_from_file_location("export_schemas", REPO / "scripts" / "export_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_schemas_are_current():
    stale = _exporter().stale_files(write=False)
    assert not stale, f"{stale} out of date with kvasir_ml/results_schema.py: run python scripts/export_schemas.py"


def test_schemas_carry_the_version_and_a_change_is_detected(tmp_path):
    mod = _exporter()
    assert sorted(mod.stale_files(tmp_path, write=True)) == sorted(mod.schema_texts())
    for name in mod.schema_texts():
        assert "schema_version" in json.loads((tmp_path / name).read_text())["properties"]
    assert mod.stale_files(tmp_path) == []
    (tmp_path / "metrics.schema.json").write_text("{}")
    assert mod.stale_files(tmp_path) == ["metrics.schema.json"]
