"""One training per run folder at a time: a lock file beside the folder.

Two trainings started into the same ``--out`` both passed the run-folder check (the folder
was empty for both), trained side by side, overwrote each other's ``split.json`` and one
failed after training. ``run_lock(run_dir)`` is taken before that check and held until the
run ends:

* the lock is ``<parent>/.<name>.lock`` (beside the run folder, so the folder's own checks,
  set-aside and listings never see it), holding ``{"pid", "host", "started_utc", "argv"}``;
* it is an OS lock (``fcntl.flock``) on that file, so the kernel releases it when the holder
  dies, however it dies (SIGKILL, OOM): a lock file left behind is *stale* and is taken
  over, with a warning naming the old holder; no pid guessing, no timeouts;
* a held lock is refused at once, naming the holder (pid, host, start time) and the file;
* a lock file written on another host is never taken over (an OS lock may not reach across
  a network file system): the error names it and says to delete it if that run is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another process is training into the same run folder."""


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(f".{run_dir.name}.lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} (started {info['started_utc']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


def _acquire(path: Path) -> int:
    """An fd holding the flock on ``path`` (the file still at that path, not an unlinked one)."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"run folder {path.with_name(path.name[1:-5])} is in use by another training: "
                                 f"{_holder(path)}; lock file {path}. Wait for it to finish or choose another "
                                 "--out") from None
        try:  # the previous holder may have removed the file between our open and our lock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the ``with`` block.

    Raises:
        RunLockedError: another live process holds it (named in the message).
    """
    path = lock_path(Path(run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path)
    stale = os.read(fd, 4096)
    other_host = _host_of(stale)
    if other_host not in (None, socket.gethostname()):
        os.close(fd)  # an OS lock may not reach across hosts (network file systems): do not guess
        raise RunLockedError(f"run folder {run_dir} was locked by a training on another host ({_holder_text(stale)}); "
                             f"lock file {path}. If that training is no longer running, delete the lock file")
    try:
        if stale.strip():
            log.warning("%s: taking over a stale lock (%s; that process is gone)", path,
                        _holder_text(stale))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv[:8]}
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before the unlock: a waiter that opened this inode re-checks and retries
        os.close(fd)


def _holder_text(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']}, started {info['started_utc']}"
    except (ValueError, KeyError, TypeError):
        return "unreadable details"


def _host_of(raw: bytes) -> str | None:
    try:
        host = json.loads(raw)["host"]
        return str(host)
    except (ValueError, KeyError, TypeError):
        return None
