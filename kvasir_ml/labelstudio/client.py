"""A small wrapper over ``label-studio-sdk`` 2.x: bounded retries, clear errors, no secrets.

Every SDK call goes through ``LSClient.call``, which retries a server that is down or
slow a bounded number of times with exponential backoff, then raises
``LabelStudioError`` with a message that says what was being done and never contains
the API key (nor the response headers, which carry session cookies).

The API key is read from the environment only at the edge (``connection_from_env``);
library functions receive an ``LSClient``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

log = logging.getLogger(__name__)

ENV_URL = "LABEL_STUDIO_URL"
ENV_API_KEY = "LABEL_STUDIO_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
_REDACTED = "***"


class LabelStudioError(RuntimeError):
    """A Label Studio request failed; the message names the operation and the reason."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each (non-empty) secret in ``text`` by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


@dataclass(frozen=True)
class LSConnection:
    """Where the server is and the key to use. ``repr`` never shows the key."""

    url: str
    api_key: str = field(repr=False)


def connection_from_env(url: str | None = None, environ: dict[str, str] | None = None) -> LSConnection:
    """Read ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (the only place a key comes from).

    Args:
        url: overrides ``LABEL_STUDIO_URL`` (a URL is not a secret).
        environ: defaults to ``os.environ``.

    Raises:
        LabelStudioError: no API key in the environment.
    """
    env = os.environ if environ is None else environ
    key = env.get(ENV_API_KEY, "").strip()
    if not key:
        raise LabelStudioError(
            f"no Label Studio API key: set {ENV_API_KEY} in the environment "
            "(keys are never read from configs or command-line flags)"
        )
    return LSConnection(url=(url or env.get(ENV_URL) or DEFAULT_URL).rstrip("/"), api_key=key)


