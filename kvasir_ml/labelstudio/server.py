"""Start and stop a local Label Studio server (development, tests, benchmarks).

The server listens on 127.0.0.1 only and makes no outside connections: the version check,
analytics and Sentry are switched off, and its config/cache/temp files stay inside its
data directory. Images are served from ``data_root`` through Label Studio's local-files
storage. Never call ``label-studio --version``: it starts a server on 0.0.0.0:8080.

The API token is random (or given), written to ``<data_dir>/api_token`` (mode 0600) and
never logged; point ``LABEL_STUDIO_API_KEY`` at it. The user name, web password and token
reach ``label-studio start`` through its environment (``LABEL_STUDIO_USERNAME``,
``LABEL_STUDIO_PASSWORD``, ``LABEL_STUDIO_USER_TOKEN``), never its command line, which every
user can read in ``ps`` (and where a password starting with ``-`` broke start-up for good).
The data dir is private: mode 0700, the server runs with umask 077 so its database and
files are 0600, and it holds a ``.gitignore`` of ``*`` so it is never committed.
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
from typing import Callable

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "kvasir-ml@localhost.local"
TOKEN_FILE = "api_token"
PASSWORD_FILE = "web_password"
_DB_NAME = "label_studio.sqlite3"
_TEMPLATE_FILES = (_DB_NAME, ".env", TOKEN_FILE, PASSWORD_FILE)


# Label Studio's default SSRF-banned subnets (core/utils/io.py::validate_ip, 1.23) less
# 127.0.0.0/8 and ::1/128, so a loopback ML backend can be registered and nothing else opens.
BANNED_SUBNETS_BUT_LOOPBACK = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::ffff:0:0/96", "::ffff:0:0:0/96",
    "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32", "2001:20::/28", "2001:db8::/32", "2002::/16",
    "fc00::/7", "fe80::/10", "ff00::/8",
)


class ServerError(RuntimeError):
    """The server did not start or stop; the message points at its log file."""


class _StopSignal(BaseException):
    """Raised by ``serve``'s signal handler (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


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
        # A local ML backend (`kvasir-ml ls backend`) listens on 127.0.0.1, which Label Studio's
        # SSRF guard refuses: as an ML URL (ML_BLOCK_LOCAL_IP), and as the /webhook it registers
        # with every ML backend (the default banned subnets; that refusal fails the whole
        # registration with HTTP 403). Allow loopback only: every other reserved range stays banned.
        "ML_BLOCK_LOCAL_IP": "false",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(BANNED_SUBNETS_BUT_LOOPBACK),
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

    def _command(self) -> list[str]:
        """``label-studio start`` without secrets (they go in through ``_secret_env``)."""
        exe = Path(sys.executable).with_name("label-studio")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "label_studio.server"]
        return cmd + ["start", "--no-browser", "--data-dir", str(self.data_dir), "--internal-host", "127.0.0.1",
                      "-p", str(self.port), "--enable-legacy-api-token"]

    def _secret_env(self, password: str) -> dict[str, str]:
        # label_studio.server._create_user reads these when the flags are absent
        # (core.utils.params.get_env: LABEL_STUDIO_<NAME> first).
        return {"LABEL_STUDIO_USERNAME": self.username, "LABEL_STUDIO_PASSWORD": password,
                "LABEL_STUDIO_USER_TOKEN": self.token}

    def _make_private(self) -> None:
        """Data dir 0700, its files 0600, and a ``.gitignore`` of ``*`` inside it."""
        self.data_dir.chmod(0o700)
        ignore = self.data_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# Label Studio server data (database, tokens): never commit\n*\n")
        for path in self.data_dir.rglob("*"):
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)

    def _write_secret(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        path.chmod(0o600)

    def start(self) -> "LabelStudioServer":
        """Start the server and wait until ``/health`` answers.

        Raises:
            ServerError: the process exited or did not answer in time (log tail included).
        """
        if not self.data_root.is_dir():
            raise ServerError(f"data root {self.data_root} is not a folder")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        use_template = self._copy_template()
        self._write_secret(self.token_path, self.token)
        # The web-login password is kept beside the token (0600) so a persistent data dir
        # restarts with the same login; it is never logged.
        password_path = self.data_dir / PASSWORD_FILE
        password = password_path.read_text().strip() if password_path.is_file() else secrets.token_urlsafe(12)
        self._write_secret(password_path, password)
        env = {**offline_env(self.data_dir, self.data_root), **self._secret_env(password)}  # (creates tmp/)
        log_fh = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self._make_private()
        self.proc = subprocess.Popen(self._command(), cwd=self.data_dir, env=env, umask=0o077,
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

        assert self.template_dir is not None  # called only when templates are kept

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

    def serve(self, on_ready: Callable[["LabelStudioServer"], None] | None = None,
              signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> int:
        """Start, call ``on_ready``, block until one of ``signals`` arrives or the server exits,
        then stop the whole process group — whatever the signal (a closing terminal sends
        SIGHUP, ``kill`` and service managers SIGTERM), also one that arrives during start-up.

        Returns:
            The signal number received, or 0 when the server exited by itself.
        """
        def handler(signum: int, _frame: object) -> None:
            raise _StopSignal(signum)

        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            self.start()
            if on_ready is not None:
                on_ready(self)
            while self.proc is not None and self.proc.poll() is None:
                time.sleep(0.2)
            return 0
        except _StopSignal as stop:
            return stop.signum
        finally:
            for sig in signals:  # a second signal must not interrupt the clean-up
                signal.signal(sig, signal.SIG_IGN)
            self.stop()
            for sig, old in previous.items():
                signal.signal(sig, old)

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
