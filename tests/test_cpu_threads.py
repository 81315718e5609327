"""ThreadTuner: picks the thread count whose batches were fastest, probes others only when
their extra cores are idle, and re-probes as the load changes."""

import torch

from kvasir_ml.cpu_threads import ThreadTuner


def _feed(tuner: ThreadTuner, cost_s_per_image: dict[int, float], n_batches: int) -> None:
    for _ in range(n_batches):
        threads = tuner.next_threads()
        tuner.record(threads, cost_s_per_image[threads] * 8, 8)


def test_idle_machine_probes_more_threads_and_keeps_the_fastest():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=10, idle_cores=lambda: 1.0)
    _feed(tuner, {2: 0.01, 1: 0.03}, 8)
    assert tuner.history[:3] == [2, 2, 1]  # warm-up and timed at the idle cores' count, probe
    assert tuner.history[3:] == [2] * 5 and tuner.best == 2


def test_busy_machine_never_probes_more_threads():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=3, idle_cores=lambda: 0.0)
    _feed(tuner, {2: 0.09, 1: 0.03}, 12)
    assert tuner.history == [1] * 12


def test_busy_start_warms_up_at_one_thread_then_probes_when_cores_idle():
    readings = iter([0.0] + [1.0] * 20)  # busy when the first batch starts, idle after it
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=10, idle_cores=lambda: next(readings))
    _feed(tuner, {2: 0.01, 1: 0.03}, 6)
    assert tuner.history == [1, 1, 2, 2, 2, 2]


def test_tuner_follows_a_change_of_load_at_the_next_probe():
    idle = [1.0]
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=4, idle_cores=lambda: idle[0])
    cost = {2: 0.01, 1: 0.03}
    _feed(tuner, cost, 3 + 4)  # idle: 2 threads won
    cost[2], idle[0] = 0.09, 0.0  # the machine got busy: 2 threads stall
    _feed(tuner, cost, 6)
    assert tuner.best == 1 and tuner.history[-1] == 1


def test_batch_sets_and_restores_threads_and_is_inert_off_cpu():
    before = torch.get_num_threads()
    tuner = ThreadTuner("cpu", candidates=[before + 1, 1], idle_cores=lambda: float(before))
    for expected in (before + 1, before + 1, 1):
        with tuner.batch(4):
            assert torch.get_num_threads() == expected
        assert torch.get_num_threads() == before
    off = ThreadTuner("meta", candidates=[3, 1])
    with off.batch(4):
        assert torch.get_num_threads() == before
    assert off.history == []


def test_idle_cores_reads_a_plausible_value():
    from kvasir_ml.cpu_threads import IdleCores

    import os

    idle = IdleCores()
    sum(i * i for i in range(200_000))  # some CPU time between the reads
    assert 0.0 <= idle() <= (os.cpu_count() or 1)
