"""Client behaviour without a server: bounded retries, clear errors, no secrets."""

from __future__ import annotations

import time

import pytest

from kvasir_ml.labelstudio.client import LabelStudioError, LSClient, LSConnection, connection_from_env, redact
from kvasir_ml.labelstudio.server import free_port

KEY = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed"


def test_closed_port_gives_bounded_retries_then_clear_error(caplog):
    client = LSClient(LSConnection(f"http://127.0.0.1:{free_port()}", KEY), max_attempts=3, backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(LabelStudioError) as exc:
        client.check()
    assert time.monotonic() - t0 < 10
    message = str(exc.value)
    assert "after 3 attempt(s)" in message and "cannot connect" in message and "kvasir-ml ls serve" in message
    assert KEY not in message and KEY not in caplog.text and KEY not in repr(client)
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2


def test_key_only_from_environment():
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        connection_from_env(environ={})
    conn = connection_from_env(environ={"LABEL_STUDIO_API_KEY": KEY, "LABEL_STUDIO_URL": "http://h:1/"})
    assert conn.url == "http://h:1" and KEY not in repr(conn)


def test_redact():
    assert redact(f"token {KEY} and {KEY}", [KEY, None, ""]) == "token *** and ***"


def test_non_idempotent_calls_are_not_resent_after_a_timeout():
    import httpx

    client = LSClient(LSConnection("http://127.0.0.1:9", KEY), max_attempts=4, backoff_s=0.01)
    calls = []

    def slow():
        calls.append(1)
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(LabelStudioError, match="ReadTimeout"):
        client.call("import tasks", slow, idempotent=False)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(LabelStudioError):
        client.call("list tasks", slow)
    assert len(calls) == client.max_silent_attempts == 2  # a server that hung once is tried once more

    def flaky():
        calls.append(1)
        raise httpx.RemoteProtocolError("connection dropped")

    calls.clear()
    with pytest.raises(LabelStudioError, match="RemoteProtocolError"):
        client.call("list tasks", flaky)
    assert len(calls) == 4  # other transport errors use every attempt
