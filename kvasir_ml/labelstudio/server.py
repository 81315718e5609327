"""Start and stop a local Label Studio server (development, tests, benchmarks).

The server listens on 127.0.0.1 only and makes no outside connections: the version check,
analytics and Sentry are switched off, and its config/cache/temp files stay inside its
data directory. Images are served from ``data_root`` through Label Studio's local-files
storage. Never call ``label-studio --version``: it starts a server on 0.0.0.0:8080.

The API token is random (or given), written to ``<data_dir>/api_token`` (mode 0600) and
never logged; point ``LABEL_STUDIO_API_KEY`` at it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "kvasir-ml@localhost.local"
TOKEN_FILE = "api_token"
PASSWORD_FILE = "web_password"
_DB_NAME = "label_studio.sqlite3"
_TEMPLATE_FILES = (_DB_NAME, ".env", TOKEN_FILE, PASSWORD_FILE)


class ServerError(RuntimeError):
    """The server did not start or stop; the message points at its log file."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(data_dir: Path, data_root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a server that phones nowhere and keeps its files in ``data_dir``."""
    env = dict(os.environ if base is None else base)
    for var in ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_URL"):
        env.pop(var, None)  # the server needs neither; keep secrets out of its environment
    tmp = data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update({
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "XDG_CONFIG_HOME": str(data_dir / "xdg-config"),
        "XDG_DATA_HOME": str(data_dir / "xdg-data"),
        "XDG_CACHE_HOME": str(data_dir / "xdg-cache"),
        "TMPDIR": str(tmp),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(data_root),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class LabelStudioServer:
    """A local server process. Use as a context manager, or call ``start``/``stop``.

    Args:
        data_root: folder whose images tasks refer to (the local-files document root).
        data_dir: server database and files; None = a temporary folder removed on stop.
        port: None = a free port.
        token: 40 hex chars; None = the one saved in ``data_dir`` or a new random one.
        startup_timeout_s: how long to wait for ``/health`` (first start migrates: ~35 s).
        template_dir: optional cache of a freshly migrated database (tests, benchmarks):
            filled after the first start, copied into later data dirs so that they start
            in seconds instead of migrating again. It holds no projects or data.
    """

    def __init__(self, data_root: str | Path, data_dir: str | Path | None = None, port: int | None = None,
                 token: str | None = None, username: str = DEFAULT_USERNAME, startup_timeout_s: float = 180.0,
                 template_dir: str | Path | None = None):
        self.data_root = Path(data_root).resolve()
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir).resolve() if data_dir else Path(tempfile.mkdtemp(prefix="kvasir-ls-"))
        self.port = port or free_port()
        self.username = username
        self.startup_timeout_s = startup_timeout_s
        self.token = token or self._saved_token() or secrets.token_hex(20)
        if len(self.token) != 40 or any(c not in "0123456789abcdef" for c in self.token.lower()):
            raise ServerError("the Label Studio user token must be 40 hexadecimal characters")
        self.template_dir = Path(template_dir) if template_dir else None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_path(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def _saved_token(self) -> str | None:
        path = self.data_dir / TOKEN_FILE
        return path.read_text().strip() if path.is_file() else None

    def _command(self, password: str) -> list[str]:
        exe = Path(sys.executable).with_name("label-studio")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "label_studio.server"]
        return cmd + ["start", "--no-browser", "--data-dir", str(self.data_dir), "--internal-host", "127.0.0.1",
                      "-p", str(self.port), "--username", self.username, "--password", password,
                      "--user-token", self.token, "--enable-legacy-api-token"]

    def start(self) -> "LabelStudioServer":
        """Start the server and wait until ``/health`` answers.

        Raises:
            ServerError: the process exited or did not answer in time (log tail included).
        """
        if not self.data_root.is_dir():
            raise ServerError(f"data root {self.data_root} is not a folder")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        use_template = self._copy_template()
        self.token_path.write_text(self.token + "\n")
        self.token_path.chmod(0o600)
        # The web-login password is kept beside the token (0600) so a persistent data dir
        # restarts with the same login; it is never logged.
        password_path = self.data_dir / PASSWORD_FILE
        password = password_path.read_text().strip() if password_path.is_file() else secrets.token_urlsafe(12)
        password_path.write_text(password + "\n")
        password_path.chmod(0o600)
        log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._command(password), cwd=self.data_dir, env=offline_env(self.data_dir, self.data_root),
                                     stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # own process group: stop() ends every child
        log_fh.close()
        t0 = time.monotonic()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        if self.template_dir is not None and not use_template:
            self._save_template()
        log.info("Label Studio up at %s after %.1f s (log %s)", self.url, time.monotonic() - t0, self.log_path)
        return self

    def _copy_template(self) -> bool:
        """Seed an empty data dir from the template; returns whether it was used."""
        db = self.data_dir / _DB_NAME
        if self.template_dir is None or db.exists() or not (self.template_dir / _DB_NAME).is_file():
            return False
        for name in _TEMPLATE_FILES:
            if (self.template_dir / name).is_file():
                shutil.copy2(self.template_dir / name, self.data_dir / name)
        self.token = (self.template_dir / TOKEN_FILE).read_text().strip()
        return True

    def _save_template(self) -> None:
        """Snapshot the migrated, still empty database (sqlite online backup: consistent)."""
        import sqlite3

        self.template_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.template_dir.parent))
        try:
            src, dst = sqlite3.connect(self.data_dir / _DB_NAME), sqlite3.connect(staging / _DB_NAME)
            with dst:
                src.backup(dst)
            src.close()
            dst.close()
            for name in _TEMPLATE_FILES[1:]:
                if (self.data_dir / name).is_file():
                    shutil.copy2(self.data_dir / name, staging / name)
            shutil.rmtree(self.template_dir, ignore_errors=True)
            staging.rename(self.template_dir)
        except OSError as exc:
            log.warning("could not save the Label Studio template database: %s", exc)
            shutil.rmtree(staging, ignore_errors=True)

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"Label Studio exited with code {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ServerError(f"Label Studio did not answer {self.url}/health within {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n_lines: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n_lines:]
        except OSError:
            return "(no log)"
        return "\n".join(line.replace(self.token, "***") for line in lines)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL); remove a temporary data dir."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
        self.proc = None
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
