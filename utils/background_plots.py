"""Figures drawn off the critical path: one background thread draws them in the order they are submitted while the
caller goes on (inference, matching, metrics), as YOLOv5 draws its val_batch mosaics on threads.

Drawing (matplotlib's Agg renderer, OpenCV, PNG and JPEG encoding) spends much of its time outside the GIL, and
torch's kernels release it too, so the two overlap on a machine with a spare core. One thread, not several: the
figures then never share matplotlib's font cache between threads, and they are written in a fixed order.

The figures that wait for the last batch (confusion matrix, curves) have nothing left to overlap with, and
matplotlib mostly holds the GIL, so a second thread would not help: submit_forked() draws one in a forked child
process instead, on another core (Linux; elsewhere it joins the thread's queue).
"""

import multiprocessing
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

from utils.log import LOGGER

CAN_FORK = sys.platform.startswith("linux")  # macOS can fork, but its system libraries are not fork-safe


def _draw_in_child(sender, fn, args, kwargs):
    """The forked child's work: draw, then send None, or the error (its text if it cannot be pickled), to the parent."""
    try:
        fn(*args, **kwargs)
        sender.send(None)
    except BaseException as e:  # the parent raises it; the child must still report and exit
        try:
            sender.send(e)
        except Exception:
            sender.send(f"{type(e).__name__}: {e}")
    finally:
        sender.close()


class _ForkedDrawing:
    """One drawing in a forked child process; exception() waits for it, like a Future's."""

    def __init__(self, fn, args, kwargs):
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._name = getattr(fn, "__name__", "drawing")
        self._process = context.Process(target=_draw_in_child, args=(sender, fn, args, kwargs), daemon=True)
        self._process.start()
        sender.close()  # the child holds the only write end: a child that dies gives EOF, not a hang

    def exception(self):
        try:
            error = self._receiver.recv()
        except EOFError:
            error = "its process ended without a result"
        self._process.join()
        self._receiver.close()
        if error is None and self._process.exitcode:
            error = f"its process exited with code {self._process.exitcode}"
        if error is None or isinstance(error, BaseException):
            return error
        return RuntimeError(f"{self._name} failed in a child process: {error}")


class BackgroundPlots:
    """A context manager: `submit(fn, *args)` queues a drawing; leaving the block waits until every queued drawing is
    written, and re-raises the first drawing error (logged instead when the block itself raised).

    enabled=False draws nothing and starts no thread: submit() then drops the call (for plots=False runs).
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="plots") if enabled else None
        self._pending = []

    def submit(self, fn, *args, **kwargs):
        if self.enabled:
            self._pending.append(self._executor.submit(fn, *args, **kwargs))

    def submit_forked(self, fn, *args, **kwargs):
        """Like submit(), but drawn in a forked child process, beside the thread's queue, where fork is safe.

        The child starts once the thread's earlier drawings are done, so that it copies no half-drawn figure state;
        its arguments are the caller's objects as they are now (the child gets a copy of the process)."""
        if not self.enabled:
            return
        if not CAN_FORK:
            self.submit(fn, *args, **kwargs)
            return
        wait_for([p for p in self._pending if isinstance(p, Future)])  # the thread's; earlier forks draw apart
        try:
            self._pending.append(_ForkedDrawing(fn, args, kwargs))
        except OSError as e:  # no process to be had (memory, process limits): draw on the thread instead
            LOGGER.debug(f"forking a drawing failed ({e}): drawing it on the plotting thread")
            self.submit(fn, *args, **kwargs)

    def wait(self):
        """Block until every submitted drawing is done; raise the first error one of them raised."""
        pending, self._pending = self._pending, []
        errors = [e for e in (future.exception() for future in pending) if e is not None]
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            self.wait()
        except Exception as e:
            if exc_type is None:
                raise
            LOGGER.warning(f"WARNING ⚠️ plotting failed too: {e}")  # the block's own error is the one raised
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
