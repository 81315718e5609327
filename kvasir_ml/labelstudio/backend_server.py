"""HTTP for the ML backend: waitress, with limits and checks that a bad client cannot get past.

Why waitress (a production WSGI server; pure Python, no dependencies) rather than the standard
library's threaded server, which started one thread per connection, never timed a connection out,
listened with a backlog of 5 and trusted a ``Content-Length`` of ``-1``:

* waitress reads each request completely in one event loop before a worker thread sees it, so a
  stalled or slow client costs a socket, not a thread, and the worker count is fixed;
* a connection idle for ``read_timeout_s`` is closed; here also one whose request (head and body)
  has not fully arrived after ``request_timeout_s`` (a client trickling a byte at a time);
* the listen backlog is 1024 and at most ``connection_limit`` connections are open at once (more
  wait in the backlog: a queue, not resets);
* the body limit is enforced while reading (413), and ``Content-Length`` must be digits (400).

On top of that, before any route runs (``guard``): the ``Host`` header must name this backend
(loopback names, the address it binds, ``--allowed-host``: refuses DNS rebinding and foreign
hosts), an ``Origin`` header must name one of those hosts too (refuses cross-site browser
requests), and with basic auth configured (Label Studio's *Basic Auth* option for ML backends,
required when binding beyond loopback) the ``Authorization`` header must carry it. POST bodies
must be ``application/json`` (a ``text/plain`` form post from a web page is refused: JSON needs
a CORS preflight, which this server never grants) with a ``Content-Length`` (411 otherwise).

Requests go to two lanes (``_TwoLanes``): ``/predict`` queues for one prediction worker (the
models use every core already), everything else has its own threads, so ``/health`` answers
within Label Studio's 1 s while predictions wait.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

AUTH_USER_ENV, AUTH_PASS_ENV = "BASIC_AUTH_USER", "BASIC_AUTH_PASS"  # the names label-studio-ml-backend uses
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = ("", "0.0.0.0", "::")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            415: "Unsupported Media Type", 500: "Internal Server Error", 501: "Not Implemented"}


@dataclass(frozen=True)
class ServerLimits:
    """What one client may cost the backend (defaults for Label Studio on the same machine or LAN).

    Args:
        max_body_bytes: largest request body (a predict call for 100 tasks is ~0.1 MB).
        max_tasks: most tasks in one ``/predict`` (larger: 413 saying so; a long batch would
            hold every other annotator's prediction back).
        read_timeout_s: a connection with no bytes for this long is closed (whole seconds).
        request_timeout_s: a request whose head and body are not in after this long is closed.
        threads: worker threads for everything but predictions (which have one of their own).
        connection_limit: open connections at most; more wait in the listen backlog.
        backlog: the listen backlog.
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_tasks: int = 100
    read_timeout_s: int = 30
    request_timeout_s: int = 60
    threads: int = 4
    connection_limit: int = 100
    backlog: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_tasks", "read_timeout_s", "request_timeout_s", "threads",
                     "connection_limit", "backlog"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"server limit {name} must be a whole number >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Access:
    """Who may call: ``Host``/``Origin`` names accepted, and the basic-auth pair (None = no auth)."""

    allowed_hosts: frozenset[str] = LOOPBACK_NAMES
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)  # never in a repr or log


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def basic_auth_from_env(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The backend's basic-auth pair from ``BASIC_AUTH_USER`` / ``BASIC_AUTH_PASS`` (both or neither).

    Raises:
        ValueError: only one of them is set, or the user name holds a ``:``.
    """
    user, password = environ.get(AUTH_USER_ENV) or "", environ.get(AUTH_PASS_ENV) or ""
    if bool(user) != bool(password):
        raise ValueError(f"set both {AUTH_USER_ENV} and {AUTH_PASS_ENV} in the environment, or neither")
    if ":" in user:
        raise ValueError(f"{AUTH_USER_ENV} must not contain ':' (basic auth splits user and password there)")
    return (user, password) if user else None


def access_for(bind_host: str, allowed_hosts: Iterable[str] = (), basic_auth: tuple[str, str] | None = None) -> Access:
    """The access rules of a backend listening on ``bind_host``.

    Raises:
        ValueError: bound beyond loopback without basic auth, or to every address without
            ``allowed_hosts`` (the names Label Studio puts in the backend URL).
    """
    extra = {_host_of(h) or h.lower() for h in allowed_hosts}
    if not is_loopback(bind_host) and basic_auth is None:
        raise ValueError(f"listening on {bind_host} (beyond loopback) needs basic auth: set {AUTH_USER_ENV} and "
                         f"{AUTH_PASS_ENV} in the environment, and give Label Studio the same pair (`kvasir-ml ls "
                         "connect` reads the same variables)")
    if bind_host in _WILDCARDS and not extra:
        raise ValueError(f"listening on every address ({bind_host or 'all'}): name the host names Label Studio "
                         "uses in the backend URL with --allowed-host NAME (requests for other hosts are refused)")
    hosts = set(LOOPBACK_NAMES) | extra | ({bind_host.lower().strip("[]")} if bind_host not in _WILDCARDS else set())
    return Access(frozenset(hosts), basic_auth)


def _host_of(value: str) -> str | None:
    """The host name of a ``Host`` header value or an origin URL, lower case; None if unparsable."""
    try:
        parts = urlsplit(value if "//" in value else "//" + value.strip())
        parts.port  # noqa: B018 — raises ValueError for a bad port
    except ValueError:
        return None
    return (parts.hostname or "").rstrip(".") or None


def _authorized(header: str, expected: tuple[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    # both compared, always: the time taken says nothing about which part was wrong
    ok_user = hmac.compare_digest(user.encode(), expected[0].encode())
    ok_pass = hmac.compare_digest(password.encode(), expected[1].encode())
    return bool(sep) and ok_user and ok_pass


def refusal(environ: Mapping[str, Any], access: Access) -> tuple[int, str] | None:
    """Why this request must not reach a route (``(status, message)``), or None to let it in."""
    host = environ.get("HTTP_HOST")
    if not host or _host_of(host) not in access.allowed_hosts:
        return 400, "the Host header does not name this backend (start it with --allowed-host NAME for the " \
                    "name in the URL Label Studio uses)"
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and _host_of(origin) not in access.allowed_hosts:
        return 403, "cross-site requests are refused (Label Studio calls the backend from its server, not a browser)"
    if access.basic_auth is not None and not _authorized(environ.get("HTTP_AUTHORIZATION") or "", access.basic_auth):
        return 401, "basic auth required: give Label Studio the backend's user and password (Basic Auth)"
    return None


def body_length(environ: Mapping[str, Any], max_body_bytes: int) -> int:
    """The ``Content-Length`` of a POST, checked (``BodyError`` with 415/411/400/413 otherwise)."""
    kind = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise BodyError(f"Content-Type must be application/json, not {kind or 'missing'!r:.60}", 415)
    raw = environ.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        raise BodyError("a Content-Length header is required", 411)
    if not raw.isascii() or not raw.isdigit():
        raise BodyError("Content-Length must be a non-negative whole number", 400)
    if int(raw) > max_body_bytes:
        raise BodyError(f"request body of {int(raw)} bytes exceeds the limit of {max_body_bytes}", 413)
    return int(raw)


class BodyError(ValueError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def respond(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Basic realm="kvasir-ml ML backend", charset="UTF-8"'))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [payload]


def guard(app: Callable[..., Iterable[bytes]], access: Access) -> Callable[..., Iterable[bytes]]:
    """``app`` behind the Host / Origin / basic-auth checks (``refusal``)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refused = refusal(environ, access)
        if refused is not None:
            log.warning("refused %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), refused[1])
            return respond(start_response, refused[0], {"error": refused[1]})
        return app(environ, start_response)

    return guarded


class BackendServer:
    """A waitress server for a WSGI app: ``serve_forever`` / ``shutdown`` / ``server_close`` and
    ``server_address``, like the standard library's servers (tests start it in a thread)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str, port: int, limits: ServerLimits):
        from waitress.adjustments import Adjustments

        self._map: dict[int, Any] = {}
        adj = Adjustments(host=host, port=port, threads=limits.threads, backlog=limits.backlog,
                          connection_limit=limits.connection_limit, channel_timeout=limits.read_timeout_s,
                          cleanup_interval=1, max_request_body_size=limits.max_body_bytes, expose_tracebacks=False,
                          ident="kvasir-ml", asyncore_use_poll=True)
        server_class = _server_class()
        self._server = server_class(app, map=self._map, adj=adj, dispatcher=_TwoLanes(limits.threads),
                                    sockinfo=adj.listen[0])
        self._server.request_timeout_s = limits.request_timeout_s
        self.server_address = (self._server.effective_host, self._server.effective_port)
        self._stop, self._stopped = threading.Event(), threading.Event()
        self._stopped.set()

    def serve_forever(self, poll_interval_s: float = 0.5) -> None:
        from waitress import wasyncore

        self._stopped.clear()
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=poll_interval_s, use_poll=True, map=self._map, count=1)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        self._stop.set()
        self._stopped.wait(5)

    def server_close(self) -> None:
        from waitress import wasyncore

        self._server.task_dispatcher.shutdown(timeout=2)
        wasyncore.close_all(self._map)


def _server_class() -> type:
    """waitress' TCP server whose channels also close a request that takes too long to arrive."""
    from waitress.channel import HTTPChannel
    from waitress.server import TcpWSGIServer

    class _Channel(HTTPChannel):
        request_started = 0.0

        def received(self, data: bytes) -> bool:
            if self.request is None and data:
                self.request_started = time.time()  # these bytes begin a new request
            return super().received(data)

    class _Server(TcpWSGIServer):
        channel_class = _Channel
        request_timeout_s = 60

        def maintenance(self, now: float) -> None:
            super().maintenance(now)  # idle connections (read_timeout_s)
            cutoff = now - self.request_timeout_s
            for channel in list(self.active_channels.values()):
                if channel.request is not None and not channel.requests and channel.request_started < cutoff:
                    log.warning("closing a connection whose request did not arrive within %d s", self.request_timeout_s)
                    channel.will_close = True

    return _Server


class _TwoLanes:
    """waitress task dispatcher: ``/predict`` queues (FIFO) for one worker; the rest has ``threads``."""

    def __init__(self, threads: int):
        from waitress.task import ThreadedTaskDispatcher

        self.predict, self.other = ThreadedTaskDispatcher(), ThreadedTaskDispatcher()
        self.predict.set_thread_count(1)
        self.other.set_thread_count(threads)

    def add_task(self, task: Any) -> None:
        requests = getattr(task, "requests", None) or []
        path = (getattr(requests[0], "path", "") or "") if requests else ""
        (self.predict if path.rstrip("/") == "/predict" else self.other).add_task(task)

    def set_thread_count(self, count: int) -> None:
        self.other.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        done = self.predict.shutdown(cancel_pending, timeout)
        return self.other.shutdown(cancel_pending, timeout) and done


def printable(text: str, max_chars: int = 1000) -> str:
    """``text`` with control characters escaped (``\\n`` -> ``\\x0a``) and cut to ``max_chars``."""
    safe = "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in text)
    return safe if len(safe) <= max_chars else f"{safe[:max_chars]}... ({len(safe)} characters)"


class EscapeControlChars(logging.Filter):
    """Log records of the backend carry text a client chose (task ids, file names): a newline in
    one would forge a log line. The filter escapes control characters and caps the length."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = printable(message)
        if safe != message:
            record.msg, record.args = safe, ()
        return True


def escape_logs(*names: str) -> None:
    """Install ``EscapeControlChars`` on these loggers (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, EscapeControlChars) for f in logger.filters):
            logger.addFilter(EscapeControlChars())


escape_logs(__name__, "kvasir_ml.labelstudio.backend", "waitress")
