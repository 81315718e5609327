"""The ML backend against bad clients (issue 19): slow and stalled connections, bad lengths, 50
clients at once, a bad task beside good ones, foreign hosts and sites, basic auth. Bounded: the
server runs with 1-2 s timeouts, every client socket has a timeout, no assert times anything."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from kvasir_ml.labelstudio.backend import Backend, make_backend_server
from kvasir_ml.labelstudio.backend_server import (
    Access, LOOPBACK_NAMES, ServerLimits, access_for, basic_auth_from_env,
)
from kvasir_ml.labelstudio.convert import image_url

LIMITS = ServerLimits(max_body_bytes=1024 * 1024, max_tasks=20, read_timeout_s=1, request_timeout_s=2, threads=4)


def _image_predict(paths):
    """Reads each image for real (a corrupt one fails the whole call, as a model's loader would)."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            out.append({"image": str(p), "width": im.width, "height": im.height, "predicted_labels": ["polyp"],
                        "labels": {"polyp": 0.9}, "boxes": [], "inset": {"state": "none"}})
    return out


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data-root"
    (data / "imgs").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "x%41.jpg"):
        Image.new("RGB", (40, 30), (200, 50, 50)).save(data / "imgs" / name)
    Image.new("RGB", (40, 30)).save(data / "imgs" / "xA.jpg")
    (data / "imgs" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    os.symlink("loop", data / "imgs" / "loop")  # a symlink to itself
    return data


@pytest.fixture
def serve(root):
    """Start a backend with short limits; returns (url, server, backend). Stopped after the test."""
    started = []

    def start(predict_fn=_image_predict, access=None, limits=LIMITS):
        backend = Backend(root, predict_fn, "m-1")
        server = make_backend_server(backend, "127.0.0.1", 0, limits, access)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server, backend

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http():
    """One client for a test's requests (building one per request is slow on a busy machine)."""
    with httpx.Client(timeout=30) as client:
        yield client


def _task(tid, file_name):
    return {"id": tid, "data": {"image": image_url(file_name)}}


def _raw(port, data, timeout_s=10.0):
    """Send raw bytes, return the status code of the answer (0 when the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            head = sock.recv(200)
        except ConnectionResetError:
            return 0
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


def _closed_by_server(sock, timeout_s=10.0) -> bool:
    sock.settimeout(timeout_s)
    try:
        while True:
            if not sock.recv(1024):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_stalled_and_trickling_clients_are_closed_and_cost_no_thread(serve, http):
    url, server, _ = serve()
    port = server.server_address[1]
    threads_before = threading.active_count()
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
    for sock in stalled[:20]:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n")  # head never ends
    trickler = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        # every connection is held; the server still answers, with no thread per connection
        assert http.get(f"{url}/health", timeout=5).status_code == 200
        assert threading.active_count() <= threads_before  # the old server: one more thread per connection
        # a byte every 0.25 s is never idle for read_timeout_s, but the request takes too long
        closed = False
        for byte in b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" * 4:
            try:
                trickler.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.25)
        assert closed or _closed_by_server(trickler)
        assert all(_closed_by_server(sock) for sock in stalled)  # after read_timeout_s of silence
        assert http.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        for sock in stalled + [trickler]:
            sock.close()


def test_negative_missing_bad_and_oversized_lengths_are_refused(serve, http):
    calls = []
    url, server, _ = serve(lambda paths: calls.append(paths) or _image_predict(paths))
    port = server.server_address[1]
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = json.dumps({"tasks": [_task(1, "imgs/a.jpg")]}).encode()
    big = b'{"tasks": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert _raw(port, head + b"Content-Length: -1\r\n\r\n" + big) == 400  # was: read the 80 MB, answered 200
    assert _raw(port, head + b"Content-Length: abc\r\n\r\n" + body) == 400
    assert _raw(port, head + b"Content-Length: +5\r\n\r\n" + body) == 400
    assert _raw(port, head + b"Content-Length: 80000000\r\n\r\n") == 413  # refused before the body is read
    assert _raw(port, head + b"Connection: close\r\n\r\n" + body) == 411
    chunked = b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n"
    assert _raw(port, head + chunked) == 413
    assert calls == []
    ok = http.post(f"{url}/predict", content=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["results"][0]["result"]


def test_fifty_concurrent_clients_are_all_answered(serve):
    def slow_predict(paths):
        time.sleep(0.02)
        return _image_predict(paths)

    url, _, _ = serve(slow_predict)
    barrier = threading.Barrier(50, timeout=60)
    # one client, thread-safe, a connection per request in flight (building 50 clients is slow on a busy box)
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=60, max_keepalive_connections=0))

    def client(i):
        barrier.wait()
        if i % 2:
            return "health", http.get(f"{url}/health").status_code, None
        resp = http.post(f"{url}/predict", json={"tasks": [_task(i, "imgs/a.jpg"), _task(i + 1, "imgs/b.jpg")]})
        return "predict", resp.status_code, len(resp.json()["results"])

    with http, ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(client, range(50)))  # a reset connection would raise here
    assert len(answers) == 50 and all(status == 200 for _, status, _ in answers)
    assert all(n == 2 for kind, _, n in answers if kind == "predict")


def test_a_request_with_too_many_tasks_is_refused_with_the_limit(serve, http):
    calls = []
    url, _, _ = serve(lambda paths: calls.append(paths) or _image_predict(paths))
    resp = http.post(f"{url}/predict", json={"tasks": [_task(i, "imgs/a.jpg") for i in range(21)]}, timeout=10)
    assert resp.status_code == 413 and "at most 20" in resp.json()["error"] and "--max-tasks" in resp.json()["error"]
    assert calls == []
    assert http.post(f"{url}/predict", json={"tasks": [_task(i, "imgs/a.jpg") for i in range(20)]},
                      timeout=30).status_code == 200


def test_bad_tasks_get_their_own_error_and_never_echo_the_data_root(serve, http, root, caplog):
    url, _, _ = serve()
    tasks = [_task(1, "imgs/a.jpg"), _task(2, "imgs/" + "n" * 5000 + ".jpg"), _task(3, "imgs/loop"),
             _task(4, "imgs/corrupt.jpg"), {"id": 5, "data": {"image": "/data/local-files/?d=../secret.jpg"}},
             {"id": 6}, _task(7, "imgs/b.jpg")]
    with caplog.at_level(logging.WARNING):
        resp = http.post(f"{url}/predict", json={"tasks": tasks}, timeout=30)
    assert resp.status_code == 200  # was: HTTP 500 for the whole batch
    results = resp.json()["results"]
    assert len(results) == 7 and results[0]["result"] and results[6]["result"]  # the good tasks survive
    for i in range(1, 6):
        assert results[i]["result"] == [] and f"task {i + 1}:" in results[i]["error"]
    assert "cannot be opened" in results[1]["error"] or "does not exist" in results[1]["error"]
    assert "prediction failed" in results[3]["error"]
    assert str(root) not in resp.text and str(root.resolve()) not in resp.text  # no server paths in answers
    assert str(root.parent) not in resp.text


def test_task_ids_with_newlines_cannot_forge_log_lines(serve, http, caplog):
    url, _, _ = serve()
    forged = "7\n2026-12-05 10:00:00 INFO kvasir_ml admin logged in"
    with caplog.at_level(logging.WARNING):
        resp = http.post(f"{url}/predict", json={"tasks": [{"id": forged, "data": {"image": "/nowhere.jpg"}},
                                                            {"id": 8, "data": {"file_name": "x\r\ny.jpg"}}]}, timeout=10)
    assert resp.status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name.startswith(("kvasir_ml", "waitress"))]
    assert messages and any("admin logged in" in m for m in messages)
    assert not any("\n" in m or "\r" in m for m in messages)


def test_foreign_hosts_cross_site_posts_and_non_json_bodies_are_refused(serve, http):
    calls = []
    url, _, _ = serve(lambda paths: calls.append(paths) or _image_predict(paths))
    body = json.dumps({"tasks": [_task(1, "imgs/a.jpg")]})
    # the browser attack: a cross-site text/plain POST needs no CORS preflight
    plain = http.post(f"{url}/predict", content=body, timeout=10,
                       headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert plain.status_code == 403
    assert http.post(f"{url}/predict", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
    assert http.post(f"{url}/predict", content=body, headers={"Content-Type": ""}).status_code == 415
    for host in ("evil.example", "evil.example:9090", "127.0.0.1.evil.example", ""):  # DNS rebinding, no Host
        assert http.post(f"{url}/predict", content=body, headers={"Content-Type": "application/json",
                                                                   "Host": host}).status_code == 400
    assert http.get(f"{url}/health", headers={"Host": "evil.example"}).status_code == 400
    assert calls == []
    for host in ("localhost:1234", "[::1]:9090", "127.0.0.1"):
        assert http.get(f"{url}/health", headers={"Host": host}).status_code == 200
    assert http.post(f"{url}/predict", content=body, headers={"Content-Type": "application/json; charset=utf-8",
                                                               "Origin": f"{url}"}).status_code == 200


def test_basic_auth_is_required_when_configured_and_never_echoed(serve, http, monkeypatch, capsys, tmp_path):
    url, _, _ = serve(access=Access(LOOPBACK_NAMES, ("ls-robot", "s3cret-pass")))
    assert http.get(f"{url}/health").status_code == 401
    refused = http.get(f"{url}/health", auth=("ls-robot", "wrong"))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert "s3cret-pass" not in refused.text
    assert http.get(f"{url}/health", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert http.get(f"{url}/health", auth=("ls-robot", "s3cret-pass")).status_code == 200
    assert http.post(f"{url}/predict", json={"tasks": [_task(1, "imgs/a.jpg")]},
                      auth=("ls-robot", "s3cret-pass")).status_code == 200

    # beyond loopback: basic auth (from the environment) and the host names are required
    with pytest.raises(ValueError, match="BASIC_AUTH_USER"):
        access_for("0.0.0.0")
    with pytest.raises(ValueError, match="--allowed-host"):
        access_for("0.0.0.0", basic_auth=("u", "p"))
    assert "ls.lab.example" in access_for("0.0.0.0", ["ls.lab.example:9090"], ("u", "p")).allowed_hosts
    assert access_for("127.0.0.1").basic_auth is None
    with pytest.raises(ValueError, match="both"):
        basic_auth_from_env({"BASIC_AUTH_USER": "u"})
    assert basic_auth_from_env({"BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p"}) == ("u", "p")

    from kvasir_ml.cli import main

    monkeypatch.delenv("BASIC_AUTH_USER", raising=False)
    monkeypatch.delenv("BASIC_AUTH_PASS", raising=False)
    assert main(["ls", "backend", "--data-root", str(tmp_path), "--host", "0.0.0.0", "--allowed-host", "x",
                 "--classifier", str(tmp_path / "none.pt")]) == 2
    assert "BASIC_AUTH_USER" in capsys.readouterr().err


def test_url_only_task_is_decoded_once_in_the_backend(serve, http):
    """``x%41.jpg`` is its own file; decoding twice answered for ``xA.jpg``, another image."""
    seen = []
    url, _, _ = serve(lambda paths: seen.extend(p.name for p in paths) or _image_predict(paths))
    resp = http.post(f"{url}/predict", json={"tasks": [_task(1, "imgs/x%41.jpg")]}, timeout=10)
    assert resp.status_code == 200 and seen == ["x%41.jpg"]


@pytest.mark.labelstudio
def test_label_studio_reaches_a_backend_with_basic_auth(ls_client, ls_data_root):
    from kvasir_ml.data.coco import CanonicalDataset
    from kvasir_ml.labelstudio.client import LabelStudioError
    from kvasir_ml.labelstudio.convert import image_key_from_task_data
    from kvasir_ml.labelstudio.annotation_round import wait_for_backends
    from kvasir_ml.labelstudio.sync import connect_backend, push_dataset

    folder = ls_data_root / "authbackend"
    folder.mkdir(exist_ok=True)
    ds = CanonicalDataset.new("auth")
    for name in ("p.jpg", "q.jpg"):
        Image.new("RGB", (40, 30), (200, 50, 50)).save(folder / name)
        ds.add_image(f"authbackend/{name}", 40, 30, [], "t", None)
    backend = Backend(ls_data_root, _image_predict, "m-auth")
    server = make_backend_server(backend, "127.0.0.1", 0, LIMITS, Access(LOOPBACK_NAMES, ("ls-robot", "pw-9f3a")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        pid = push_dataset(ls_client, ds, ls_data_root, "ml backend with auth").project_id
        with pytest.raises(LabelStudioError):  # without the pair Label Studio cannot use it
            connect_backend(ls_client, pid, url)
        connect_backend(ls_client, pid, url, basic_auth=("ls-robot", "pw-9f3a"))
        ids = [t["id"] for t in ls_client.list_tasks(pid)]
        ls_client.sdk.actions.create(id="retrieve_tasks_predictions", project=pid,
                                     selected_items={"all": False, "included": ids})
        for tid in ids:
            assert [p.model_version for p in ls_client.sdk.predictions.list(task=tid)] == ["m-auth"]
        keys = {image_key_from_task_data(t["data"]) for t in ls_client.list_tasks(pid)}
        assert keys == {img["file_name"] for img in ds.images}
        # the loop asks the connected backends which model they serve: with the pair, and without it
        assert wait_for_backends(ls_client, pid, "m-auth", 5, basic_auth=("ls-robot", "pw-9f3a")) == {url: "m-auth"}
        assert "HTTP 401" in wait_for_backends(ls_client, pid, "m-auth", 0.2)[url]
    finally:
        server.shutdown()
        server.server_close()
