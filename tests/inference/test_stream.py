"""Streaming predict (JSON Lines): one line per image, resumable after a real kill, torn lines cut."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvasir_ml.cli import main as cli_main
from kvasir_ml.inference.combined import Predictor
from kvasir_ml.inference.bench import untrained_checkpoint, write_frames
from kvasir_ml.inference.stream import list_images, predict_to_jsonl, read_jsonl, written_images

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained small classifier: the real loading and inference path, fast on CPU."""
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", arch="resnet18", image_size_px=32)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    return write_frames(tmp_path_factory.mktemp("frames") / "archive", 10, width_px=160, height_px=128)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_stream_matches_the_list_path_and_resume_skips_written_images(ckpt, frames, tmp_path):
    predictor = Predictor(ckpt, device="cpu")
    out = tmp_path / "p.jsonl"
    first = predict_to_jsonl(predictor, frames[:4], out, model_version="v1", workers=0, batch_images=3,
                             progress=False)
    assert (first.n_written, first.n_already) == (4, 0)
    second = predict_to_jsonl(predictor, frames, out, model_version="v1", workers=1, batch_images=3, progress=False)
    assert (second.n_written, second.n_already) == (6, 4)
    lines = _lines(out)
    assert [e["image"] for e in lines] == [str(p) for p in frames]  # each once, in order
    reference = predictor(frames)  # the in-memory path of `kvasir-ml predict --out x.json`
    for got, want in zip(lines, reference):
        assert got["model_version"] == "v1" and "error" not in got
        assert got["source_class"]["name"] == want["source_class"]["name"]
        assert got["labels"] == pytest.approx(want["labels"], abs=1e-5)
        assert got["inset"] == want["inset"]


