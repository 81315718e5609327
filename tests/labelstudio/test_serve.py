"""`kvasir-ml ls serve` as a user runs it: secrets stay off command lines, the data dir is
private, and SIGTERM or SIGHUP stop the whole Label Studio process group (not only Ctrl-C)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ls_boot import label_studio_boot

def _processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``text``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                out[int(entry.name)] = cmd
    return out


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


STANDIN = Path(__file__).with_name("standin_ls.py")


# The real CLI process either way; the server it starts is Label Studio itself or a stand-in that
# answers /health within a second and keeps a child in its process group (standin_ls.py).
# Slow: a real Label Studio start (~40 s on 2 quiet cores, far more on busy ones); the stand-in
# runs by default and covers the same path (`ls serve` -> LabelStudioServer.serve: private data
# dir, secrets off command lines, a signal stops the whole process group). SIGHUP takes the
# same code path as SIGTERM.
@pytest.mark.parametrize(("server", "signum"), [
    ("stand-in", signal.SIGTERM),
    pytest.param("label-studio", signal.SIGTERM, marks=[pytest.mark.slow, pytest.mark.labelstudio]),
    pytest.param("label-studio", signal.SIGHUP, marks=[pytest.mark.slow, pytest.mark.labelstudio]),
])
def test_serve_stops_the_process_group_on_signal_and_keeps_secrets_private(request, tmp_path, server, signum):
    from kvasir_ml.labelstudio.server import free_port

    data_dir, root = tmp_path / "ls data", tmp_path / "root"
    root.mkdir()
    if server == "label-studio":
        request.getfixturevalue("ls_server")  # fills the template
        template = label_studio_boot(request.config).template
        if template is not None and template.is_dir():  # start in seconds instead of migrating
            shutil.copytree(template, data_dir)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = ["ls", "serve", "--data-root", str(root), "--data-dir", str(data_dir), "--port", str(port)]
    launcher = ["-m", "kvasir_ml"] if server == "label-studio" else [str(STANDIN), "cli"]
    cli = subprocess.Popen([sys.executable, *launcher, *argv],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert cli.poll() is None and time.monotonic() < deadline, cli.stdout.read() if cli.poll() is not None else "timeout"
            time.sleep(0.5)
        token = (data_dir / "api_token").read_text().strip()
        password = (data_dir / "web_password").read_text().strip()
        server_procs = _processes_mentioning(str(data_dir))
        assert server_procs, "the Label Studio process should name its data dir"
        for cmd in server_procs.values():
            assert token not in cmd and password not in cmd and "--password" not in cmd
        assert (data_dir.stat().st_mode & 0o777) == 0o700
        loose = [p for p in data_dir.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o077]
        assert not loose, f"group/other can read {loose[:5]}"
        assert (data_dir / ".gitignore").read_text().strip().endswith("*")

        cli.send_signal(signum)
        out, _ = cli.communicate(timeout=60)
        assert cli.returncode == 0, out
        assert "stopped (signal" in out
        deadline = time.monotonic() + 20
        while (_processes_mentioning(str(data_dir)) or _port_open(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_mentioning(str(data_dir)), "Label Studio survived the signal"
        assert not _port_open(port)
        assert token not in out and password not in out
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
