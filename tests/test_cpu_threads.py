"""ThreadTuner: picks the thread count whose batches were fastest, and re-probes the others."""

import torch

from kvasir_ml.cpu_threads import ThreadTuner


def _feed(tuner: ThreadTuner, cost_s_per_image: dict[int, float], n_batches: int) -> None:
    for _ in range(n_batches):
        threads = tuner.next_threads()
        tuner.record(threads, cost_s_per_image[threads] * 8, 8)


def test_tuner_probes_each_candidate_then_keeps_the_fastest():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=10)
    _feed(tuner, {2: 0.09, 1: 0.03}, 4)
    assert tuner.history == [2, 1, 2, 1]
    _feed(tuner, {2: 0.09, 1: 0.03}, 9)
    assert tuner.history[4:] == [1] * 9 and tuner.best == 1


def test_tuner_follows_a_change_of_load_at_the_next_probe():
    tuner = ThreadTuner("cpu", candidates=[2, 1], reprobe_every=5)
    _feed(tuner, {2: 0.09, 1: 0.03}, 4 + 5)  # the machine was busy: 1 thread won
    _feed(tuner, {2: 0.01, 1: 0.03}, 3)  # now idle: the probe of 2 threads finds it faster
    assert tuner.history[9] == 2 and tuner.best == 2 and tuner.history[-1] == 2


def test_batch_sets_and_restores_threads_and_is_inert_off_cpu():
    before = torch.get_num_threads()
    tuner = ThreadTuner("cpu", candidates=[before + 1, 1])
    with tuner.batch(4):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before and tuner.history == [before + 1]
    off = ThreadTuner("meta", candidates=[3, 1])
    with off.batch(4):
        assert torch.get_num_threads() == before
    assert off.history == []
