"""Which model the ML backend serves, switched while it runs (hot reload).

A *current-model file* (JSON, written atomically) names the checkpoints and their version::

    {"classifier": "/abs/runs/loop-1/classifier/checkpoints/best.pt" | null,
     "detector": "/abs/runs/loop-1/detector/checkpoints/best.pt" | null,
     "model_version": "kvasir-ml-best+best-1a2b3c4d", "written_at": "2026-...Z"}

``kvasir-ml loop --current-model FILE`` rewrites it after the new models' predictions are
pushed; ``kvasir-ml ls backend --current-model FILE`` watches it (one ``stat`` a second),
loads the new checkpoints *beside* the old ones (requests keep being answered meanwhile), then
swaps model and ``model_version`` together under the backend's lock, so every answer comes
wholly from one model and carries that model's version. Label Studio calls ``/setup`` before
each prediction round and so stores the new version with the next predictions. A file that
cannot be read, or checkpoints that fail to load, leave the old model serving; the reason is
logged and shown by ``/health`` (``reload_error``).

Why a watched file, not a ``/reload`` endpoint or a restart plus reconnect:

* the loop need not find, reach or restart the backend process (it may run in another
  terminal, under a service manager, or not at all: the loop works without one);
* no HTTP request can make the backend open a file of its choosing (checkpoints are
  unpickled; the port is reachable by everything Label Studio lets through); who may switch
  the model is decided by who may write the file;
* a backend restarted later with ``--current-model FILE`` alone serves whatever the last loop
  made current, and Label Studio's registration (the URL) never changes, so nothing reconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kvasir_ml.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

POLL_S = 1.0


class CurrentModelError(ValueError):
    """The current-model file is missing, not JSON, or names no usable checkpoint."""


@dataclass(frozen=True)
class CurrentModel:
    classifier: Path | None
    detector: Path | None
    model_version: str


def write_current_model(path: str | Path, classifier: str | Path | None, detector: str | Path | None,
                        model_version: str) -> Path:
    """Make these checkpoints the current model (atomic: a watcher never reads half a file)."""
    if not classifier and not detector:
        raise ValueError("the current model needs a classifier and/or a detector checkpoint")
    path = Path(path)
    atomic_write_json(path, {"classifier": str(Path(classifier).resolve()) if classifier else None,
                             "detector": str(Path(detector).resolve()) if detector else None,
                             "model_version": model_version,
                             "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return path


def read_current_model(path: str | Path) -> CurrentModel:
    """Read and check a current-model file.

    Raises:
        CurrentModelError: naming the file and what is wrong with it.
    """
    try:
        raw = read_json(path)
    except (OSError, ValueError) as exc:
        raise CurrentModelError(f"current-model file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_version"), str) or not raw["model_version"]:
        raise CurrentModelError(f"current-model file {path}: expected an object with a non-empty 'model_version'")
    ckpts = {}
    for key in ("classifier", "detector"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise CurrentModelError(f"current-model file {path}: '{key}' must be a path or null")
        if value and not Path(value).is_file():
            raise CurrentModelError(f"current-model file {path}: {key} checkpoint {value} does not exist")
        ckpts[key] = Path(value) if value else None
    if not ckpts["classifier"] and not ckpts["detector"]:
        raise CurrentModelError(f"current-model file {path}: names neither a classifier nor a detector")
    return CurrentModel(ckpts["classifier"], ckpts["detector"], raw["model_version"])


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino  # a rename (atomic write) changes the inode


class ModelWatcher:
    """Polls a current-model file and hot-swaps the backend's model when it changes.

    Args:
        backend: has ``swap(predict_fn, model_version)`` and ``serving`` (dict shown by /health).
        path: the current-model file.
        load: ``CurrentModel`` -> predict function (``checkpoint_predict_fn`` with the backend's options).
        poll_s: seconds between checks.
    """

    def __init__(self, backend: Any, path: str | Path, load: Callable[[CurrentModel], Any], poll_s: float = POLL_S):
        self.backend, self.path, self.load, self.poll_s = backend, Path(path), load, poll_s
        self._seen = _stamp(self.path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Reload when the file changed since the last check; returns whether the model was swapped."""
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            current = read_current_model(self.path)
            if current.model_version == self.backend.model_version:
                return False
            t0 = time.perf_counter()
            predict_fn = self.load(current)  # the old model keeps answering meanwhile
        except Exception as exc:  # noqa: BLE001 — a bad file or checkpoint must not stop the backend
            self.backend.serving["reload_error"] = f"{type(exc).__name__}: {exc}"
            log.error("not switching models (still serving %s): %s", self.backend.model_version, exc)
            return False
        before = self.backend.model_version
        self.backend.swap(predict_fn, current.model_version)
        self.backend.serving.pop("reload_error", None)
        log.info("now serving %s (was %s; loaded in %.1f s from %s)", current.model_version, before,
                 time.perf_counter() - t0, self.path)
        return True

    def start(self) -> "ModelWatcher":
        def run() -> None:
            while not self._stop.wait(self.poll_s):
                self.check()

        self._thread = threading.Thread(target=run, name="kvasir-ml-model-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
