"""How many intra-op threads CPU inference uses: chosen by timing real batches.

Why: torch's OpenMP threads spin at every op's barrier. When the cores are shared (a decode
worker or thread of this program, an encoder, other people's jobs), one descheduled thread
stalls every op for a time slice, and a forward with all cores' threads costs several times
one with a single thread. Measured on 2 busy cores (load ~5), resnet18 at 128 px, batch 16:
2 threads 67-145 ms/img, 1 thread 17-29 ms/img; on idle cores 2 threads win. Which count is
fastest depends on the load, and the load changes during a long run, so ``ThreadTuner``
runs batches with each candidate, keeps the fastest, and tries the others again now and then.
On a GPU it does nothing.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_candidates(cores: int | None = None) -> list[int]:
    """1 thread and one per core this process may use, without repeats (not torch's current
    count: importing ultralytics sets it to cores - 1)."""
    if cores is None:
        cores = usable_cores()
    return sorted({1, max(1, cores)}, reverse=True)


def side_by_side_threads(n_models: int = 2, cores: int | None = None) -> int:
    """Intra-op threads for each of ``n_models`` forwards run at once from their own Python
    threads: the cores shared out, at least 1 (on 2 cores: 1 each, no thread waits for another)."""
    if cores is None:
        cores = usable_cores()
    return max(1, cores // max(1, n_models))


class IdleCores:
    """Idle cores (CPU time not used by any process, in cores) since the previous call, from
    ``/proc/stat``; where that file is missing, cores minus the 1-minute load average."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait, total (guest time is in user)

    def __call__(self) -> float:
        now, cores = self._read(), os.cpu_count() or 1
        if now is None or self._last is None or now[1] <= self._last[1]:
            return max(0.0, cores - os.getloadavg()[0])
        idle = (now[0] - self._last[0]) / (now[1] - self._last[1]) * cores
        self._last = now
        return idle


class ThreadTuner:
    """Picks the intra-op thread count per batch from measured seconds per image.

    Starts (a warm-up batch, then a timed one) with the largest count whose extra cores were
    idle since the tuner was made, else 1 thread; then tries the other counts (one batch
    each), a larger one only when the cores it would add were idle during the last batch: on
    a busy machine a probe with more threads costs several batches' time and would lose anyway.
    (On an idle machine the first batches thus run at the count that usually wins.) Every
    ``reprobe_every`` batches the counts not in use are tried again, as idle cores allow.

    Args:
        device: the models' device; only ``cpu`` tunes (anything else: threads are left alone).
        candidates: thread counts to choose from; default ``thread_candidates()``.
        reprobe_every: batches between probes of the counts not in use.
        idle_cores: idle cores since its last call (default ``IdleCores()``, from /proc/stat).

    Use ``with tuner.batch(n_images): model(...)`` around each batch.
    """

    def __init__(self, device: torch.device | str | None, candidates: Sequence[int] | None = None,
                 reprobe_every: int = 50, idle_cores: Callable[[], float] | None = None):
        self.active = device is not None and torch.device(device).type == "cpu"
        self.candidates = sorted(candidates or thread_candidates())
        self.cores = max(self.candidates)
        self.reprobe_every = reprobe_every
        self.idle_cores = idle_cores or IdleCores()
        self.s_per_image: dict[int, float] = {}
        self._queue: list[int] = []  # counts to run next; the first batch (warm-up) is not recorded
        self._warm = False
        self._since_probe = 0
        self.history: list[int] = []  # threads of every batch (tests, reports)

    def _probes(self, current: int) -> list[int]:
        """The counts other than ``current`` whose extra threads find idle cores (1 always fits)."""
        room = self.idle_cores() + current - 1 + 0.25  # a batch with `current` threads ran meanwhile
        return [t for t in self.candidates if t != current and (t == 1 or t - 1 <= room)]

    def next_threads(self) -> int:
        if not self._warm and not self._queue:  # warm-up: the most threads the idle cores take
            room = self.idle_cores() + 0.25
            self._queue = [max(t for t in self.candidates if t == 1 or t - 1 <= room)]
        if self._queue:
            return self._queue[0]
        return self.best or self.candidates[0]

    def record(self, threads: int, seconds: float, n_images: int) -> None:
        self.history.append(threads)
        if not self._warm:
            self._warm = True
            self._queue = [threads] + self._probes(threads)
            return
        self.s_per_image[threads] = seconds / max(1, n_images)
        if self._queue and self._queue[0] == threads:
            self._queue.pop(0)
            return
        self._since_probe += 1
        if self._since_probe >= self.reprobe_every:
            self._since_probe = 0
            self._queue = self._probes(threads)

    @property
    def best(self) -> int | None:
        """The fastest count measured so far (None before any batch)."""
        return min(self.s_per_image, key=self.s_per_image.__getitem__) if self.s_per_image else None

    @contextmanager
    def batch(self, n_images: int) -> Iterator[None]:
        """Run the block with the chosen thread count and time it (restores the count after)."""
        if not self.active or len(self.candidates) < 2:
            yield
            return
        saved, threads = torch.get_num_threads(), self.next_threads()
        torch.set_num_threads(threads)
        self.idle_cores()  # start the idle-time window: a probe decision after this batch sees only it
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            torch.set_num_threads(saved)
        self.record(threads, seconds, n_images)

