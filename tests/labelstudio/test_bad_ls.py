"""Label Studio faults: a server that accepts but never answers costs a bounded time, and
coordinates that are not numbers ("10", true) are rejected, not coerced."""

from __future__ import annotations

import socket
import threading

import pytest

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.client import LabelStudioError, LSClient, LSConnection
from kvasir_ml.labelstudio.convert import ConvertError, box_to_result, result_box_xywh_px, result_size
from kvasir_ml.labelstudio.from_export import export_to_canonical

KEY = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed"


@pytest.fixture
def silent_server():
    """A local socket that accepts every connection and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", accepted
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    srv.close()


def test_silent_server_costs_a_bounded_time_then_a_clear_error(silent_server, caplog):
    url, accepted = silent_server
    client = LSClient(LSConnection(url, KEY), read_timeout_s=0.5, max_attempts=4, backoff_s=0.05)
    with pytest.raises(LabelStudioError) as exc:
        client.check()
    # 2 silent attempts of 0.5 s each (not 4 x 120 s): the attempts and the read timeout, from the error
    assert "after 2 attempt(s)" in str(exc.value) and "sent nothing for 0.5 s" in str(exc.value)
    assert len(accepted) == 2 and KEY not in str(exc.value) and KEY not in caplog.text


def test_default_timeouts_are_bounded():
    client = LSClient(LSConnection("http://127.0.0.1:9", KEY))
    timeout = client.sdk._client_wrapper.httpx_client.httpx_client.timeout
    assert timeout.connect <= 10 and timeout.read <= 60
    assert client.sdk._client_wrapper.get_timeout() is None  # no per-request number overriding them
    worst_s = client.max_silent_attempts * timeout.read + client.max_attempts * 8
    assert worst_s <= 120  # a hung server: about a minute of waiting, not ~8


@pytest.mark.parametrize("field, value", [("x", "10"), ("y", True), ("width", "5"), ("height", False),
                                          ("rotation", "0"), ("x", None)])
def test_coordinates_that_are_not_numbers_are_rejected(field, value):
    result = box_to_result("polyp", (10, 10, 20, 20), 100, 80)
    result["value"][field] = value
    with pytest.raises(ConvertError, match="non-numeric coordinates .*numbers expected"):
        result_box_xywh_px(result, 100, 80, task_id=7)


def test_boolean_image_size_is_not_a_size():
    result = box_to_result("polyp", (10, 10, 20, 20), 100, 80)
    result["original_width"] = True
    assert result_size(result) is None


def test_a_task_with_string_coordinates_keeps_the_image_state_and_is_named():
    base = CanonicalDataset.new("t")
    base.add_image("a.jpg", 100, 80, ["cecum"], "t", None)
    bad = box_to_result("polyp", (10, 10, 20, 20), 100, 80)
    bad["value"]["x"] = "10"
    tasks = [{"id": 5, "data": {"file_name": "a.jpg"}, "annotations": [{"id": 1, "result": [bad]}]}]
    out, report = export_to_canonical(tasks, base=base)
    assert out.images[0]["labels"] == ["cecum"] and out.annotations == []
    assert report.n_failed == 1 and [(p.task_id, p.kind) for p in report.errors] == [(5, "bad-box")]
