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
module is a plain WSGI app (PEP 3333) served by the standard library, threaded so ``/health``
answers within Label Studio's 1 s while a prediction runs; predictions run one at a time.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from kvasir_ml.labelstudio.convert import ConvertError, image_key_from_task_data, prediction_from_combined, resolve_in_root
from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # a predict call for 1000 tasks is ~1 MB; refuse anything absurd
PredictFn = Callable[[Sequence[Path]], list[dict[str, Any]]]


class BackendError(ValueError):
    """A request the backend cannot serve; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def checkpoint_predict_fn(classifier: str | Path | None, detector: str | Path | None, device: str = "auto",
                          trust_detector: bool = False, conf: float | None = PRELABEL_CONF,
                          max_boxes: int = PRELABEL_MAX_BOXES) -> PredictFn:
    """``kvasir_ml.predict.Predictor`` for the checkpoints, loaded once, here (a bad checkpoint
    fails at start-up, not on an annotator's first task).

    The backend serves the weights it loaded, under the version named from the files at
    start-up. A checkpoint that changes on disk afterwards is reported (once per file) and
    not picked up: switch models through a current-model file (``serving``) instead.
    ``conf`` / ``max_boxes``: the box threshold and per-frame cap (None = the checkpoint's).
    """
    from kvasir_ml.predict import Predictor

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
        predict_fn: image paths -> ``kvasir_ml.predict`` entries (``checkpoint_predict_fn``).
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
        """One prediction per task, in order. A task whose image cannot be used gets an empty one
        with ``"error"`` saying why (also in the answer's ``"errors"`` and the log)."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BackendError("'tasks' must be a list of Label Studio tasks")
        paths, slots, reasons = [], [], {}
        for i, task in enumerate(tasks):
            try:
                data = task.get("data") if isinstance(task, dict) else None
                if not isinstance(data, dict):
                    raise ConvertError("task has no 'data' object")
                path = resolve_in_root(self.data_root, image_key_from_task_data(data))
                if not path.is_file():
                    raise ConvertError(f"{path} does not exist (is --data-root the server's document root?)")
                slots.append(len(paths))
                paths.append(path)
            except ConvertError as exc:
                log.warning("task %s: %s", task.get("id") if isinstance(task, dict) else i, exc)
                reasons[i] = f"task {task.get('id') if isinstance(task, dict) else i}: {exc}"
                slots.append(None)
        with self._lock:  # one prediction at a time: the models use every core already
            version = self.model_version  # read with the model: a swap cannot fall in between
            entries = self.predict_fn(paths) if paths else []
        results = []
        for i, (task, slot) in enumerate(zip(tasks, slots)):
            pred = None
            if slot is not None:
                entry = entries[slot]
                pred, problems = prediction_from_combined(entry, entry.get("width") or 1, entry.get("height") or 1,
                                                          version, self.taxonomy, task.get("id"))
                for p in problems:
                    log.warning("%s", p)
                if pred is None and problems:
                    reasons[i] = "; ".join(str(p) for p in problems)
            empty = {"result": [], "score": None, "model_version": version}
            results.append(pred or ({**empty, "error": reasons[i]} if i in reasons else empty))
        answer = {"results": results, "model_version": version}
        return {**answer, "errors": [reasons[i] for i in sorted(reasons)]} if reasons else answer

    def webhook(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action = body.get("action")
        if action == "START_TRAINING":
            return 501, _TRAINING_ANSWER
        log.debug("webhook %s ignored", action)
        return 200, {"status": "ok"}


_TRAINING_ANSWER = {"error": "this backend does not train; run `kvasir-ml loop` (pull -> new canonical version -> "
                             "fine-tune -> push predictions under a new model_version)"}


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BackendError("bad Content-Length") from None
    if length > MAX_BODY_BYTES:
        raise BackendError(f"request body of {length} bytes exceeds {MAX_BODY_BYTES}", 413)
    raw = environ["wsgi.input"].read(length) if length else b"{}"
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BackendError("request body must be a JSON object")
    return body


def make_wsgi_app(backend: Backend) -> Callable[..., Iterable[bytes]]:
    """The WSGI application serving ``backend`` (see the module doc for the routes)."""

    def route(method: str, path: str, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path in ("/", "/health") and method == "GET":
            return 200, backend.health()
        if path == "/versions" and method in ("GET", "POST"):
            return 200, backend.versions()
        if method != "POST":
            raise BackendError(f"{method} {path} is not part of the ML backend protocol", 404 if path not in
                               ("/setup", "/predict", "/webhook", "/train") else 405)
        if path == "/setup":
            return 200, backend.setup(_read_json(environ))
        if path == "/predict":
            return 200, backend.predict(_read_json(environ))
        if path == "/webhook":
            return backend.webhook(_read_json(environ))
        if path == "/train":
            return 501, _TRAINING_ANSWER
        raise BackendError(f"POST {path} is not part of the ML backend protocol", 404)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/").rstrip("/") or "/"
        try:
            status, body = route(method, path, environ)
        except BackendError as exc:
            status, body = exc.status, {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 — answer Label Studio with the reason, keep serving
            log.exception("%s %s failed", method, path)
            status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
                  500: "Internal Server Error", 501: "Not Implemented"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(payload)))])
        return [payload]

    return app


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung request never blocks shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


def make_backend_server(backend: Backend, host: str = "127.0.0.1", port: int = 9090) -> WSGIServer:
    """A threaded HTTP server for ``backend`` (call ``serve_forever``; ``port=0`` picks a free one)."""
    return make_server(host, port, make_wsgi_app(backend), server_class=_ThreadingWSGIServer,
                       handler_class=_QuietHandler)
