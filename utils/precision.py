"""Mixed precision, memory format and CPU threads for a device, shared by train, val and detect.

CUDA: fp16 autocast + GradScaler (YOLOv5's AMP). CPU: bf16 autocast where the CPU runs bf16 natively (AVX512-BF16
or AMX), found once by a small probe; elsewhere fp32 with a warning. Weights stay fp32 and the loss is computed in
fp32. channels_last (NHWC) is used on CPU and CUDA, where oneDNN / cuDNN convolutions are faster in it.

CPU threads: two or more OpenMP threads stall at every parallel region while one of them is descheduled. On a CPU
shared with other jobs, or with this run's own loader workers, that made a yolov5n training step 3-5x slower with
2 threads than with 1 (2 cores), and an SGD step plus EMA update 80x slower; on an idle CPU 2 threads are faster.
So the many tiny ops (optimizer, EMA, NMS, validation metrics) run on one thread, a ThreadTuner picks the training
step's thread count by timing it, and inference splits the batch instead: one chunk per core, each on one
intra-op thread in its own Python thread, so that no barrier ties the cores together (yolov5n, batch 32 at 640,
busy machine: 58 ms/image, against 105 with 2 OpenMP threads).

CPU memory: see retain_freed_memory().
"""

import contextlib
import ctypes
import functools
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.log import LOGGER, colorstr

PREFIX = colorstr("precision: ")
STARTUP_THREADS = torch.get_num_threads()  # before any tuning: what torch chose for this machine (or OMP_NUM_THREADS)
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt() parameters (malloc.h)


def _cpu_flags():
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_bf16_support():
    """(supported, reason): whether bf16 autocast on this CPU is native and numerically sound. Probed once."""
    if not torch.backends.mkldnn.is_available():
        return False, "torch was built without oneDNN"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, "oneDNN reports no bf16 support on this CPU"
    flags = _cpu_flags()
    if sys.platform.startswith("linux") and not flags & set(_NATIVE_BF16_FLAGS):
        return False, "the CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 would be emulated and slower"
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 16, 16, generator=generator)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    with torch.no_grad():
        reference = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
    if out.dtype != torch.bfloat16 or not torch.isfinite(out).all():
        return False, "the bf16 probe convolution gave no finite bf16 output"
    if not torch.allclose(out.float(), reference, rtol=0.05, atol=0.05):
        return False, "the bf16 probe convolution disagrees with fp32"
    return True, "native bf16"


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


@dataclass
class Precision:
    """How to run a model on one device: the autocast dtype (None = fp32), GradScaler use, memory format, and
    whether the CPU runtime is tuned (threads and allocator, see the module docstring)."""

    device_type: str = "cpu"
    dtype: torch.dtype = None
    channels_last: bool = False
    tune_cpu: bool = False

    @property
    def enabled(self):
        return self.dtype is not None

    @property
    def name(self):
        return {torch.float16: "fp16 AMP", torch.bfloat16: "bf16 autocast"}.get(self.dtype, "fp32")

    @property
    def input_dtype(self):
        """The dtype to normalise uint8 image batches into: autocast's (its first convolution would cast them to it
        anyway, so converting once saves a pass over the batch), else fp32."""
        return self.dtype or torch.float32

    def autocast(self):
        """Context for the forward pass; a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self):
        """GradScaler: active for fp16 on CUDA only (bf16 has fp32's range and needs no scaling)."""
        return torch.amp.GradScaler("cuda", enabled=self.device_type == "cuda" and self.dtype == torch.float16)

    def model(self, model):
        """The model in this precision's memory format (in place); weights stay fp32."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def batch(self, images):
        """A (bs, 3, h, w) image batch in this precision's memory format."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def infer(self, model, images, **kwargs):
        """model(images, **kwargs) under this precision's autocast. With the CPU tuned the batch runs as one
        chunk per core (or per thread, if more were set), in parallel Python threads of one intra-op thread each;
        the outputs are concatenated. Independent chunks cannot stall each other, so they use every core even when
        a ThreadTuner has set one thread for training. For inference only (BatchNorm in training mode would see
        each chunk's statistics)."""
        threads = max(torch.get_num_threads(), STARTUP_THREADS)
        chunks = min(threads, len(images)) if self.tune_cpu else 1
        if chunks < 2:
            with self.autocast():
                return model(images, **kwargs)
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def run(chunk):  # grad mode, inference mode, autocast and the thread count are per thread: set them here
            torch.set_num_threads(1)
            with torch.inference_mode(inference), torch.set_grad_enabled(grad), self.autocast():
                return model(chunk, **kwargs)

        return _concatenate(list(_thread_pool(chunks).map(run, images.chunk(chunks))))

    def small_ops(self):
        """Context for many tiny ops (optimizer, EMA, NMS, metrics): one CPU thread when the CPU is tuned."""
        return single_threaded() if self.tune_cpu else contextlib.nullcontext()

    def fp32(self):
        """The same device, memory format and threads without autocast (the fallback when autocast gives NaN)."""
        return Precision(self.device_type, None, self.channels_last, self.tune_cpu)


def select_precision(device, amp=True, channels_last=None):
    """The Precision for `device`: fp16 AMP on CUDA, bf16 autocast on native-bf16 CPUs, fp32 otherwise or if not amp.

    channels_last defaults to on for CPU and CUDA and off elsewhere (MPS). The CPU runtime is tuned on the CPU.
    """
    device_type = torch.device(device).type
    if channels_last is None:
        channels_last = device_type in ("cpu", "cuda")
    dtype = None
    if amp and device_type == "cuda":
        dtype = torch.float16
    elif amp and device_type == "cpu":
        supported, reason = cpu_bf16_support()
        if supported:
            dtype = torch.bfloat16
        else:
            _warn_once(f"{PREFIX}bf16 autocast unavailable ({reason}): running fp32")
    return Precision(device_type, dtype, channels_last, tune_cpu=device_type == "cpu")


def retain_freed_memory():
    """glibc malloc, for the rest of the process: serve large blocks from the heap and keep what is freed.

    Every step frees and allocates the same large activations again. By default glibc maps each block above its
    mmap threshold (at most 32 MB) afresh and unmaps it when freed, so every step pays the page faults of zeroing
    those pages anew (~100 ms for 270 MB here). Kept memory is reused without faults: yolov5n at 640 trained at
    24 images/s instead of 20 and inferred at 18.7 ms/image instead of 22.8, for 100-400 MB more peak RSS.
    Returns whether it took effect (False where the C library is not glibc).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


_pools = {}


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


@functools.cache
def _warn_once(message):
    LOGGER.warning(message)
