"""A normal (non-editable) install works: the wheel carries the taxonomy, the labeling
config and the configs, and ``kvasir-ml`` runs from a folder that is not the checkout."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tracked files (the checkout gets no build/ or egg-info)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", "-w", str(out), str(src)], check=True, cwd=out, env=env)
    (whl,) = out.glob("kvasir_ml-*.whl")
    return whl


def test_wheel_ships_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kvasir_ml/resources/annotations/taxonomy.yaml" in names
    assert "kvasir_ml/resources/annotations/labeling_config.xml" in names
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("kvasir_ml/resources/configs/")}
    assert {p.name for p in (REPO / "configs").glob("*.yaml")} <= shipped
    assert not any(n.startswith(("tests/", "scripts/", "annotations/", "configs/")) for n in names)


def test_installed_wheel_trains_from_another_folder(wheel, tmp_path):
    """Install the wheel into a fresh venv (dependencies borrowed from this one through a .pth
    line, which does not run this checkout's editable hook) and train a tiny model elsewhere."""
    venv = tmp_path / "venv"
    # --without-pip: this pip installs into it (pip --python), which spares seconds of ensurepip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, env=env)
    new_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (new_site / "borrowed_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import kvasir_ml; print(kvasir_ml.__file__)"], cwd=elsewhere, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"kvasir_ml imported from {where}, not the installed wheel"
    cli = venv / "bin" / "kvasir-ml"
    run = subprocess.run(
        [str(cli), "train", "classifier", "--config", "classifier_multilabel_tiny.yaml", "--out", "run",
         "optim.epochs=1", "data.synthetic_n=32", "data.image_size_px=32", "model.branch_size_px=16",
         "tracking.mode=disabled"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((elsewhere / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["macro_ap"] <= 1.0
    assert not (REPO / "run").exists()
    xml = subprocess.run([str(cli), "ls", "config", "--out", "-"], cwd=elsewhere, env=env,
                         check=True, capture_output=True, text=True).stdout
    assert xml == (REPO / "annotations" / "labeling_config.xml").read_text(encoding="utf-8")
