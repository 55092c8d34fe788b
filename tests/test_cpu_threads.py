"""CPU threads: one thread for tiny ops, the ThreadTuner's choice of thread count under a changing load."""

import pytest
import torch

from utils.cpu_threads import ThreadTuner, single_threaded


def test_single_threaded_sets_one_thread_and_restores(restore_threads):
    torch.set_num_threads(2)
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), single_threaded():
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == 2


def _feed(tuner, seconds_per_thread_count, steps):
    """Run `steps` fake steps whose duration depends on the thread count torch has at the time."""
    now = 0.0
    tuner.restart()
    tuner.step(now)
    for _ in range(steps):
        now += seconds_per_thread_count[torch.get_num_threads()]
        tuner.step(now)


@pytest.mark.parametrize("times, best", [({2: 1.0, 1: 3.0}, 2), ({2: 3.0, 1: 1.0}, 1)])
def test_thread_tuner_keeps_the_faster_count(restore_threads, times, best):
    tuner = ThreadTuner(max_threads=2, window=3, period=10)
    assert tuner.ladder == [2, 1] and torch.get_num_threads() == 2
    _feed(tuner, times, 2)
    assert not tuner.trials and tuner.current == 2  # no round before `window` measured steps
    _feed(tuner, times, 1 + 1 + 3)  # the 3rd step at 2 threads, then 1 planning + 3 measured steps at 1 thread
    assert tuner.current == best and torch.get_num_threads() == best


def test_thread_tuner_follows_a_change_of_load(restore_threads):
    tuner = ThreadTuner(max_threads=2, window=3, period=1000)
    _feed(tuner, {2: 1.0, 1: 1.8}, 20)  # idle machine: 2 threads
    assert tuner.current == 2
    _feed(tuner, {2: 4.0, 1: 2.0}, 10)  # another job arrives: 2 threads stall; the slowdown starts a round at once
    assert tuner.current == 1 and torch.get_num_threads() == 1
    _feed(tuner, {2: 0.8, 1: 1.2}, 10)  # it leaves: the speed-up of 1 thread starts a round too
    assert tuner.current == 2
    torch.set_num_threads(1)
    tuner.restart()  # something between epochs changed the count: restart sets it back
    assert torch.get_num_threads() == 2


def test_thread_tuner_ladder_and_single_thread(restore_threads):
    assert ThreadTuner(max_threads=8).ladder == [8, 4, 2, 1]
    tuner = ThreadTuner(max_threads=1)
    _feed(tuner, {1: 1.0}, 10)
    assert tuner.ladder == [1] and tuner.current == 1 and not tuner.trials
