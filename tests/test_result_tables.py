"""The result tables in docs/ are generated from benchmarks/results/*.json and must be current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_result_tables", REPO / "scripts" / "render_result_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_in_docs_are_current():
    stale = _renderer().stale_pages(write=False)
    assert not stale, f"{stale} out of date with benchmarks/results: run python scripts/render_result_tables.py"


def test_every_results_file_gets_a_row_and_new_numbers_change_the_page(tmp_path):
    mod = _renderer()
    block = mod.benchmarks_block()
    for path in (REPO / "benchmarks" / "results").glob("*.json"):
        if not path.name.startswith("gpu_check_"):
            assert f"`{path.name}`" in block
    (tmp_path / "bench_new_cpu.json").write_text(json.dumps({"img_s": 12.5, "note": "x"}))
    assert "img_s 12.5" in mod.benchmarks_block(tmp_path)  # an unknown benchmark still shows its numbers
    text = "a\n<!-- BEGIN GENERATED: x -->\nold\n<!-- END GENERATED: x -->\nb\n"
    assert mod.render(text, "x", "new") == "a\n<!-- BEGIN GENERATED: x -->\nnew\n<!-- END GENERATED: x -->\nb\n"
    with pytest.raises(ValueError, match="no generated block"):
        mod.render("no markers", "x", "new")
