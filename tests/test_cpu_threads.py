"""ThreadTuner: picks the plan whose batches were fastest, probes stalling plans only when
their extra cores are idle, and re-probes as the load changes; Lanes run a batch's chunks on
single-threaded forwards and give the results back in order."""

import threading

import pytest
import torch

from kvasir_ml.cpu_threads import CpuPlan, Lanes, ThreadTuner, lanes_plan, thread_plans

TWO, ONE = CpuPlan(threads=2), CpuPlan(threads=1)
LANES = CpuPlan(lanes=2)


def _feed(tuner: ThreadTuner, cost_s_per_image: dict[CpuPlan, float], n_batches: int) -> None:
    for _ in range(n_batches):
        plan = tuner.next_plan()
        tuner.record(plan, cost_s_per_image[plan] * 8, 8)


def test_idle_machine_probes_more_threads_and_keeps_the_fastest():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=10, idle_cores=lambda: 1.0)
    _feed(tuner, {TWO: 0.01, ONE: 0.03}, 8)
    assert tuner.history[:3] == [TWO, TWO, ONE]  # warm-up and timed at the idle cores' count, probe
    assert tuner.history[3:] == [TWO] * 5 and tuner.best == TWO


def test_busy_machine_never_probes_more_threads():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=3, idle_cores=lambda: 0.0)
    _feed(tuner, {TWO: 0.09, ONE: 0.03}, 12)
    assert tuner.history == [ONE] * 12


def test_busy_start_warms_up_at_one_thread_then_probes_when_cores_idle():
    readings = iter([0.0] + [1.0] * 20)  # busy when the first batch starts, idle after it
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=10, idle_cores=lambda: next(readings))
    _feed(tuner, {TWO: 0.01, ONE: 0.03}, 6)
    assert tuner.history == [ONE, ONE, TWO, TWO, TWO, TWO]


def test_tuner_follows_a_change_of_load_at_the_next_probe():
    idle = [1.0]
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=4, idle_cores=lambda: idle[0])
    cost = {TWO: 0.01, ONE: 0.03}
    _feed(tuner, cost, 3 + 4)  # idle: 2 threads won
    cost[TWO], idle[0] = 0.09, 0.0  # the machine got busy: 2 threads stall
    _feed(tuner, cost, 6)
    assert tuner.best == ONE and tuner.history[-1] == ONE


def test_lanes_start_even_on_a_busy_machine_then_intra_op_is_probed_and_the_fastest_kept():
    for intra_cost, winner in ((0.01, TWO), (0.05, LANES)):
        tuner = ThreadTuner("cpu", candidates=[LANES, TWO], reprobe_every=3, idle_cores=lambda: 0.0)
        _feed(tuner, {LANES: 0.02, TWO: intra_cost}, 8)
        # lanes do not stall, so they start with no idle core; after a lanes batch on both
        # cores, "no idle core" means this process had them, so 2 intra-op threads are tried
        assert tuner.history[:3] == [LANES, LANES, TWO]
        assert tuner.best == winner and tuner.history[-1] == winner


def test_probes_of_a_plan_that_loses_clearly_grow_rarer_and_a_close_one_resets_the_wait():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=2, idle_cores=lambda: 1.0)
    cost = {TWO: 0.01, ONE: 0.03}
    _feed(tuner, cost, 3 + 70)
    probes = [i for i, plan in enumerate(tuner.history) if plan == ONE]
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps[:4] == [5, 9, 17, 17]  # waits of 4, 8, 16 then the cap (8 x 2) batches, plus the probe itself
    cost[ONE] = 0.011  # now within 20 %: the next probe resets the wait
    _feed(tuner, cost, 30)
    later = [i for i, plan in enumerate(tuner.history) if plan == ONE and i > probes[-1]]
    assert [b - a for a, b in zip(later, later[1:])][-1:] == [3]


