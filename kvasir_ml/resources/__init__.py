"""Files the package ships: the taxonomy, the labeling config and the experiment configs.

They live at the top of the repository (``annotations/``, ``configs/``), where people look
for them, and travel inside the wheel as ``kvasir_ml.resources.annotations`` and
``kvasir_ml.resources.configs`` (``setup.py`` maps the folders). Code reads them through
``importlib.resources`` only, so ``kvasir-ml`` works from any directory after a plain
``pip install`` as well as from an editable checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ANNOTATIONS_PACKAGE = "kvasir_ml.resources.annotations"
CONFIGS_PACKAGE = "kvasir_ml.resources.configs"


def _folder(package: str) -> Path:
    """The folder of a resource package.

    Installed wheels and editable installs are plain folders, so the Traversable is a Path.
    A source tree used without installing (``PYTHONPATH=checkout``, as the offline GPU host
    does) has no mapped packages: the folders are then the checkout's own, beside the package.
    """
    try:
        return Path(str(files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / package.rsplit(".", 1)[-1]


def annotation_file(name: str) -> Path:
    """Path of a shipped annotation file (``taxonomy.yaml``, ``labeling_config.xml``)."""
    return _folder(ANNOTATIONS_PACKAGE) / name


def configs_dir() -> Path:
    """The folder holding the shipped experiment configs (``configs/`` in a checkout)."""
    return _folder(CONFIGS_PACKAGE)


def find_config(path: str | Path) -> Path | None:
    """``path`` if it is a file; else the shipped config it names (``configs/<name>.yaml`` or ``<name>.yaml``).

    A user's own file always wins over a shipped one of the same name. Returns None when
    neither exists.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_absolute() or (len(path.parts) > 1 and path.parts[:-1] != ("configs",)):
        return None
    shipped = configs_dir() / path.name
    return shipped if shipped.is_file() else None
