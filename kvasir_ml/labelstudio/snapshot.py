"""Label Studio snapshot exports at archive scale (100k tasks): build, download, stream.

Label Studio 1.23 builds a snapshot inside the request that creates it: the answer comes
only when the whole file is written (83 s for 100k tasks with predictions on a quiet
2-core machine). So the create call waits ``wait_s`` (``DEFAULT_EXPORT_WAIT_S``, sized for
100k tasks with headroom for a busy server) instead of the client's usual 30 s of silence.
A create whose answer never comes is not simply sent again: the server may still be
building it, so the snapshot is looked up by its unique title first and polled; only when
the server has no such snapshot is the create retried, with exponential backoff.

The snapshot is downloaded to a file in chunks and parsed as a stream (``ijson``), one task
at a time, so neither the raw bytes nor the whole parsed list sit in memory at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from kvasir_ml.labelstudio.client import LabelStudioError, LSClient
from kvasir_ml.labelstudio.from_export import ExportError

log = logging.getLogger(__name__)

# Seconds the create request may take: ~10x the 83 s measured for 100k tasks (quiet machine).
DEFAULT_EXPORT_WAIT_S = 900.0
EXPORT_ATTEMPTS = 3  # creates tried when no answer comes and the server has no such snapshot
_BACKOFF_S = 2.0  # first wait between create attempts; doubles each time


def download_snapshot(client: LSClient, project_id: int, dest: str | Path, task_filter: dict[str, Any] | None = None,
                      wait_s: float = DEFAULT_EXPORT_WAIT_S, attempts: int = EXPORT_ATTEMPTS,
                      poll_s: float = 0.5, create_timeout_s: float | None = None) -> Path:
    """Build a JSON snapshot export of the project and download it to ``dest``.

    Args:
        task_filter: Label Studio ``task_filter_options``, e.g. ``{"annotated": "only"}``.
        wait_s: longest time for the server to build the snapshot (the create request, then
            polling when the request's answer was lost).
        attempts: creates tried when the server neither answers nor holds the snapshot.
        create_timeout_s: how long the create request itself waits for its answer (default:
            all of ``wait_s``); a shorter one hands the rest of the wait to polling.

    Predictions are serialised with their content (the pull compares submissions with the
    model drafts). The snapshot is deleted on the server once downloaded (they pile up otherwise).

    Raises:
        LabelStudioError: not built within ``wait_s`` (the message names the flag that sets it),
            build failed, or the download failed.
    """
    sdk = client.sdk.projects.exports
    title = f"kvasir-ml pull {time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())} {uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    export = _create(client, project_id, title, task_filter, wait_s, attempts, deadline, create_timeout_s)
    try:
        while str(export.status) not in ("completed", "failed"):
            if time.monotonic() > deadline:
                raise LabelStudioError(f"export {export.id} of project {project_id} not ready after {wait_s:.0f} s; "
                                       "give the server longer with --export-wait-s")
            time.sleep(poll_s)
            export = client.call(f"poll export {export.id}", sdk.get, id=project_id, export_pk=export.id)
        if str(export.status) == "failed":
            raise LabelStudioError(f"Label Studio failed to build export {export.id} of project {project_id}")
        dest = Path(dest)

        def fetch() -> None:  # restarted from scratch on a retry
            with open(dest, "wb") as fh:
                for chunk in sdk.download(id=project_id, export_pk=export.id, export_type="JSON"):
                    fh.write(chunk)

        client.call(f"download export {export.id}", fetch)
        return dest
    finally:
        _delete_exports(client, project_id, title, export.id)


def _create(client: LSClient, project_id: int, title: str, task_filter: dict[str, Any] | None, wait_s: float,
            attempts: int, deadline: float, create_timeout_s: float | None) -> Any:
    """The created export (maybe still being built), found by title when its answer was lost."""
    sdk = client.sdk.projects.exports
    extra = {"task_filter_options": task_filter} if task_filter else {}
    for attempt in range(max(1, attempts)):
        left_s = max(1.0, deadline - time.monotonic())
        if create_timeout_s is not None:
            left_s = min(left_s, create_timeout_s)
        try:
            # One request that may legitimately stay silent for minutes: its own timeout.
            return client.call(f"create an export of project {project_id}", sdk.create, idempotent=False,
                               id=project_id, title=title, serialization_options={"predictions": {"only_id": False}},
                               request_options={"timeout_in_seconds": left_s}, **extra)
        except LabelStudioError as exc:
            # The server may still be writing the export's row: look for it after the backoff too.
            wait = _BACKOFF_S * 2**attempt
            for look in range(2):
                found = _find_export(client, project_id, title)
                if found is not None:
                    log.info("export %s of project %s: the create's answer was lost; polling it", found.id,
                             project_id)
                    return found
                if look == 0:
                    log.warning("export of project %s: no answer to the create within %.3g s (%s); looking for "
                                "it again in %.0f s", project_id, left_s, exc, wait)
                    time.sleep(wait)
            if attempt + 1 >= attempts or time.monotonic() >= deadline:
                raise LabelStudioError(f"{exc} (export of project {project_id}: {attempt + 1} attempt(s) within "
                                       f"{wait_s:.0f} s; give the server longer with --export-wait-s)") from None
    raise AssertionError("unreachable")


def _delete_exports(client: LSClient, project_id: int, title: str, export_id: Any) -> None:
    """Delete this download's export, and any twin a retried create made (same title)."""
    sdk = client.sdk.projects.exports
    try:
        ids = {e.id for e in client.call(f"list exports of project {project_id}", sdk.list, id=project_id) or []
               if getattr(e, "title", None) == title} | {export_id}
        for pk in sorted(ids):
            client.call(f"delete export {pk} of project {project_id}", sdk.delete, id=project_id, export_pk=pk)
    except LabelStudioError as exc:  # a leftover snapshot is not worth failing the pull for
        log.warning("%s", exc)


def _find_export(client: LSClient, project_id: int, title: str) -> Any | None:
    try:
        exports = client.call(f"list exports of project {project_id}", client.sdk.projects.exports.list, id=project_id)
    except LabelStudioError as exc:
        log.warning("%s", exc)
        return None
    return next((e for e in exports or [] if getattr(e, "title", None) == title), None)


def iter_export_file(path: str | Path, origin: str | None = None) -> Iterator[dict[str, Any]]:
    """The tasks of a Label Studio JSON export file (a list of tasks, or ``{"tasks": [...]}``),
    parsed as a stream: one task in memory at a time.

    Raises:
        ExportError: not JSON, or not a list of tasks (naming ``origin``, default the path).
    """
    import ijson

    origin = origin or str(path)
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if head[:1] not in (b"[", b"{"):
            raise ExportError(f"{origin}: a Label Studio JSON export is a list of tasks"
                              + ("; the file is empty" if not head else f", got {head[:20]!r}"))
        prefix = "item" if head[:1] == b"[" else "tasks.item"
        try:
            yield from ijson.items(fh, prefix, use_float=True)
        except ijson.JSONError as exc:
            raise ExportError(f"{origin} is not valid JSON: {exc}") from None
