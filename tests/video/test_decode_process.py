"""``video predict``'s forked decode process: its batches equal in-process decoding, slots are
reused, and a failing or dying process is an error in the consumer, never a hang."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

from kvasir_ml.data.inset import detect_inset
from kvasir_ml.video.decode_process import DecodeProcessError, ForkedDecoder
from kvasir_ml.video.io import VideoError
from kvasir_ml.video.predict import _DecodedBatches

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the decode process is forked (Linux only)")


def _prepare(rgb, inset):
    """A stand-in for the classifier's input function: one small float tensor per frame."""
    import torch

    return {"image": torch.from_numpy(rgb[::8, ::8].astype(np.float32).transpose(2, 0, 1) / 255)}


def _decoder(video, batch=4, every=1, n_slots=2):
    source = _DecodedBatches(video, every, batch, 0.0, None, _prepare, None)
    blank = np.zeros((128, 160, 3), np.uint8)
    sample = {"rgb": blank, **{f"cls.{k}": v.numpy() for k, v in _prepare(blank, detect_inset(blank)).items()}}
    return source, ForkedDecoder(source, sample, batch, n_slots=n_slots)


def test_batches_equal_in_process_decoding_and_slots_are_reused(synth_video):
    video = synth_video.parent / "video.mp4"
    source, forked = _decoder(video, batch=5, every=2, n_slots=2)
    expected = list(source)  # 24 frames: 5 batches, more than the 2 slots
    got, slots = [], []
    with forked:
        for item in forked:
            got.append({"meta": item["meta"], "rgb": item["rgb"].numpy().copy(),
                        "image": item["cls"]["image"].numpy().copy()})
            slots.append(item["slot"])
            forked.release(item["slot"])
    assert len(got) == len(expected) == 5 and set(slots) == {0, 1}
    for a, b in zip(got, expected):
        assert [m[:2] for m in a["meta"]] == [m[:2] for m in b["meta"]]
        assert [m[2].state for m in a["meta"]] == [m[2].state for m in b["meta"]]
        np.testing.assert_array_equal(a["rgb"], b["rgb"].numpy())
        np.testing.assert_array_equal(a["image"], b["cls"]["image"].numpy())


def test_an_error_in_the_process_is_raised_in_the_consumer(tmp_path):
    bad = tmp_path / "notavideo.mp4"
    bad.write_bytes(b"not a video at all")
    _, forked = _decoder(bad)
    with forked:
        with pytest.raises(VideoError, match="notavideo.mp4"):
            list(forked)


def test_a_process_that_dies_is_an_error_not_a_hang(synth_video):
    _, forked = _decoder(synth_video.parent / "video.mp4", n_slots=1)
    with forked:
        items = iter(forked)
        next(items)  # the only slot is taken and not released: the process waits for it
        os.kill(forked._proc.pid, signal.SIGKILL)
        with pytest.raises(DecodeProcessError, match="died"):
            next(items)


def test_a_frame_of_another_size_is_named(synth_video):
    source = _DecodedBatches(synth_video.parent / "video.mp4", 1, 4, 0.0, None, None, None)
    with ForkedDecoder(source, {"rgb": np.zeros((64, 64, 3), np.uint8)}, 4) as forked:
        with pytest.raises(DecodeProcessError, match=r"\(128, 160, 3\) where the video's first frame gave \(64, 64, 3\)"):
            list(forked)


class _OddError(Exception):
    """Pickles, but does not unpickle (its __init__ wants two arguments, its args hold one)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")


def test_an_error_that_does_not_unpickle_arrives_as_its_text(synth_video, monkeypatch):
    def failing_iter(self):
        raise _OddError("frame7.png", "truncated")
        yield  # a generator, as the real one is

    monkeypatch.setattr(_DecodedBatches, "__iter__", failing_iter)
    _, forked = _decoder(synth_video.parent / "video.mp4")
    with forked:
        with pytest.raises(DecodeProcessError, match="_OddError: frame7.png: truncated"):
            list(forked)
