"""Figures drawn off the critical path: one background thread draws them in the order they are submitted while the
caller goes on (inference, matching, metrics), as YOLOv5 draws its val_batch mosaics on threads.

Drawing (matplotlib's Agg renderer, OpenCV, PNG and JPEG encoding) spends much of its time outside the GIL, and
torch's kernels release it too, so the two overlap on a machine with a spare core. One thread, not several: the
figures then never share matplotlib's font cache between threads, and they are written in a fixed order.
"""

from concurrent.futures import ThreadPoolExecutor

from utils.log import LOGGER


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