def _api_error_detail(exc: Exception) -> tuple[int | None, str]:
    """Status code and a short body summary of an SDK ``ApiError`` (headers left out)."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("detail", "validation_errors", "error") if body.get(k)]
        detail = "; ".join(parts) or str(body)
    else:
        detail = str(body)[:500] if body is not None else type(exc).__name__
    return status, detail


class LSClient:
    """SDK client with bounded retries, bounded waits and redacted errors.

    A server that accepts the connection but never answers costs at most
    ``read_timeout_s`` per attempt, and such a call is tried at most
    ``max_silent_attempts`` times (a server that hung once usually hangs again): about
    1 min by default, not 4 x 120 s.

    Args:
        connection: URL and API key.
        connect_timeout_s: time to open the TCP connection (a closed port fails at once).
        read_timeout_s: longest wait for the server's next bytes (not for the whole answer:
            a large export that keeps streaming is never cut off).
        max_attempts: attempts per call (1 = no retry).
        backoff_s: first wait between attempts; doubles each time, capped at 8 s.
        max_silent_attempts: attempts of a call whose answers timed out (read timeouts).
    """

    def __init__(self, connection: LSConnection, connect_timeout_s: float = 5.0, read_timeout_s: float = 30.0,
                 max_attempts: int = 4, backoff_s: float = 0.5, max_silent_attempts: int = 2):
        import httpx
        from label_studio_sdk import LabelStudio

        self.url = connection.url
        self._key = connection.api_key
        self.max_attempts = max(1, int(max_attempts))
        self.max_silent_attempts = max(1, int(max_silent_attempts))
        self.backoff_s = backoff_s
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        # The SDK's own retries are switched off: this class owns the retry policy. The
        # httpx client carries the split timeouts; no `timeout=` for the SDK, whose single
        # number would override them on every request (connect included).
        self.sdk = LabelStudio(base_url=self.url, api_key=self._key, max_retries=0,
                               httpx_client=httpx.Client(timeout=self.timeout, follow_redirects=True))

    def __repr__(self) -> str:
        return f"LSClient(url={self.url!r})"

    def _redact(self, text: str) -> str:
        return redact(text, [self._key])

    def call(self, what: str, fn: Callable[..., Any], *args: Any, idempotent: bool = True, **kwargs: Any) -> Any:
        """Run one SDK call with retries.

        Args:
            what: what is being done, for messages ("import 500 tasks into project 3").
            fn: the SDK method.
            idempotent: False for calls that create things: those are retried only when
                the connection was refused (the request never reached the server), so a
                timed-out import is not sent twice; re-running the push is safe instead.

        Raises:
            LabelStudioError: after the last attempt, or at once for a 4xx answer.
        """
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        last_reason = ""
        silent = 0
        for attempt in range(self.max_attempts):
            try:
                return fn(*args, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_reason = f"cannot connect ({type(exc).__name__})"
            except httpx.ReadTimeout:
                silent += 1
                last_reason = f"ReadTimeout: the server accepted the request but sent nothing for {self.timeout.read:g} s"
                if not idempotent or silent >= self.max_silent_attempts:
                    break
            except httpx.TransportError as exc:
                last_reason = f"{type(exc).__name__}: {exc}"
                if not idempotent:
                    break
            except ApiError as exc:
                status, detail = _api_error_detail(exc)
                last_reason = f"HTTP {status}: {detail}"
                retryable = status is not None and (status >= 500 or status in (408, 429))
                if not retryable or not idempotent:
                    raise LabelStudioError(self._redact(f"Label Studio at {self.url}: {what} failed: {last_reason}")) from None
            if attempt + 1 < self.max_attempts:
                wait_s = min(self.backoff_s * 2**attempt, 8.0)
                log.warning("Label Studio: %s: %s; retrying in %.1f s", what, self._redact(last_reason), wait_s)
                time.sleep(wait_s)
        raise LabelStudioError(
            self._redact(
                f"Label Studio at {self.url}: {what} failed after {attempt + 1} attempt(s): {last_reason}. "
                "Is the server running and reachable? (start one with `kvasir-ml ls serve`)"
            )
        )

    # ---- convenience wrappers used by sync.py --------------------------------------
    def check(self) -> str:
        """Confirm the server answers and the key is valid; return the user's e-mail."""
        user = self.call("check the connection and API key", self.sdk.users.whoami)
        return getattr(user, "email", "") or ""

    def find_projects(self, title: str) -> list[Any]:
        pager = self.call(f"list projects titled {title!r}", self.sdk.projects.list, title=title, page_size=100)
        return [p for p in self.call("list projects", list, pager) if p.title == title]

    def list_tasks(self, project_id: int, page_size: int = 1000, extra_fields: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every task's ``id`` and ``data`` (paged; no annotations or predictions), plus ``extra_fields``
        (task columns such as ``total_predictions``, a counter the server keeps on every prediction
        change), as the server's plain JSON: typed SDK objects cost ~10x more to build at 100k tasks."""
        include = ",".join(("id", "data", *extra_fields))  # without it the server computes every column: ~10x slower
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.get_json(f"list tasks of project {project_id} (page {page})", "api/tasks",
                                  params={"project": project_id, "page": page, "page_size": page_size,
                                          "fields": "task_only", "include": include},
                                  end_of_pages=page > 1)
            if body is None:  # 404 "Invalid page" one page past the end (task count a multiple of the page size)
                return out
            items = body.get("tasks") or [] if isinstance(body, dict) else []
            out.extend({"id": t["id"], "data": dict(t.get("data") or {}), **{k: t.get(k) for k in extra_fields}}
                       for t in items)
            total = body.get("total") if isinstance(body, dict) else None
            if len(items) < page_size or (isinstance(total, int) and len(out) >= total):
                return out
            page += 1

    def get_json(self, what: str, path: str, params: dict[str, Any], end_of_pages: bool = False) -> Any:
        """GET a server path with the SDK's authentication and this client's retries; its parsed JSON
        (None for a 404 when ``end_of_pages``: a page past the last one)."""
        http = self.sdk._client_wrapper.httpx_client  # the SDK's authenticated client (no public accessor)

        def send() -> Any:
            resp = http.request(path, method="GET", params=params)
            if end_of_pages and resp.status_code == 404:
                return None
            _raise_for_status(resp)
            return resp.json()

        return self.call(what, send)

    def post_json(self, what: str, path: str, body: Any, params: dict[str, Any] | None = None,
                  idempotent: bool = False) -> Any:
        """POST ``body`` serialised once with ``json.dumps`` to a server path (e.g. the bulk import),
        with the SDK's authentication and this client's retry policy; returns the parsed answer.

        The SDK's typed methods walk every value of a request through its own encoder first
        (~1.7 ms per task with a prediction: minutes for 100k tasks); the server reads the same JSON.

        Raises:
            LabelStudioError: as ``call``.
        """
        import json

        http = self.sdk._client_wrapper.httpx_client  # the SDK's authenticated client (no public accessor)
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

        def send() -> Any:
            resp = http.request(path, method="POST", params=params, content=content,
                                headers={"content-type": "application/json"})
            _raise_for_status(resp)
            return resp.json() if resp.content else None

        return self.call(what, send, idempotent=idempotent)

    def get_path(self, what: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a server path outside the SDK's typed API (e.g. a served image) with the SDK's
        authentication (legacy token or personal access token); returns the ``httpx.Response``
        whatever its status (the caller decides what a 404 means)."""
        http = self.sdk._client_wrapper.httpx_client  # the SDK's authenticated client (no public accessor)
        return self.call(what, http.request, path, method="GET", params=params)


def _raise_for_status(resp: Any) -> None:
    """The SDK's ``ApiError`` (status and the server's detail) for a non-2xx answer, as its typed
    methods raise it, so ``LSClient.call`` treats both alike."""
    if 200 <= resp.status_code < 300:
        return
    from label_studio_sdk.core.api_error import ApiError

    try:
        detail = resp.json()
    except ValueError:
        detail = resp.text[:500]
    raise ApiError(status_code=resp.status_code, body=detail)
