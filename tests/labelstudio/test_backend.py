"""The ML backend: the protocol endpoint by endpoint, then Label Studio itself calling it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.backend import Backend, checkpoint_predict_fn, make_backend_server
from kvasir_ml.labelstudio.convert import image_key_from_task_data, prediction_from_combined
from kvasir_ml.labelstudio.sync import connect_backend, model_version_for, push_dataset
from kvasir_ml.taxonomy import load_taxonomy

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def serve():
    """Start a backend server on a free loopback port; returns its URL. Stopped after the test."""
    servers = []

    def start(backend: Backend) -> str:
        server = make_backend_server(backend, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _task(file_name, tid):
    return {"id": tid, "data": {"image": f"/data/local-files/?d={file_name}", "file_name": file_name}}


def test_protocol_endpoints(loop_models, ls_data_root, serve):
    canonical, classifier, detector = loop_models
    ds = load_canonical(canonical)
    version = model_version_for(classifier, detector)
    predict = checkpoint_predict_fn(classifier, detector, "cpu")
    url = serve(Backend(ls_data_root, predict, version))
    http = httpx.Client(base_url=url, timeout=120)

    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "UP" and health.json()["model_version"] == version
    setup = http.post("/setup", json={"project": "1.1700000000", "schema": "<View/>", "access_token": "x" * 40})
    assert setup.json() == {"model_version": version}

    imgs = ds.images[:3]
    tasks = [_task(img["file_name"], 10 + i) for i, img in enumerate(imgs)] + [_task("loopdata/missing.jpg", 99)]
    resp = http.post("/predict", json={"tasks": tasks, "label_config": "<View/>", "project": "1.1", "params": {}})
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert len(results) == len(tasks)  # one per task, in order: Label Studio matches them by position
    assert results[-1]["result"] == [] and results[-1]["model_version"] == version
    expected = predict([ls_data_root / img["file_name"] for img in imgs])
    tax = load_taxonomy()
    for img, got, entry in zip(imgs, results, expected):
        want, _ = prediction_from_combined(entry, entry["width"], entry["height"], version, tax)
        assert got["model_version"] == version and got["result"] == json.loads(json.dumps(want["result"]))
        assert got["score"] == pytest.approx(want["score"]) and 0.0 <= got["score"] <= 1.0
        kinds = {(r["type"], r["from_name"]) for r in got["result"]}
        assert ("choices", "inset") in kinds
        for r in got["result"]:
            if r["type"] == "rectanglelabels":
                assert r["original_width"] == img["width"] and r["value"]["rectanglelabels"][0] in tax.box_class_names

    assert http.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert http.post("/predict", json={"tasks": "nope"}).status_code == 400
    assert http.get("/predict").status_code == 405
    assert http.post("/nowhere", json={}).status_code == 404
    assert http.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 200
    for training in (http.post("/webhook", json={"action": "START_TRAINING"}), http.post("/train", json={})):
        assert training.status_code == 501 and "kvasir-ml loop" in training.json()["error"]


def test_health_answers_within_label_studios_1_s_while_a_prediction_runs(ls_data_root, serve, loop_models):
    canonical, _, _ = loop_models
    started = threading.Event()

    def slow_predict(paths):
        started.set()
        time.sleep(3.0)
        return [{"image": str(p), "width": 10, "height": 10, "labels": {}, "boxes": []} for p in paths]

    url = serve(Backend(ls_data_root, slow_predict, "slow"))
    first = load_canonical(canonical).images[0]["file_name"]
    worker = threading.Thread(target=httpx.post, args=(f"{url}/predict",),
                              kwargs={"json": {"tasks": [_task(first, 1)]}, "timeout": 30})
    worker.start()
    assert started.wait(10)
    # Label Studio gives /health 1 s; the prediction is still running when it answers
    assert httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    assert worker.is_alive()
    worker.join()


def test_label_studio_calls_the_backend_and_predictions_appear_on_tasks(ls_client, ls_data_root, loop_models, serve):
    canonical, classifier, detector = loop_models
    ds = load_canonical(canonical)
    ds.images = ds.images[:4]
    version = model_version_for(classifier, detector)
    calls = []
    predict = checkpoint_predict_fn(classifier, detector, "cpu")

    def counting_predict(paths):
        calls.append([p.name for p in paths])
        return predict(paths)

    url = serve(Backend(ls_data_root, counting_predict, version))
    pid = push_dataset(ls_client, ds, ls_data_root, "ml backend").project_id  # no predictions pushed
    ml_id = connect_backend(ls_client, pid, url)
    assert connect_backend(ls_client, pid, url + "/") == ml_id  # idempotent
    tasks = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
    ids = [tasks[img["file_name"]] for img in ds.images]

    # The data manager's "Retrieve Predictions" action, on two tasks: Label Studio calls /predict.
    ls_client.sdk.actions.create(id="retrieve_tasks_predictions", project=pid,
                                 selected_items={"all": False, "included": ids[:2]})
    for tid in ids[:2]:
        stored = ls_client.sdk.predictions.list(task=tid)
        assert [p.model_version for p in stored] == [version]
        assert stored[0].result and 0.0 <= stored[0].score <= 1.0  # the frame's confidence
    assert calls and sum(len(c) for c in calls) == 2
    # Opening a task that has no prediction yet (what the labeling page does) asks the backend too.
    task = ls_client.sdk.tasks.get(id=ids[2])
    assert [p.model_version for p in task.predictions or []] == [version]
    assert ls_client.sdk.predictions.list(task=ids[3]) == []  # never opened, never predicted


def test_cli_backend_refuses_missing_checkpoints(tmp_path, capsys):
    from kvasir_ml.cli import main

    assert main(["ls", "backend", "--data-root", str(tmp_path), "--classifier", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["ls", "backend", "--data-root", str(tmp_path)]) == 2


def test_backend_loads_its_models_once_and_reports_a_checkpoint_changed_on_disk(loop_models, ls_data_root, tmp_path,
                                                                                   monkeypatch, caplog):
    import shutil

    import kvasir_ml.train.classify as train_predict

    canonical, classifier, detector = loop_models
    ckpt = tmp_path / "best.pt"
    shutil.copy(classifier, ckpt)
    loads = []
    real_load = train_predict.load_classifier
    monkeypatch.setattr(train_predict, "load_classifier", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    predict = checkpoint_predict_fn(ckpt, None, "cpu")
    assert len(loads) == 1  # at start-up: a bad checkpoint fails before any request
    paths = [ls_data_root / img["file_name"] for img in load_canonical(canonical).images[:2]]
    first = predict(paths)
    assert predict(paths) == first and len(loads) == 1  # requests reuse the loaded model

    ckpt.write_bytes(b"replaced by a retrained model")  # a new file at the same path
    with caplog.at_level("WARNING", logger="kvasir_ml.labelstudio.backend"):
        assert predict(paths) == first  # still the weights it loaded (and named its version after)
        predict(paths)
    changed = [r for r in caplog.records if "changed on disk" in r.getMessage()]
    assert len(changed) == 1 and str(ckpt) in changed[0].getMessage()  # reported once
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint_predict_fn(tmp_path / "missing.pt", None, "cpu")
