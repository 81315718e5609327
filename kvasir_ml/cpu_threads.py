"""How CPU inference uses the cores: a ``CpuPlan`` per batch, chosen by timing real batches.

A plan runs a batch either as one forward split over ``threads`` intra-op threads, or in
``lanes``: the batch cut into chunks that single-threaded forwards take from a queue, one
Python thread per core (torch releases the GIL inside its ops).

Why: torch's OpenMP threads wait for each other at every op's barrier. When the cores are
shared (a decode worker or thread of this program, an encoder, other people's jobs), one
descheduled thread stalls every op for a time slice, and a forward with all cores' threads
costs several times one with a single thread. Measured on 2 busy cores (load ~5), resnet18
at 128 px, batch 16: 2 threads 67-145 ms/img, 1 thread 17-29 ms/img. Lanes have no barrier
to stall on (a lane that loses its core delays only its chunk, and the other lanes take the
queue's next chunks), and even on idle cores they can win: resnet50 at 224 px, batch 16, on
an idle 2-core AMD EPYC VM, 2 lanes (chunks of 4) ran 14.5-16.0 img/s against 8.2-10.9 img/s
for one forward at 2 threads and 6.1 img/s at 1 thread. So a model whose batch can be cut
runs in lanes, one per core (``lanes_plan``). For one that cannot (ultralytics' predictor), the
fastest thread count depends on the machine, the model and the load, which changes during a
long run, so ``ThreadTuner`` runs batches with each candidate, keeps the fastest, and tries
the others again now and then. On a GPU it does nothing.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

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


@dataclass(frozen=True, order=True)
class CpuPlan:
    """How one batch uses the cores: ``lanes`` single-threaded forwards over chunks of the
    batch (``lanes`` > 1), or one forward at ``threads`` intra-op threads (``lanes`` == 1)."""

    lanes: int = 1
    threads: int = 1

    @property
    def cores(self) -> int:
        return self.lanes * self.threads

    @property
    def stalls(self) -> bool:
        """Whether a busy core stalls the whole batch (intra-op threads wait at every op's barrier)."""
        return self.threads > 1

    def __str__(self) -> str:
        return f"{self.lanes}x{self.threads}"


def lanes_plan(cores: int | None = None) -> CpuPlan:
    """The plan of a model whose batch can be cut (run from several Python threads): one lane per
    core (one thread on one core). Lanes never stall on a busy core and beat one forward on all
    the cores' threads where measured (module docstring); with one plan, not a tuned choice, an
    image's scores do not depend on the load (a forward's float sums run in another order at
    another batch size; ``Lanes`` cuts a batch the same way every time)."""
    cores = usable_cores() if cores is None else cores
    return CpuPlan(lanes=cores) if cores > 1 else CpuPlan(threads=1)


def thread_plans(cores: int | None = None) -> list[CpuPlan]:
    """One forward at each count of ``thread_candidates``: what ``ThreadTuner`` chooses from by
    default (a model whose batch cannot be cut, such as ultralytics' predictor)."""
    return [CpuPlan(threads=t) for t in thread_candidates(cores)]


T = TypeVar("T")


def deferred(start: Callable[[], Callable[[], T]]) -> Callable[[], T]:
    """``start()``'s collect call; an error raised by ``start`` is raised by that call instead, so
    a batch's error surfaces where its results are collected whether it came early or late."""
    try:
        return start()
    except Exception as exc:  # noqa: BLE001 — re-raised by the collect call
        error = exc  # (``exc`` is unbound when the except block ends)

    def fail() -> T:
        raise error

    return fail


class Lanes:
    """Runs ``fn(start, stop)`` over a batch's chunks on a plan's lanes (a thread pool kept
    across batches); the chunks' results, in order. Chunks are half a lane's share of the batch,
    so a lane that loses its core for a while leaves its later chunks to the others.

    ``submit`` queues a batch and returns at once: a caller that submits the next batch before
    it collects the previous one's results keeps every lane busy across the batch boundary (a
    lane done with its chunks takes the next batch's while another finishes; collecting each
    batch before submitting the next, it would wait). Measured on a 2-core AMD EPYC VM, ResNet50 at 224 px,
    batch 16: one batch at a time kept 1.91 cores busy, two in flight 1.97.
    """

    CHUNKS_PER_LANE = 2

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[[int, int], T], n_items: int, plan: CpuPlan | None) -> Callable[[], list[T]]:
        """Queue the batch's chunks on the lanes; the returned call waits for their results (in
        order) and raises a chunk's error. A plan of one lane, a batch of one item, or no plan
        (a GPU: torch's threads left alone) runs ``fn`` here, now, in one call, at the plan's
        thread count; its error, too, is raised by the returned call."""
        if plan is None or plan.lanes <= 1 or n_items <= 1:
            return self._here(fn, n_items, plan)
        chunk = max(1, math.ceil(n_items / (plan.lanes * self.CHUNKS_PER_LANE)))
        if self._pool is None or self._pool._max_workers != plan.lanes:  # noqa: SLF001 — resized rarely
            self.close()
            self._pool = ThreadPoolExecutor(plan.lanes, thread_name_prefix="cpu-lane")

        def lane(start: int) -> T:
            torch.set_num_threads(plan.threads)  # per thread: a pool thread keeps the count it first ran with
            with torch.inference_mode():  # grad mode is per thread too
                return fn(start, min(n_items, start + chunk))

        futures = [self._pool.submit(lane, start) for start in range(0, n_items, chunk)]
        return lambda: [f.result() for f in futures]

    @staticmethod
    def _here(fn: Callable[[int, int], T], n_items: int, plan: CpuPlan | None) -> Callable[[], list[T]]:
        def now() -> Callable[[], list[T]]:
            saved = torch.get_num_threads()
            try:
                if plan is not None:
                    torch.set_num_threads(plan.threads)
                with torch.inference_mode():
                    done = [fn(0, n_items)]
            finally:
                torch.set_num_threads(saved)
            return lambda: done

        return deferred(now)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


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
    """Picks the ``CpuPlan`` per batch from measured seconds per image.

    Starts (a warm-up batch, then a timed one) with the plan of most cores that fits: lanes
    always fit (they do not stall), intra-op threads only as far as their extra cores were idle
    since the tuner was made. Then it tries the other plans (one batch each), a stalling one
    only when the cores it would add were idle during the last batch: on a busy machine such a
    probe costs several batches' time and would lose anyway. (On an idle machine the first
    batches thus run at the plan that usually wins.) Every ``reprobe_every`` batches the plans
    not in use are tried again, as idle cores allow; while every other plan loses by more than
    ``clear_loss`` the wait doubles (up to 8x): a probe of a plan that lost clearly is one slow
    batch spent for nothing.

    Args:
        device: the models' device; only ``cpu`` tunes (anything else: threads are left alone).
        candidates: plans (or intra-op thread counts) to choose from, ties going to the first
            listed; default ``thread_plans()``.
        reprobe_every: batches between probes of the plans not in use (at first; see above).
        clear_loss: how much slower per image (1.2: 20 %) the other plans must all be for the wait to double.
        idle_cores: idle cores since its last call (default ``IdleCores()``, from /proc/stat).

    Use ``with tuner.batch(n_images) as plan: ...`` around each batch (``Lanes.submit`` runs a batch on a plan).
    """

    def __init__(self, device: torch.device | str | None, candidates: Sequence[CpuPlan | int] | None = None,
                 reprobe_every: int = 50, idle_cores: Callable[[], float] | None = None, clear_loss: float = 1.2):
        self.active = device is not None and torch.device(device).type == "cpu"
        plans = [c if isinstance(c, CpuPlan) else CpuPlan(threads=c) for c in (candidates or thread_plans())]
        self.candidates = sorted(plans, key=lambda c: -c.cores)  # stable: ties keep the order given
        self.reprobe_every = self._reprobe_after = reprobe_every
        self.clear_loss = clear_loss
        self.idle_cores = idle_cores or IdleCores()
        self.s_per_image: dict[CpuPlan, float] = {}
        self._queue: list[CpuPlan] = []  # plans to run next; the first batch (warm-up) is not recorded
        self._warm = False
        self._since_probe = 0
        self.history: list[CpuPlan] = []  # the plan of every batch (tests, reports)

    def _fits(self, plan: CpuPlan, room: float) -> bool:
        return not plan.stalls or plan.cores - 1 <= room

    def _probes(self, current: CpuPlan) -> list[CpuPlan]:
        """The plans other than ``current`` that fit the idle cores (lanes and 1 thread always do)."""
        room = self.idle_cores() + current.cores - 1 + 0.25  # a batch on `current` ran meanwhile
        return [c for c in self.candidates if c != current and self._fits(c, room)]

    def next_plan(self) -> CpuPlan:
        if not self._warm and not self._queue:  # warm-up: the most cores that fit the idle ones
            room = self.idle_cores() + 0.25
            fitting = [c for c in self.candidates if self._fits(c, room)]
            self._queue = [fitting[0] if fitting else min(self.candidates, key=lambda c: c.cores)]
        if self._queue:
            return self._queue[0]
        return self.best or self.candidates[0]

    def record(self, plan: CpuPlan, seconds: float, n_images: int) -> None:
        self.history.append(plan)
        if not self._warm:
            self._warm = True
            self._queue = [plan] + self._probes(plan)
            return
        self.s_per_image[plan] = seconds / max(1, n_images)
        if self._queue and self._queue[0] == plan:
            self._queue.pop(0)
            if not self._queue:  # a round of probes ended
                self._back_off()
            return
        self._since_probe += 1
        if self._since_probe >= self._reprobe_after:
            self._since_probe = 0
            self._queue = self._probes(plan)

    def _back_off(self) -> None:
        """Double the wait for the next probes while every other plan lost clearly; else reset it."""
        best = self.best
        assert best is not None  # a round records at least one batch
        others = [v for k, v in self.s_per_image.items() if k != best]
        clear = bool(others) and min(others) > self.clear_loss * self.s_per_image[best]
        self._reprobe_after = min(8 * self.reprobe_every, 2 * self._reprobe_after) if clear else self.reprobe_every

    @property
    def best(self) -> CpuPlan | None:
        """The fastest plan measured so far (None before any batch)."""
        return min(self.s_per_image, key=self.s_per_image.__getitem__) if self.s_per_image else None

    @contextmanager
    def batch(self, n_images: int) -> Iterator[CpuPlan]:
        """Run the block on the chosen plan and time it: torch's thread count set to the plan's
        (restored after), the plan given to the block (to cut the batch into its lanes)."""
        if not self.active:
            yield CpuPlan(threads=torch.get_num_threads())
            return
        saved, plan = torch.get_num_threads(), self.next_plan()
        torch.set_num_threads(plan.threads)
        self.idle_cores()  # start the idle-time window: a probe decision after this batch sees only it
        start = time.perf_counter()
        try:
            yield plan
        finally:
            seconds = time.perf_counter() - start
            torch.set_num_threads(saved)
        self.record(plan, seconds, n_images)
