"""The annotation queue follows uncertainty on the real server: push switches the project to
uncertainty sampling, and Label All Tasks (``/api/projects/<id>/next``) serves the least
certain unlabeled frame of the prelabeling model first."""

from __future__ import annotations

import pytest

from kvasir_ml.labelstudio.convert import choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.queue import UNCERTAINTY_SAMPLING, next_task
from kvasir_ml.labelstudio.sync import push_dataset, set_prelabeling_model
from kvasir_ml.labelstudio.uncertainty import frame_confidence, uncertainty_fields

pytestmark = pytest.mark.labelstudio


def _entries(ds, polyp_scores):
    """Prediction entries whose polyp score sits at a chosen distance from its 0.5 threshold."""
    return {img["file_name"]: {"width": img["width"], "height": img["height"], "labels": {"polyp": s, "dyed": 0.99},
                               "thresholds": {"polyp": 0.5, "dyed": 0.4}, "inset": {"state": "none"},
                               "predicted_labels": ["polyp", "dyed"] if s >= 0.5 else ["dyed"], "boxes": []}
            for img, s in zip(ds.images, polyp_scores)}


def test_label_all_tasks_serves_the_least_certain_frame_of_the_prelabeling_model(ls_client, ls_data_root, tiny_dataset):
    ds = tiny_dataset(ls_data_root, "queue", n=5)
    v1 = _entries(ds, [0.95, 0.52, 0.10, 0.45, 0.70])  # confidence 0.9, 0.04, 0.8, 0.1, 0.4
    report = push_dataset(ls_client, ds, ls_data_root, "queue", predictions=v1, model_version="queue-v1")
    pid = report.project_id
    assert report.sampling_before == "Sequential sampling"  # Label Studio's default, switched by the push
    assert ls_client.sdk.projects.get(id=pid).sampling == UNCERTAINTY_SAMPLING
    tasks = {image_key_from_task_data(t["data"]): t for t in ls_client.list_tasks(pid)}
    by_id = {t["id"]: name for name, t in tasks.items()}
    for name, entry in v1.items():  # why each frame is uncertain, in the task itself
        data = tasks[name]["data"]
        assert data["model_confidence"] == uncertainty_fields(entry)["model_confidence"]
        assert data["model_findings"].startswith("polyp ")
    ranked = sorted(v1, key=lambda name: frame_confidence(v1[name]))

    served = next_task(ls_client, pid)
    assert by_id[served["id"]] == ranked[0] != ds.images[0]["file_name"]  # not id order
    ls_client.sdk.annotations.create(id=served["id"], result=[choices_result("inset", ["none"])])
    assert by_id[next_task(ls_client, pid)["id"]] == ranked[1]  # then the next least certain

    # A retrained model ranks the frames the other way round: once it is the prelabeling model,
    # the queue follows its scores, not the first version's.
    v2 = _entries(ds, [0.51, 0.99, 0.10, 0.98, 0.97])
    again = push_dataset(ls_client, ds, ls_data_root, "queue", predictions=v2, model_version="queue-v2")
    assert again.n_predictions_created == 5 and again.sampling_before is None  # already uncertainty sampling
    set_prelabeling_model(ls_client, pid, "queue-v2")
    ls_client.sdk.annotations.create(id=tasks[ranked[1]]["id"], result=[choices_result("inset", ["none"])])
    assert by_id[next_task(ls_client, pid)["id"]] == ds.images[0]["file_name"]  # polyp 0.51: the v2 edge case
    refreshed = {t["id"]: t["data"] for t in ls_client.list_tasks(pid)}
    assert refreshed[tasks[ds.images[0]["file_name"]]["id"]]["model_confidence"] == 0.02  # fields follow the push
