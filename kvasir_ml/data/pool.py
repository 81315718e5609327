"""Process pools whose workers never outlive the process that started them.

A ``ProcessPoolExecutor`` worker blocks on its task queue; when the parent is killed
(SIGKILL, or SIGTERM with Python's default handler) nobody closes that queue (forked workers
hold both ends of the pipe), so the workers wait forever as orphans, holding memory and
open files. ``worker_pool`` prevents both:

* each worker asks the kernel to SIGKILL it when its parent dies (Linux ``prctl``
  ``PR_SET_PDEATHSIG``; elsewhere a thread polls the parent's pid once a second), and exits at
  once if the parent died before that was in place;
* while the pool runs in the main thread (and nobody else handles SIGTERM), SIGTERM stops the
  workers and exits with status 143 (128 + SIGTERM) instead of leaving them running; the caller writes nothing half-done
  because results are only written after the pool has finished.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_POLL_S = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: the worker dies when ``parent_pid`` does (see the module docstring)."""
    # A forked worker inherits the parent's SIGTERM handler (below); a worker just dies.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the kernel was told to watch it
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and terminate the running workers (no waiting for their chunk)."""
    pool.shutdown(wait=False, cancel_futures=True)
    # The executor has no public way to stop a running task; its worker table is the only handle.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


@contextmanager
def worker_pool(max_workers: int) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` whose workers die with this process and stop on SIGTERM.

    Args:
        max_workers: worker processes.

    Yields:
        The executor. On leaving the block by an exception (SIGTERM included) the workers are
        terminated instead of being waited for.
    """
    previous = None
    # Only where SIGTERM still has its default action: a caller's own handler (a server's clean
    # stop) stays in charge, and its exception leaves the block below, which stops the workers.
    ours = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if ours:
        def on_sigterm(signum: int, frame: object) -> None:
            print(f"terminated (signal {signum}): stopping the pool's worker processes", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, on_sigterm)
    pool = ProcessPoolExecutor(max_workers=max_workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        _stop_workers(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        if ours:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
