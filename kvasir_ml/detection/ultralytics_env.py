"""Offline-safe import and settings of ultralytics (8.4.x), below every other detection module.

Importing and running ultralytics touches the network in several places. Each one, and
how this module stops it (measured on 8.4.190):

1. Import: ``ultralytics.utils.ONLINE = is_online()`` resolves one.one.one.one / dns.google.
   -> ``YOLO_OFFLINE=1`` before the first import (ONLINE is then False, no DNS query).
2. ``Model.train`` -> ``check_pip_update_available()`` GETs pypi.org when ONLINE.
   -> skipped because ONLINE is False.
3. Dataset checks and plotting -> ``check_font("Arial.ttf")``: HEAD + download of the font
   from the ultralytics assets host, even with YOLO_OFFLINE=1 and plots=False.
   -> a TTF named ``Arial.ttf`` (matplotlib's DejaVuSans.ttf) in ``$YOLO_CONFIG_DIR/Ultralytics/``
   (``Arial.Unicode.ttf`` too, used for non-ASCII class names).
4. Trainer -> ``check_amp()`` on CUDA loads ``WEIGHTS_DIR/yolo26n.pt`` (a download) when
   ``amp=True``. -> we never pass ``amp=True``: ``amp="bf16"`` (documented in
   ``cfg/default.yaml``: "True/'fp16' (AMP check), 'bf16', or False/'fp32'") skips the check;
   on CPU ``amp=False``.
5. Usage analytics (``utils/events.py``, Google Analytics) -> settings ``sync=False`` and
   ONLINE False.
6. Platform/hub streaming (``callbacks/platform.py``) when ``ULTRALYTICS_API_KEY`` or settings
   ``api_key`` is set -> settings ``api_key=""`` and the env key is removed while we train.
7. Integration callbacks (comet, clearml, mlflow, dvc, raytune, tensorboard, wandb) ->
   all off in settings; W&B logging is ours (``kvasir_ml.tracking``).

Settings, weights/datasets/runs folders live in ``$YOLO_CONFIG_DIR`` (default: the
project cache ``.cache/ultralytics`` of this checkout), never in the user's home.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

log = logging.getLogger(__name__)

# Relative to the working directory (the checkout, usually): never in ~, and never inside an
# installed package. YOLO_CONFIG_DIR in the environment wins.
DEFAULT_CONFIG_DIR = Path(".cache") / "ultralytics"
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
# Every network-facing integration off; sync=False stops the analytics events.
OFFLINE_SETTINGS = {
    "sync": False,
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}


class WeightsError(ValueError):
    """A weights path does not exist or is not a local file (no hub downloads)."""


def install_fonts(settings_dir: Path) -> None:
    """Put matplotlib's DejaVuSans.ttf into ``settings_dir`` under the names ultralytics fetches."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    settings_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = settings_dir / name
        if not target.exists():
            shutil.copyfile(source, target)


def ensure_ultralytics(config_dir: str | Path | None = None) -> ModuleType:
    """Import ultralytics with everything that reaches the network turned off.

    Args:
        config_dir: folder for ultralytics' settings (``YOLO_CONFIG_DIR``); used only when
            ultralytics is not imported yet and ``YOLO_CONFIG_DIR`` is not already set.
            Default: ``.cache/ultralytics`` under the working directory.

    Returns:
        The ``ultralytics`` module.
    """
    if "ultralytics" not in sys.modules:
        # ultralytics reads these at import time; they must be set before it.
        if not os.environ.get("YOLO_CONFIG_DIR"):
            os.environ["YOLO_CONFIG_DIR"] = str(Path(config_dir or DEFAULT_CONFIG_DIR).resolve())
        os.environ["YOLO_OFFLINE"] = "1"
        install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")
    import ultralytics
    from ultralytics import utils as ul_utils
    from ultralytics.utils import events

    # The folder may have been cleaned since the import (temporary run folders): re-check.
    install_fonts(ul_utils.USER_CONFIG_DIR)
    if ul_utils.ONLINE:
        log.warning("ultralytics was imported before kvasir_ml set YOLO_OFFLINE=1: it may run online checks")
    root = ul_utils.USER_CONFIG_DIR
    wanted = dict(OFFLINE_SETTINGS)
    wanted.update(
        datasets_dir=str(root / "datasets"), weights_dir=str(root / "weights"), runs_dir=str(root / "runs")
    )
    changes = {k: v for k, v in wanted.items() if ul_utils.SETTINGS.get(k) != v}
    if changes:
        ul_utils.SETTINGS.update(changes)
    # Events() read `sync` when ultralytics was imported; keep it off if that was before us.
    events.events.enabled = False
    _stop_pil_plugin_install()
    return ultralytics


def _stop_pil_plugin_install() -> None:
    """Keep ultralytics' global ``PIL.Image.open`` patch from installing packages.

    Importing ultralytics replaces ``PIL.Image.open`` process-wide with a wrapper that, on the
    first file PIL cannot identify, pip-installs ``pi-heif`` (a network call) and then fails
    with ``ModuleNotFoundError`` offline — so a corrupt image anywhere in the process (our
    indexers, ``load_rgb``) stopped raising our ``ImageError``. Marking its plugins as already
    registered makes the wrapper call the original ``Image.open`` directly. HEIC input is
    not supported by this project anyway.
    """
    try:
        from ultralytics.utils import patches
    except ImportError:  # older/newer layouts without the patch
        return
    if hasattr(patches, "_pil_plugins_registered"):
        patches._pil_plugins_registered = True


@contextlib.contextmanager
def no_platform_key() -> Iterator[None]:
    """Hide ``ULTRALYTICS_API_KEY`` while ultralytics runs (it would stream to its platform)."""
    saved = os.environ.pop("ULTRALYTICS_API_KEY", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["ULTRALYTICS_API_KEY"] = saved
