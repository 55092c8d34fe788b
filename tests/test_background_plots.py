"""BackgroundPlots: drawings run off the caller's thread, in order, all done when the block ends; errors surface."""

import threading
import time

import pytest

from utils.background_plots import BackgroundPlots


def test_drawings_run_in_order_on_another_thread_and_are_done_at_exit():
    done, threads = [], set()

    def draw(name, delay=0.0):
        time.sleep(delay)
        threads.add(threading.current_thread().name)
        done.append(name)

    with BackgroundPlots() as drawer:
        drawer.submit(draw, "slow", delay=0.2)
        drawer.submit(draw, "fast")
        assert done == []  # the caller went on while the first drawing still ran
    assert done == ["slow", "fast"]
    assert len(threads) == 1 and threading.main_thread().name not in threads


def test_disabled_draws_nothing():
    calls = []
    with BackgroundPlots(enabled=False) as drawer:
        drawer.submit(calls.append, 1)
    assert calls == []


def test_a_drawing_error_is_raised_at_exit():
    with pytest.raises(ZeroDivisionError):
        with BackgroundPlots() as drawer:
            drawer.submit(lambda: 1 / 0)


def test_the_blocks_own_error_wins_and_the_drawing_error_is_logged(log_lines):
    with pytest.raises(KeyError):
        with BackgroundPlots() as drawer:
            drawer.submit(lambda: 1 / 0)
            raise KeyError("validation failed")
    assert any("plotting failed too: division by zero" in line for line in log_lines)
