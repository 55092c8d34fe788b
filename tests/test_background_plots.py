"""BackgroundPlots: drawings run off the caller's thread, in order, all done when the block ends; errors surface."""

import multiprocessing
import os
import threading
import time

import pytest

from utils.background_plots import CAN_FORK, BackgroundPlots


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


@pytest.mark.skipif(not CAN_FORK, reason="forked drawing is Linux-only")
def test_a_forked_drawing_runs_in_another_process_beside_the_thread(tmp_path):
    def draw(name, delay=0.0):
        time.sleep(delay)
        (tmp_path / name).write_text(str(os.getpid()))

    start = time.perf_counter()
    with BackgroundPlots() as drawer:
        drawer.submit_forked(draw, "forked", delay=0.5)
        drawer.submit(draw, "threaded", delay=0.5)
        assert not (tmp_path / "forked").exists()  # the caller went on
    assert time.perf_counter() - start < 0.95  # the two drawings overlapped
    assert int((tmp_path / "forked").read_text()) != os.getpid()
    assert int((tmp_path / "threaded").read_text()) == os.getpid()


@pytest.mark.skipif(not CAN_FORK, reason="forked drawing is Linux-only")
def test_a_forked_drawing_starts_after_the_threads_earlier_drawings(tmp_path):
    order = tmp_path / "order"

    def draw(name, delay=0.0):
        time.sleep(delay)
        with open(order, "a") as f:
            f.write(name + " ")

    with BackgroundPlots() as drawer:
        drawer.submit(draw, "mosaic", delay=0.3)
        drawer.submit_forked(draw, "matrix")
    assert order.read_text().split() == ["mosaic", "matrix"]


@pytest.mark.skipif(not CAN_FORK, reason="forked drawing is Linux-only")
@pytest.mark.parametrize("fail, error, message", [(lambda: 1 / 0, ZeroDivisionError, "division by zero"),
                                                  (lambda: os._exit(3), RuntimeError, "ended without a result")])
def test_a_forked_drawing_error_is_raised_at_exit(fail, error, message):
    with pytest.raises(error, match=message):
        with BackgroundPlots() as drawer:
            drawer.submit_forked(fail)


@pytest.mark.skipif(not CAN_FORK, reason="forked drawing is Linux-only")
def test_two_forked_drawings_in_one_block(tmp_path):
    with BackgroundPlots() as drawer:
        drawer.submit_forked((tmp_path / "first").write_text, "drawn")
        drawer.submit_forked((tmp_path / "second").write_text, "drawn")
    assert (tmp_path / "first").read_text() == (tmp_path / "second").read_text() == "drawn"


@pytest.mark.skipif(not CAN_FORK, reason="forked drawing is Linux-only")
def test_a_drawing_that_cannot_fork_is_drawn_on_the_thread(tmp_path, monkeypatch):
    def no_fork(self):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(multiprocessing.get_context("fork").Process, "start", no_fork)
    with BackgroundPlots() as drawer:
        drawer.submit_forked(lambda: (tmp_path / "drawn").write_text(str(os.getpid())))
    assert int((tmp_path / "drawn").read_text()) == os.getpid()


def test_forked_drawing_disabled_draws_nothing(tmp_path):
    with BackgroundPlots(enabled=False) as drawer:
        drawer.submit_forked((tmp_path / "x").write_text, "drawn")
    assert not (tmp_path / "x").exists()