def test_batch_sets_and_restores_threads_and_is_inert_off_cpu():
    before = torch.get_num_threads()
    many = CpuPlan(threads=before + 1)
    tuner = ThreadTuner("cpu", candidates=[many, ONE], idle_cores=lambda: float(before))
    for expected in (many, many, ONE):
        with tuner.batch(4) as plan:
            assert plan == expected and torch.get_num_threads() == expected.threads
        assert torch.get_num_threads() == before
    off = ThreadTuner("meta", candidates=[3, 1])
    with off.batch(4) as plan:
        assert torch.get_num_threads() == before and plan.lanes == 1
    assert off.history == []


def test_plans_lanes_one_per_core_and_the_tuners_thread_counts():
    assert lanes_plan(cores=4) == CpuPlan(lanes=4) and lanes_plan(cores=1) == ONE
    assert thread_plans(cores=4) == [CpuPlan(threads=4), ONE] and thread_plans(cores=1) == [ONE]


def test_lanes_run_every_chunk_once_in_order_on_single_threaded_workers():
    lanes = Lanes()
    seen: list[tuple[int, int, int, bool, str]] = []
    lock = threading.Lock()

    def chunk(a: int, b: int) -> list[int]:
        with lock:
            seen.append((a, b, torch.get_num_threads(), torch.is_grad_enabled(), threading.current_thread().name))
        return list(range(a, b))

    try:
        out = lanes.submit(chunk, 17, CpuPlan(lanes=2))()
        assert [i for part in out for i in part] == list(range(17))  # every item once, in order
        assert len(out) == 4  # chunks of a quarter: ceil(17 / (2 lanes * 2))
        assert all(threads == 1 and not grad and name.startswith("cpu-lane") for _, _, threads, grad, name in seen)
        before = torch.get_num_threads()
        assert lanes.submit(chunk, 5, ONE)() == [[0, 1, 2, 3, 4]]  # one lane: one call, in this thread
        assert seen[-1][2:] == (1, False, threading.current_thread().name)  # at the plan's threads, no grad
        assert lanes.submit(chunk, 1, CpuPlan(lanes=2))() == [[0]] and seen[-1][2] == 1  # one item: here too
        assert torch.get_num_threads() == before  # restored
    finally:
        lanes.close()


def test_lanes_take_the_next_batch_before_the_previous_is_collected():
    """Two batches in flight: while one chunk of the first batch holds its lane, the other lane
    runs the whole second batch (no idle tail at the batch boundary); each batch's results come
    back whole and in order."""
    lanes = Lanes()
    release = threading.Event()

    def first(a: int, b: int) -> list[int]:
        if a == 0:
            assert release.wait(10), "the second batch never ran while this chunk held its lane"
        return list(range(a, b))

    def second(a: int, b: int) -> list[int]:
        return list(range(100 + a, 100 + b))

    try:
        collect_first = lanes.submit(first, 8, CpuPlan(lanes=2))
        collect_second = lanes.submit(second, 8, CpuPlan(lanes=2))
        assert [i for part in collect_second() for i in part] == list(range(100, 108))
        release.set()
        assert [i for part in collect_first() for i in part] == list(range(8))
    finally:
        release.set()
        lanes.close()


def test_lanes_raise_a_chunks_error():
    lanes = Lanes()

    def chunk(a: int, b: int) -> int:
        if a > 0:
            raise ValueError(f"bad chunk at {a}")
        return a

    try:
        with pytest.raises(ValueError, match="bad chunk"):
            lanes.submit(chunk, 8, CpuPlan(lanes=2))()
        collect = lanes.submit(lambda a, b: chunk(a + 1, b), 4, ONE)  # run here, now: raised when collected
        with pytest.raises(ValueError, match="bad chunk at 1"):
            collect()
    finally:
        lanes.close()


def test_idle_cores_reads_a_plausible_value():
    from kvasir_ml.cpu_threads import IdleCores

    import os

    idle = IdleCores()
    sum(i * i for i in range(200_000))  # some CPU time between the reads
    assert 0.0 <= idle() <= (os.cpu_count() or 1)
