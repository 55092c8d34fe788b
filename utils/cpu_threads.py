"""CPU threads for training and inference: one thread for tiny ops, a tuned count for training steps, and
parallel chunks for inference.

Two or more OpenMP threads stall at every parallel region while one of them is descheduled. On a CPU
shared with other jobs, or with this run's own loader workers, that made a yolov5n training step 3-5x slower with
2 threads than with 1 (2 cores), and an SGD step plus EMA update 80x slower; on an idle CPU 2 threads are faster.
So the many tiny ops (optimizer, EMA, NMS, validation metrics) run on one thread, a ThreadTuner picks the training
step's thread count by timing it, and inference splits the batch instead: one chunk per core, each on one
intra-op thread in its own Python thread, so that no barrier ties the cores together (yolov5n, batch 32 at 640,
busy machine: 58 ms/image, against 105 with 2 OpenMP threads).
"""

import contextlib
import statistics
from concurrent.futures import ThreadPoolExecutor

import torch

STARTUP_THREADS = torch.get_num_threads()  # before any tuning: what torch chose for this machine (or OMP_NUM_THREADS)


@contextlib.contextmanager
def single_threaded():
    """Run the block on one intra-op CPU thread (a no-op when there is only one)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_pools = {}  # worker count: its ThreadPoolExecutor


def _thread_pool(workers):
    """A ThreadPoolExecutor of `workers` threads, made once and kept."""
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="infer")
    return _pools[workers]


def _concatenate(parts):
    """Outputs of the same model on consecutive chunks, joined along the batch: tensors, nested lists/tuples, None."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, (list, tuple)):
        return type(first)(_concatenate(list(x)) for x in zip(*parts))
    return first


def run_in_chunks(forward, images, chunks, context=contextlib.nullcontext):
    """forward(chunk) on `chunks` consecutive chunks of the batch, each in its own Python thread on one intra-op
    thread (inside context()), with this thread's grad and inference modes; the outputs joined along the batch.
    Independent chunks cannot stall each other, so they use every core even when a ThreadTuner has set one thread
    for training. For inference only (BatchNorm in training mode would see each chunk's statistics)."""
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(chunk):  # grad mode, inference mode, autocast and the thread count are per thread: set them here
        torch.set_num_threads(1)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad), context():
            return forward(chunk)

    return _concatenate(list(_thread_pool(chunks).map(run, images.chunk(chunks))))


class ThreadTuner:
    """Keeps the intra-op thread count at whichever count on the ladder max, max/2, ..., 1 runs steps fastest now,
    as the load of a shared CPU comes and goes.

    Call step() at the end of every training step (and restart() after a pause such as validation). The current
    count's latest `window` step times (seconds per unit of work) are kept. A round tries each neighbouring count
    on the ladder for one unmeasured step (a new count makes oneDNN plan its kernels anew) and `window` measured
    ones, and the count with the fastest median stays. Rounds run after the first `window` steps, whenever the
    current count's median drifts by more than `drift` (other jobs came or went), and every `period` steps.
    """

    def __init__(self, max_threads=None, window=3, period=200, drift=0.3):
        top = max_threads or max(torch.get_num_threads(), STARTUP_THREADS)  # a previous tuner may have left 1
        self.ladder = sorted({max(top >> k, 1) for k in range(top.bit_length())}, reverse=True)
        self.window, self.period, self.drift = window, period, drift
        self.reference = None  # the current count's median when it was chosen
        self.current = self.ladder[0]
        self.recent = []  # seconds per unit of work of the current count's latest steps
        self.trials = []  # counts still to try in this round, the one being tried first
        self.trial_times = {}
        self.steps_to_round = window
        self.last = None
        torch.set_num_threads(self.current)

    def restart(self):
        """Forget when the last step ended (the next step() only starts the clock) and set the count again, in case
        something between steps changed it."""
        self.last = None
        torch.set_num_threads(self.trials[0] if self.trials else self.current)

    def step(self, now, work=1.0):
        """Account the step that ended at `now` (time.perf_counter()) and did `work` (e.g. its pixels, which vary
        with --multi-scale), and set the thread count for the next one."""
        seconds, self.last = (None if self.last is None else (now - self.last) / work), now
        if seconds is None:
            return
        if self.trials:
            times = self.trial_times.setdefault(self.trials[0], [])
            times.append(seconds)
            if len(times) > self.window:  # one planning step, then `window` measured ones
                self.trials.pop(0)
                if self.trials:
                    torch.set_num_threads(self.trials[0])
                else:
                    self._choose()
            return
        self.recent = (self.recent + [seconds])[-self.window:]
        self.steps_to_round -= 1
        drifted = (self.reference is not None and len(self.recent) == self.window
                   and abs(statistics.median(self.recent) / self.reference - 1) > self.drift)
        if (self.steps_to_round <= 0 or drifted) and len(self.ladder) > 1:
            i = self.ladder.index(self.current)
            self.trials = [self.ladder[j] for j in (i - 1, i + 1) if 0 <= j < len(self.ladder)]
            self.trial_times = {}
            torch.set_num_threads(self.trials[0])

    def _choose(self):
        measured = {n: t[1:] for n, t in self.trial_times.items()}
        measured[self.current] = self.recent
        best = min(measured, key=lambda n: statistics.median(measured[n]))
        self.current, self.recent = best, measured[best]
        self.reference = statistics.median(self.recent)
        self.steps_to_round = self.period
        torch.set_num_threads(self.current)
