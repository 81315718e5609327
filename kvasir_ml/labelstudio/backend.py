"""A Label Studio ML backend: Label Studio asks it for predictions on the tasks annotators open.

The protocol (what ``label_studio/ml/api_connector.py`` of Label Studio 1.23 sends):

* ``GET /health`` -> ``{"status": "UP", "model_class", "model_version"}`` (Label Studio waits 1 s);
* ``POST /setup`` ``{"project", "schema", "hostname", "access_token", "extra_params"}`` ->
  ``{"model_version"}`` (called before every prediction round; 3 s);
* ``POST /predict`` ``{"tasks": [...], "label_config", "project", "params"}`` ->
  ``{"results": [{"result": [...], "score", "model_version"}, ...]}``, one per task, in order:
  boxes as ``rectanglelabels``, labels and the inset as ``choices`` (``convert.prediction_from_combined``),
  ``score`` = ``uncertainty.frame_confidence`` (low = uncertain);
* ``POST /webhook`` (Label Studio registers one for every event) -> 200;
* ``POST /train`` and the ``START_TRAINING`` webhook -> 501: retraining runs as
  ``kvasir-ml loop`` (pull -> new version -> fine-tune -> push), not inside this server.

Why not the ``label-studio-ml`` package: its only PyPI release (1.0.9) pins Flask 1.1.2,
Werkzeug 2.0.2 and Jinja2 3.0.3 (a downgrade of the Jinja2 3.1 that Label Studio uses). This
module is a plain WSGI app (PEP 3333); ``backend_server`` serves it under waitress with limits
(timeouts, body size, tasks per request, a prediction queue) and access checks (Host, Origin,
JSON only, basic auth); ``/health`` answers within Label Studio's 1 s while predictions run, one
at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from kvasir_ml.labelstudio.backend_server import (
    AUTH_PASS_ENV, AUTH_USER_ENV, Access, BackendServer, BodyError, ServerLimits, access_for, body_length, guard,
    is_loopback, printable, respond,
)
from kvasir_ml.labelstudio.convert import ConvertError, image_key_from_task_data, prediction_from_combined, resolve_in_root
from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[Path]], list[dict[str, Any]]]


class BackendError(ValueError):
    """A request the backend cannot serve; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def checkpoint_predict_fn(classifier: str | Path | None, detector: str | Path | None, device: str = "auto",
                          trust_detector: bool = False, conf: float | None = PRELABEL_CONF,
                          max_boxes: int = PRELABEL_MAX_BOXES) -> PredictFn:
    """``kvasir_ml.inference.combined.Predictor`` for the checkpoints, loaded once, here (a bad checkpoint
    fails at start-up, not on an annotator's first task).

    The backend serves the weights it loaded, under the version named from the files at
    start-up. A checkpoint that changes on disk afterwards is reported (once per file) and
    not picked up: switch models through a current-model file (``serving``) instead.
    ``conf`` / ``max_boxes``: the box threshold and per-frame cap (None = the checkpoint's).
    """
    from kvasir_ml.inference.combined import Predictor

    if not classifier and not detector:
        raise ValueError("the ML backend needs --classifier and/or --detector")
    files = [Path(p) for p in (classifier, detector) if p]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
    loaded_stat = {path: _stat(path) for path in files}
    predictor = Predictor(classifier, detector, device, trust_detector, conf, max_boxes)
    reported: set[Path] = set()

    def predict(paths: Sequence[Path]) -> list[dict[str, Any]]:
        for path, stat in loaded_stat.items():
            if path not in reported and _stat(path) != stat:
                reported.add(path)
                log.warning("%s changed on disk since the backend started; still serving the weights loaded then "
                            "(restart `kvasir-ml ls backend` to serve the new file under a new model_version)", path)
        return predictor(paths)

    return predict


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass
class Backend:
    """The protocol's handlers: JSON-able dict in, JSON-able dict out (no HTTP here).

    Args:
        data_root: the folder task images are relative to (Label Studio's document root).
        predict_fn: image paths -> ``kvasir_ml.inference.combined`` entries (``checkpoint_predict_fn``).
        model_version: the name predictions are stored under in Label Studio.
    """

    data_root: Path
    predict_fn: PredictFn
    model_version: str
    taxonomy: Taxonomy = field(default_factory=load_taxonomy)
    serving: dict[str, Any] = field(default_factory=dict)  # extra /health fields (serving.ModelWatcher)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "kvasir-ml", "model_version": self.model_version, **self.serving}

    def swap(self, predict_fn: PredictFn, model_version: str) -> None:
        """Serve another model: waits for a running prediction, so no answer mixes the two."""
        with self._lock:
            self.predict_fn, self.model_version = predict_fn, model_version

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        # body carries the project creator's access token: never logged, never stored.
        log.info("setup from Label Studio project %s", body.get("project"))
        return {"model_version": self.model_version}

    def versions(self) -> dict[str, Any]:
        return {"versions": [self.model_version]}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """One prediction per task, in order. A task that cannot be used (no image, a path that
        cannot be opened, an image that fails) gets an empty one with ``"error"`` saying why (also
        in the answer's ``"errors"`` and the log); the other tasks are answered as usual. Messages
        name the task and its image key, never the data root."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BackendError("'tasks' must be a list of Label Studio tasks")
        paths: list[Path] = []
        slots: list[int | None] = []
        reasons: dict[int, str] = {}
        for i, task in enumerate(tasks):
            tid = printable(repr(task.get("id") if isinstance(task, dict) else i), 80)
            try:
                slots.append(len(paths))
                paths.append(self._image_path(task))
            except (ConvertError, OSError, ValueError) as exc:
                slots[-1] = None
                reasons[i] = f"task {tid}: {self._public(exc)}"
                log.warning("%s", reasons[i])
        with self._lock:  # one prediction at a time: the models use every core already
            version = self.model_version  # read with the model: a swap cannot fall in between
            entries = self._predict_each(paths) if paths else []
        results = []
        for i, (task, slot) in enumerate(zip(tasks, slots)):
            pred = None
            if slot is not None:
                entry = entries[slot]
                pred, problems = prediction_from_combined(entry, entry.get("width") or 1, entry.get("height") or 1,
                                                          version, self.taxonomy, task.get("id"))
                for p in problems:
                    log.warning("%s", self._public(p))
                if pred is None and problems:
                    reasons[i] = "; ".join(self._public(p) for p in problems)
            empty: dict[str, Any] = {"result": [], "score": None, "model_version": version}
            results.append(pred or ({**empty, "error": reasons[i]} if i in reasons else empty))
        answer = {"results": results, "model_version": version}
        return {**answer, "errors": [reasons[i] for i in sorted(reasons)]} if reasons else answer

    def _image_path(self, task: Any) -> Path:
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise ConvertError("task has no 'data' object")
        key = image_key_from_task_data(data)
        path = resolve_in_root(self.data_root, key)
        try:
            found = path.is_file()
        except OSError as exc:  # a name too long, a symlink loop, no permission: this task only
            raise ConvertError(f"image {key!r:.200} cannot be opened ({exc.strerror or type(exc).__name__})") from None
        if not found:
            raise ConvertError(f"image {key!r:.200} does not exist under the data root (is --data-root the server's "
                               "document root?)")
        return path

    def _predict_each(self, paths: list[Path]) -> list[dict[str, Any]]:
        """The batch at once; if it fails, image by image, so one bad image costs only its own task."""
        try:
            entries = self.predict_fn(paths)
            if isinstance(entries, list) and len(entries) == len(paths):
                return entries
            problem = f"{len(entries) if isinstance(entries, list) else 'no'} entries for {len(paths)} images"
        except Exception as exc:  # noqa: BLE001 — a failing image must not lose the others
            problem = self._public(exc)
        log.warning("a batch of %d images failed (%s); predicting them one by one", len(paths), problem)
        entries = []
        for path in paths:
            try:
                entry = self.predict_fn([path])[0]
            except Exception as exc:  # noqa: BLE001
                entry = {"error": f"{type(exc).__name__}: {exc}"}
            entries.append(entry)
        return entries

    def _public(self, what: Any) -> str:
        """Text that may leave the server: no data-root path, no control characters, bounded."""
        text = str(what)
        for root in {str(self.data_root), str(Path(self.data_root).resolve())}:
            text = text.replace(root + "/", "").replace(root, "<data root>")
        return printable(text, 500)

    def webhook(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action = body.get("action")
        if action == "START_TRAINING":
            return 501, _TRAINING_ANSWER
        log.debug("webhook %s ignored", action)
        return 200, {"status": "ok"}


_TRAINING_ANSWER = {"error": "this backend does not train; run `kvasir-ml loop` (pull -> new canonical version -> "
                             "fine-tune -> push predictions under a new model_version)"}


def _read_json(environ: dict[str, Any], limits: ServerLimits) -> dict[str, Any]:
    try:
        length = body_length(environ, limits.max_body_bytes)
    except BodyError as exc:
        raise BackendError(str(exc), exc.status) from None
    raw = environ["wsgi.input"].read(length) if length else b""
    if len(raw) != length:
        raise BackendError(f"request body ended after {len(raw)} of {length} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BackendError("request body must be a JSON object")
    return body


def make_wsgi_app(backend: Backend, limits: ServerLimits | None = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI application serving ``backend`` (see the module doc for the routes); serve it
    behind ``backend_server.guard`` (``make_backend_server`` does)."""
    limits = limits or ServerLimits()

    def predict(body: dict[str, Any]) -> dict[str, Any]:
        tasks = body.get("tasks")
        if isinstance(tasks, list) and len(tasks) > limits.max_tasks:
            raise BackendError(f"{len(tasks)} tasks in one request; this backend takes at most {limits.max_tasks} "
                               "(select fewer tasks per Retrieve Predictions, or start it with a larger --max-tasks)",
                               413)
        return backend.predict(body)

    def route(method: str, path: str, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path in ("/", "/health") and method == "GET":
            return 200, backend.health()
        if path == "/versions" and method in ("GET", "POST"):
            return 200, backend.versions()
        if method != "POST":
            raise BackendError(f"{method} {path} is not part of the ML backend protocol", 404 if path not in
                               ("/setup", "/predict", "/webhook", "/train") else 405)
        if path == "/setup":
            return 200, backend.setup(_read_json(environ, limits))
        if path == "/predict":
            return 200, predict(_read_json(environ, limits))
        if path == "/webhook":
            return backend.webhook(_read_json(environ, limits))
        if path == "/train":
            return 501, _TRAINING_ANSWER
        raise BackendError(f"POST {path} is not part of the ML backend protocol", 404)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = printable(environ.get("REQUEST_METHOD", "GET"), 20)
        path = printable(environ.get("PATH_INFO", "/").rstrip("/") or "/", 200)
        try:
            status, body = route(method, path, environ)
        except BackendError as exc:
            status, body = exc.status, {"error": backend._public(exc)}
        except Exception:  # noqa: BLE001 — keep serving; the details (paths) stay in the log
            log.exception("%s %s failed", method, path)
            status, body = 500, {"error": "internal error; the ML backend's log has the details"}
        return respond(start_response, status, body)

    return app


def make_backend_server(backend: Backend, host: str = "127.0.0.1", port: int = 9090,
                        limits: ServerLimits | None = None, access: Access | None = None) -> BackendServer:
    """A waitress server for ``backend`` (call ``serve_forever``; ``port=0`` picks a free one).

    Args:
        limits: what one client may cost (``ServerLimits()`` by default).
        access: Host names and basic auth (``access_for(host)`` by default: loopback, no auth).

    Raises:
        ValueError: ``host`` is beyond loopback and ``access`` carries no basic auth.
    """
    limits = limits or ServerLimits()
    access = access or access_for(host)
    if not is_loopback(host) and access.basic_auth is None:
        raise ValueError(f"listening on {host} (beyond loopback) needs basic auth ({AUTH_USER_ENV}, {AUTH_PASS_ENV})")
    return BackendServer(guard(make_wsgi_app(backend, limits), access), host, port, limits)
