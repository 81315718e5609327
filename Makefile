# kvasir_ml — two commands on a fresh clone:
#   make demo   set up .venv and run the main job (quickstart) on the built-in synthetic data
#   make test   set up .venv and run the test suite (CI runs make lint, then this)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keep tools that like to write into $HOME (ultralytics, wandb, matplotlib) inside the checkout.
export MPLBACKEND := Agg

.PHONY: setup demo test test-all lint bench gpu-check clean

setup: $(STAMP)

# torch/torchvision pinned to the builds that lie on local disk (no multi-GB download), and
# the package with its dev extras (pytest, hypothesis, the Label Studio server), in one uv
# call (pip as the fallback): scripts/setup_env.sh says why and what it measured. Re-runs
# only when pyproject.toml or the script changes.
$(STAMP): pyproject.toml setup.py scripts/setup_env.sh requirements.lock
	PYTHON=$(PYTHON) bash scripts/setup_env.sh $(VENV)
	@touch $@

demo: setup
	$(VENV)/bin/kvasir-ml quickstart --out runs/quickstart

test: setup
	$(PY) -m pytest

# ruff, then mypy on kvasir_ml/ and scripts/ (pyproject.toml [tool.ruff], [tool.mypy] files; cache in
# .mypy_cache/); CI (.ci/run) runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check kvasir_ml tests scripts
	$(PY) -m mypy

# Everything, slow tests included (GPU tests skip without a GPU).
test-all: setup
	$(PY) -m pytest -m ''

# The GPU check on a GPU host (~8 min): results.json + logs in $(OUT) (default runs/gpu-check).
# Hosts without network access: docs/gpu-check.md (scripts/device/prepare.sh and run.sh).
OUT ?= runs/gpu-check
gpu-check: setup
	$(PY) scripts/gpu_check.py --out $(OUT)

clean:
	rm -rf runs .pytest_cache .mypy_cache