def test_torn_last_line_is_cut_and_a_foreign_line_is_refused(tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_bytes(b'{"image": "a.jpg"}\n{"image": "b.jpg"}\n{"image": "c.j')
    assert written_images(out) == {"a.jpg", "b.jpg"}
    assert out.read_bytes() == b'{"image": "a.jpg"}\n{"image": "b.jpg"}\n'
    out.write_bytes(b'{"image": "a.jpg"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 2: not a prediction entry"):
        written_images(out)


def test_read_jsonl_for_push_refuses_a_torn_file(tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_bytes(b'{"image": "a.jpg"}\n{"image": "b.jpg"}\n')
    assert [e["image"] for e in read_jsonl(out)] == ["a.jpg", "b.jpg"]
    out.write_bytes(b'{"image": "a.jpg"}\n{"ima')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 2: torn last line"):
        read_jsonl(out)


def test_folders_are_searched_and_bad_images_get_an_error_line(ckpt, frames, tmp_path):
    bad = frames[0].parent / "zz-broken.jpg"
    bad.write_bytes(b"not a jpeg")
    try:
        images = list_images([frames[0].parent])
        assert images[-1] == bad and len(images) == len(frames) + 1
        rep = predict_to_jsonl(Predictor(ckpt, device="cpu"), images, tmp_path / "p.jsonl", workers=0,
                               progress=False)
    finally:
        bad.unlink()
    assert rep.n_failed == 1
    assert "error" in _lines(tmp_path / "p.jsonl")[-1]


class _FailsOn:
    """The classifier, failing on any batch that holds the image whose first pixels are ``poison``."""

    def __init__(self, model, poison):
        self.model, self.poison = model, poison

    def __call__(self, image, **rest):
        if any(bool((img[:, 0, :4] == self.poison).all()) for img in image):
            raise RuntimeError("odd frame")
        return self.model(image=image, **rest)


def test_a_frame_the_classifier_fails_on_costs_only_itself_with_batches_in_flight(ckpt, frames, tmp_path):
    """Batches are started on the lanes before the previous one is collected; a chunk that
    fails is retried image by image when its batch is collected, and only its bad image gets an
    error (the batches around it, already started, keep their labels)."""
    from kvasir_ml.cpu_threads import CpuPlan
    from kvasir_ml.data.images import load_rgb
    from kvasir_ml.data.inset import detect_inset
    from kvasir_ml.train.classify import classifier_inputs

    predictor = Predictor(ckpt, device="cpu")
    predictor.classifier_plan = CpuPlan(lanes=2)  # lanes even on a 1-core runner
    model, cfg, state = predictor.classifier
    rgb = load_rgb(frames[4])
    poison = classifier_inputs(cfg, rgb, detect_inset(rgb))["image"][:, 0, :4]
    predictor.classifier = (_FailsOn(model, poison), cfg, state)
    rep = predict_to_jsonl(predictor, frames, tmp_path / "p.jsonl", workers=0, batch_images=3, progress=False)
    lines = _lines(tmp_path / "p.jsonl")
    assert [e["image"] for e in lines] == [str(p) for p in frames]
    assert rep.n_failed == 1 and lines[4]["error"] == "classifier failed: RuntimeError: odd frame"
    assert all(e["labels"] and "error" not in e for i, e in enumerate(lines) if i != 4)


def test_an_error_while_starting_a_batch_is_raised_when_it_is_collected(ckpt, frames, tmp_path, caplog):
    """A batch that cannot even be started on the model (here: refused for holding more than one
    image) fails where its results are collected, with its own error, and is then retried image
    by image."""
    predictor = Predictor(ckpt, device="cpu")
    start = predictor.start_forward

    def refuse_batches(batch, plan=None):
        if len(batch["image"]) > 1:
            raise ValueError("inputs of different shapes")
        return start(batch, plan)

    predictor.start_forward = refuse_batches
    rep = predict_to_jsonl(predictor, frames[:5], tmp_path / "p.jsonl", workers=0, batch_images=3, progress=False)
    assert rep.n_written == 5 and rep.n_failed == 0
    assert all(e["labels"] for e in _lines(tmp_path / "p.jsonl"))
    retried = [r.getMessage() for r in caplog.records if "retrying image by image" in r.getMessage()]
    assert len(retried) == 2 and all("ValueError: inputs of different shapes" in m for m in retried)


@pytest.mark.parametrize("with_detector", [False, True])
def test_the_next_batch_is_started_before_the_previous_is_collected_unless_a_detector_runs(monkeypatch,
                                                                                         with_detector):
    from types import SimpleNamespace

    from kvasir_ml.inference import stream

    events: list[tuple[str, int]] = []

    def start(predictor, batch):
        events.append(("start", batch))

        def finish():
            events.append(("collect", batch))
            return [{"image": str(batch)}]

        return finish

    monkeypatch.setattr(stream, "start_models", start)
    predictor = SimpleNamespace(detect=(lambda *a: []) if with_detector else None)
    out = [e[0]["image"] for e in stream._in_flight(predictor, iter(range(3)))]
    assert out == ["0", "1", "2"]
    if with_detector:
        assert events == [("start", 0), ("collect", 0), ("start", 1), ("collect", 1), ("start", 2), ("collect", 2)]
    else:
        assert events == [("start", 0), ("start", 1), ("collect", 0), ("start", 2), ("collect", 1), ("collect", 2)]


def test_cli_resumes_after_a_kill(ckpt, tmp_path, capsys):
    """`kvasir-ml predict DIR --out x.jsonl` killed (SIGKILL) mid-run, a torn line left behind,
    then run again: every image exactly once, the first run's lines kept. The killed run is a real
    process; the rerun is the same CLI call in this process (a second interpreter and torch import
    cost ~10 s and test nothing the resume does)."""
    frames = write_frames(tmp_path / "archive", 80, width_px=96, height_px=80)  # enough to kill it mid-run
    out = tmp_path / "preds.jsonl"
    cmd = [sys.executable, "-m", "kvasir_ml", "predict", "--classifier", str(ckpt), "--device", "cpu",
           str(tmp_path / "archive"), "--out", str(out), "--batch", "1", "--workers", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.read_bytes().count(b"\n") < 2) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = out.read_bytes()
    n_before = kept.count(b"\n")
    assert 2 <= n_before < len(frames), "the run ended before the kill: give it more frames"
    kept = kept[:kept.rfind(b"\n") + 1]  # a line the kill tore is cut by the resume too
    with open(out, "ab") as fh:
        fh.write(b'{"image": "' + str(frames[-1]).encode()[:10])  # as if killed mid-line
    cmd[cmd.index("--batch") + 1] = "16"  # the resumed run need not be slow
    assert cli_main(cmd[cmd.index("predict"):]) == 0
    assert f"{n_before} already there (resumed)" in capsys.readouterr().out
    assert [e["image"] for e in _lines(out)] == [str(p) for p in frames]
    assert out.read_bytes().startswith(kept)
