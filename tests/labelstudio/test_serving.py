"""The current-model file and the watcher that hot-swaps the backend's model (no server needed)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from kvasir_ml.labelstudio.backend import Backend
from kvasir_ml.labelstudio.serving import (
    CurrentModelError, ModelWatcher, read_current_model, write_current_model,
)


def _predict_as(name):
    def predict(paths):
        return [{"image": str(p), "width": 10, "height": 10, "labels": {}, "boxes": [], "served_by": name} for p in paths]
    return predict


def _bump(path: Path) -> None:  # another mtime even on coarse file systems
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_current_model_file_round_trip_and_bad_files_are_named(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    path = write_current_model(tmp_path / "current.json", a, None, "v1")
    current = read_current_model(path)
    assert current.classifier == a.resolve() and current.detector is None and current.model_version == "v1"
    for text, reason in (("{not json", "current.json"), ('{"classifier": null, "detector": null, "model_version": "v"}',
                         "neither"), ('{"classifier": "%s", "model_version": ""}' % a, "model_version"),
                         ('{"detector": "%s", "model_version": "v"}' % (tmp_path / "gone.pt"), "does not exist")):
        path.write_text(text)
        with pytest.raises(CurrentModelError, match=reason) as err:
            read_current_model(path)
        assert str(path) in str(err.value)
    with pytest.raises(ValueError):
        write_current_model(path, None, None, "v")


def test_watcher_swaps_model_and_version_together_and_keeps_serving_on_a_bad_file(tmp_path):
    ckpt = {name: tmp_path / f"{name}.pt" for name in ("old", "new")}
    for p in ckpt.values():
        p.write_bytes(b"weights")
    current = write_current_model(tmp_path / "current.json", ckpt["old"], None, "v-old")
    loaded = []

    def load(model):
        loaded.append(model.model_version)
        if model.classifier.name == "broken.pt":
            raise RuntimeError("cannot unpickle")
        return _predict_as(model.classifier.stem)

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    backend = Backend(tmp_path, _predict_as("old"), "v-old")
    watcher = ModelWatcher(backend, current, load, poll_s=0.05)
    assert not watcher.check() and loaded == []  # unchanged file: nothing loaded

    write_current_model(current, ckpt["new"], None, "v-new")
    _bump(current)
    assert watcher.check() and backend.model_version == "v-new"
    answer = backend.predict({"tasks": [{"id": 1, "data": {"file_name": "images/a.jpg"}}]})
    assert answer["model_version"] == "v-new" and answer["results"][0]["model_version"] == "v-new"
    assert backend.health()["model_version"] == "v-new" and "reload_error" not in backend.health()

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"junk")
    write_current_model(current, broken, None, "v-broken")
    _bump(current)
    assert not watcher.check()
    assert backend.model_version == "v-new" and "cannot unpickle" in backend.health()["reload_error"]

    # the polling thread picks up the next change by itself
    write_current_model(current, ckpt["old"], None, "v-old-again")
    _bump(current)
    watcher.start()
    try:
        done = threading.Event()
        for _ in range(200):
            if backend.model_version == "v-old-again":
                done.set()
                break
            threading.Event().wait(0.05)
        assert done.is_set() and "reload_error" not in backend.health()
    finally:
        watcher.stop()
    assert json.loads(current.read_text())["model_version"] == "v-old-again"
