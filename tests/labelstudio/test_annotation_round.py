"""One turn of the annotation loop on synthetic data against the real server: the project's
prelabeling model moves to the fine-tuned models, and no model is pushed twice."""

from __future__ import annotations

import json

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.convert import choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.annotation_round import run_loop
from kvasir_ml.labelstudio.sync import (
    match_predictions, model_version_for, predictions_from_checkpoints, push_dataset, set_prelabeling_model,
)

pytestmark = pytest.mark.labelstudio


def _project_version(client, pid):
    return client.sdk.projects.get(id=pid).model_version


def test_loop_fine_tunes_pushes_and_moves_the_prelabeling_model(ls_client, ls_server, ls_data_root, loop_models,
                                                                 tiny_fine_tune, tmp_path, monkeypatch, capsys):
    canonical, classifier, detector = loop_models
    ds = load_canonical(canonical)
    names = {img["file_name"] for img in ds.images}
    v1 = model_version_for(classifier, detector)
    preds, _ = match_predictions(predictions_from_checkpoints(ds, ls_data_root, classifier, detector, "cpu"),
                                 ls_data_root, names)
    pid = push_dataset(ls_client, ds, ls_data_root, "loop", predictions=preds, model_version=v1).project_id
    set_prelabeling_model(ls_client, pid, v1)
    assert _project_version(ls_client, pid) == v1
    tasks = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
    for img in ds.images[:2]:  # annotators correct two frames
        ls_client.sdk.annotations.create(id=tasks[img["file_name"]], result=[
            choices_result("labels", ["ileum", "bbps-2-3"]), choices_result("inset", ["none"])])

    # expert_changes="apply": the two corrections replace the frames' labels (the default holds such
    # submissions for review and keeps the base labels, test_expert_review.py)
    turn = run_loop(ls_client, "loop", canonical, ls_data_root, tmp_path / "turn1", classifier=classifier,
                    expert_changes="apply",
                    detector=detector, classifier_overrides=tiny_fine_tune["classifier"], detector_overrides=tiny_fine_tune["detector"],
                    device="cpu")
    assert turn.stopped is None and turn.canonical.name == "loop.v2.coco.json"
    assert load_canonical(turn.canonical).image_by_file[ds.images[0]["file_name"]]["labels"] == ["ileum", "bbps-2-3"]
    assert turn.classifier.is_file() and turn.detector.is_file()
    v2 = turn.model_version
    assert v2 == model_version_for(turn.classifier, turn.detector) and v2 != v1
    # The prelabeling model moved: drafts are now pre-filled from the new model (the browser check in
    # scripts/screenshot_labeling.py shows the page pre-filled from the project's model_version).
    assert turn.prelabel_before == v1 and _project_version(ls_client, pid) == v2
    assert turn.push_report.n_predictions_created == len(ds.images)
    stored = {p.model_version for p in ls_client.sdk.predictions.list(task=tasks[ds.images[5]["file_name"]])}
    assert stored == {v1, v2}  # the old tab is kept, not deleted
    # The fine-tuned classifier started from the previous run's split (no test image moved into training).
    prev_split = json.loads((classifier.parent.parent / "split.json").read_text())
    new_split = json.loads((turn.classifier.parent.parent / "split.json").read_text())
    assert new_split["splits"] == prev_split["splits"]
    assert json.loads((tmp_path / "turn1" / "loop.json").read_text())["model_version"] == v2

    # Nothing changed since v2: the next turn stops before training, the project keeps v2.
    idle = run_loop(ls_client, "loop", turn.canonical, ls_data_root, tmp_path / "turn2", classifier=turn.classifier,
                    detector=turn.detector, device="cpu")
    assert idle.stopped and idle.classifier is None and _project_version(ls_client, pid) == v2

    # Predictions of the same checkpoints through `kvasir-ml predict` are recognised, never pushed twice;
    # giving a predictions file and checkpoints together is refused.
    from kvasir_ml.cli import main

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    preds_file = tmp_path / "preds.json"
    images = [str(ls_data_root / img["file_name"]) for img in ds.images]
    assert main(["predict", *images, "--classifier", str(turn.classifier), "--detector", str(turn.detector),
                 "--device", "cpu", "--out", str(preds_file)]) == 0
    assert main(["ls", "push", str(turn.canonical), "--project", "loop", "--data-root", str(ls_data_root),
                 "--predictions", str(preds_file)]) == 0
    assert f"predictions created 0, already there {len(ds.images)}" in capsys.readouterr().out
    assert main(["ls", "push", str(turn.canonical), "--project", "loop", "--data-root", str(ls_data_root),
                 "--predictions", str(preds_file), "--classifier", str(turn.classifier)]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_turn_that_failed_at_push_resumes_and_the_backend_switches_to_the_new_model(
        ls_client, ls_data_root, loop_models, tiny_fine_tune, tmp_path, monkeypatch):
    import threading

    import httpx

    import kvasir_ml.labelstudio.push_models as push_mod  # the loop pushes through it
    from kvasir_ml.labelstudio.backend import Backend, checkpoint_predict_fn, make_backend_server
    from kvasir_ml.labelstudio.client import LabelStudioError
    from kvasir_ml.labelstudio.serving import ModelWatcher, read_current_model, write_current_model
    from kvasir_ml.labelstudio.sync import connect_backend
    from kvasir_ml.rundir import RunDirError

    canonical, _, detector = loop_models
    ds = load_canonical(canonical)
    base = ls_data_root / "loopresume.coco.json"  # its own versions: loopresume.vN.coco.json
    ds.save(base, keep_backup=False)
    v1 = model_version_for(None, detector)
    preds, _ = match_predictions(predictions_from_checkpoints(ds, ls_data_root, None, detector, "cpu"), ls_data_root,
                                 {img["file_name"] for img in ds.images})
    pid = push_dataset(ls_client, ds, ls_data_root, "loop resume", predictions=preds, model_version=v1).project_id
    set_prelabeling_model(ls_client, pid, v1)

    # The ML backend serves the model named in a current-model file, and is connected to the project.
    current = write_current_model(tmp_path / "current-model.json", None, detector, v1)

    def load(model):
        return checkpoint_predict_fn(model.classifier, model.detector, "cpu")

    backend = Backend(ls_data_root, load(read_current_model(current)), v1)
    server = make_backend_server(backend, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    watcher = ModelWatcher(backend, current, load, poll_s=0.2).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ml_id = connect_backend(ls_client, pid, url)
        tasks = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
        ls_client.sdk.annotations.create(id=tasks[ds.images[0]["file_name"]], result=[
            choices_result("labels", ["ileum"]), choices_result("inset", ["none"])])

        real_push, calls = push_mod.push_dataset, []

        def push_fails_once(*args, **kwargs):  # the server goes away during the push, once
            calls.append(1)
            if len(calls) == 1:
                raise LabelStudioError("Label Studio at ...: import 24 tasks failed after 4 attempt(s): cannot connect")
            return real_push(*args, **kwargs)

        monkeypatch.setattr(push_mod, "push_dataset", push_fails_once)
        out = tmp_path / "turn"
        kwargs = dict(detector=detector, detector_overrides=tiny_fine_tune["detector"], device="cpu",
                      current_model=current, backend_wait_s=60, expert_changes="apply")  # "ileum" replaces labels
        with pytest.raises(LabelStudioError, match="cannot connect"):
            run_loop(ls_client, "loop resume", base, ls_data_root, out, **kwargs)
        state = json.loads((out / "loop.json").read_text())
        assert state["steps_done"] == ["pull", "detector"] and state["canonical"].endswith("loopresume.v2.coco.json")
        assert backend.model_version == v1  # nothing switched before the predictions were pushed

        with pytest.raises(RunDirError, match="--resume"):
            run_loop(ls_client, "loop resume", base, ls_data_root, out, **kwargs)
        with pytest.raises(RunDirError, match="detector_overrides"):
            run_loop(ls_client, "loop resume", base, ls_data_root, out, resume=True,
                     **{**kwargs, "detector_overrides": ["train.epochs=3"]})
        new_ckpt = out / "detector" / "checkpoints" / "best.pt"
        trained_at = new_ckpt.stat().st_mtime_ns

        turn = run_loop(ls_client, "loop resume", base, ls_data_root, out, resume=True, **kwargs)
        assert turn.resumed == ["pull", "detector"]
        assert not (ls_data_root / "loopresume.v3.coco.json").exists()  # no second pull, no second version
        assert turn.detector == new_ckpt and new_ckpt.stat().st_mtime_ns == trained_at  # not trained again
        v2 = turn.model_version
        assert v2 == model_version_for(None, new_ckpt) != v1
        assert turn.push_report.n_predictions_created == len(ds.images) and _project_version(ls_client, pid) == v2
        # The backend now serves the new model, without a restart, under its version.
        assert turn.backends == {url: v2} and backend.model_version == v2
        assert httpx.get(f"{url}/health").json()["model_version"] == v2
        assert json.loads((out / "loop.json").read_text())["steps_done"][-1] == "current_model"

        # Label Studio asks the backend for a task lacking the new version's prediction: it gets the new model's.
        tid = tasks[ds.images[3]["file_name"]]
        for pred in ls_client.sdk.predictions.list(task=tid):
            if pred.model_version == v2:
                ls_client.sdk.predictions.delete(id=pred.id)
        ls_client.sdk.actions.create(id="retrieve_tasks_predictions", project=pid,
                                     selected_items={"all": False, "included": [tid]})
        stored = [p for p in ls_client.sdk.predictions.list(task=tid) if p.model_version == v2]
        assert len(stored) == 1 and ls_client.sdk.ml.get(id=ml_id).model_version == v2
        want = load(read_current_model(current))([ls_data_root / ds.images[3]["file_name"]])[0]
        assert len([r for r in stored[0].result if r["type"] == "rectanglelabels"]) == len(want["boxes"])
    finally:
        watcher.stop()
        server.shutdown()
        server.server_close()
