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

import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


def thread_candidates(cores: int | None = None) -> list[int]:
    """1 thread and every core (torch's default), without repeats."""
    default = torch.get_num_threads() if cores is None else cores
    return sorted({1, max(1, default)}, reverse=True)


class ThreadTuner:
    """Picks the intra-op thread count per batch from measured seconds per image.

    Args:
        device: the models' device; only ``cpu`` tunes (anything else: threads are left alone).
        candidates: thread counts to choose from; default ``thread_candidates()``.
        reprobe_every: after this many batches with the best count, each other count runs one
            batch again (the load may have changed). Costs at most one slow batch per period.

    Use ``with tuner.batch(n_images): model(...)`` around each batch.
    """

    def __init__(self, device: torch.device | str | None, candidates: Sequence[int] | None = None,
                 reprobe_every: int = 50):
        self.active = device is not None and torch.device(device).type == "cpu"
        self.candidates = list(candidates or thread_candidates())
        self.reprobe_every = reprobe_every
        self.s_per_image: dict[int, float] = {}
        self._queue: list[int] = list(self.candidates) * 2  # each twice: the first batch carries warm-up
        self._since_probe = 0
        self.history: list[int] = []  # threads of every batch (tests, reports)

    def next_threads(self) -> int:
        if self._queue:
            return self._queue[0]
        return min(self.s_per_image, key=self.s_per_image.__getitem__)

    def record(self, threads: int, seconds: float, n_images: int) -> None:
        if self._queue and self._queue[0] == threads:
            self._queue.pop(0)
        else:
            self._since_probe += 1
            if self._since_probe >= self.reprobe_every:
                self._since_probe = 0
                self._queue = [t for t in self.candidates if t != threads]
        self.s_per_image[threads] = seconds / max(1, n_images)
        self.history.append(threads)

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
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            torch.set_num_threads(saved)
        self.record(threads, seconds, n_images)

