"""The annotation queue follows the models' uncertainty.

Label Studio serves *Label All Tasks* (``GET /api/projects/<id>/next``) by the project's
``sampling``: "Sequential sampling" (the default: task id order, whatever the tab is sorted
by), "Uniform sampling" or "Uncertainty sampling" — the unlabeled task whose prediction of
the project's ``model_version`` has the lowest ``score`` first (Label Studio 1.23,
``projects/functions/next_task.py``). Our prediction score is ``uncertainty.frame_confidence``
(low = uncertain), so uncertainty sampling plus the right prelabeling model is the
active-learning queue. Push, connect and loop set it whenever their predictions carry scores.

Label Studio's own exceptions to that order: a data-manager tab with filters or an ordering
serves in the tab's order; with several annotators it picks at random among the
(annotators + 1) least certain tasks, so two people do not open the same frame; tasks
without a prediction of the current version are served only when none with one is left.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from kvasir_ml.labelstudio.client import LabelStudioError, LSClient

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


def set_uncertainty_sampling(client: LSClient, project_id: int) -> str | None:
    """Make the project serve its least certain unlabeled task next (idempotent).

    Returns:
        The project's previous ``sampling``.
    """
    before = getattr(client.call(f"get project {project_id}", client.sdk.projects.get, id=project_id), "sampling", None)
    if str(before) != UNCERTAINTY_SAMPLING:
        client.call(f"set uncertainty sampling on project {project_id}", client.sdk.projects.update,
                    id=project_id, sampling=UNCERTAINTY_SAMPLING)
        log.info("project %s: sampling %r -> %r", project_id, before, UNCERTAINTY_SAMPLING)
    return str(before) if before is not None else None


def update_task_fields(client: LSClient, tasks: Mapping[int, dict[str, Any]], fields: Mapping[int, dict[str, Any]]) -> int:
    """Merge ``fields[task_id]`` into each task's data (one PATCH per task whose data changes).

    Args:
        tasks: task id -> its current data (``LSClient.list_tasks``).
        fields: task id -> keys to set (e.g. ``uncertainty.uncertainty_fields``).

    Returns:
        How many tasks were updated.
    """
    n = 0
    for tid, extra in fields.items():
        data = dict(tasks.get(tid) or {})
        if not extra or all(data.get(k) == v for k, v in extra.items()):
            continue
        client.call(f"update the data of task {tid}", client.sdk.tasks.update, id=tid, data={**data, **extra})
        n += 1
    return n


def next_task(client: LSClient, project_id: int) -> dict[str, Any] | None:
    """The task Label Studio serves this user next under *Label All Tasks* (it is locked for
    them for a while, as in the browser); None when nothing is left to label."""
    resp = client.get_path(f"get the next task of project {project_id}", f"api/projects/{project_id}/next")
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise LabelStudioError(f"Label Studio at {client.url}: next task of project {project_id}: HTTP {resp.status_code}")
    return resp.json()
