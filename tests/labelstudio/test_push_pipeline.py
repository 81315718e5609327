"""The push's pipelined import (sync._Pipelined): batches go out one at a time, in order, and an
import's error stops the push at the next batch (no server needed)."""

from __future__ import annotations

import threading
import time

import pytest

from kvasir_ml.labelstudio.client import LabelStudioError
from kvasir_ml.labelstudio.sync import _Pipelined


def test_batches_are_sent_in_order_one_at_a_time():
    sent, in_flight, most = [], [0], [0]
    lock = threading.Lock()

    def send(batch):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.01)
        sent.append(batch[0])
        with lock:
            in_flight[0] -= 1

    with _Pipelined(send) as sender:
        for i in range(5):
            sender.submit([i])
    assert sent == [0, 1, 2, 3, 4] and most[0] == 1


def test_an_import_error_is_raised_at_the_next_batch_and_stops_the_push():
    sent = []

    def send(batch):
        if batch == [1]:
            raise LabelStudioError("import 1 tasks into project 3 failed: HTTP 400")
        sent.append(batch[0])

    with pytest.raises(LabelStudioError, match="HTTP 400"):
        with _Pipelined(send) as sender:
            for i in range(4):
                sender.submit([i])
    assert sent == [0]


def test_the_last_batch_error_is_raised_on_leaving_the_block():
    def send(batch):
        raise LabelStudioError("boom")

    with pytest.raises(LabelStudioError, match="boom"):
        with _Pipelined(send) as sender:
            sender.submit([0])
