"""Timing and cost measurement: the `Profile` stopwatch and `profile()` for comparing ops (params, GFLOPs, ms, memory)."""

import contextlib
import copy
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from utils.flops import forward_flops
from utils.log import LOGGER
from utils.memory import trim_heap

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class Profile(contextlib.ContextDecorator):
    """Stopwatch usable as `with dt:`; `dt.dt` is the last interval, `dt.t` the running total, both in seconds.

    On CUDA it synchronises before reading the clock, so the time covers the queued kernels.
    """

    def __init__(self, t=0.0, device=None):
        self.t = t
        self.dt = 0.0
        self.cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")

    def __enter__(self):
        self.start = self.time()
        return self

    def __exit__(self, *exc):
        self.dt = self.time() - self.start
        self.t += self.dt

    def time(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def time_sync(device=None):
    """Wall-clock seconds after all queued CUDA work has finished (YOLOv5's time_sync)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _resolve_device(device):
    """None -> first GPU if any else CPU; 0 / '0' -> cuda:0; 'cpu' / torch.device pass through."""
    if device is None or device == "":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        return torch.device(f"cuda:{device}")
    return torch.device(device)


def _proc_kib(field):
    """A VmRSS/VmHWM-style field of /proc/self/status in KiB, or None where /proc is unavailable."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class _PeakMemory:
    """Peak memory of the code inside `with`, in GB.

    CUDA: peak allocated bytes on the device (model and input included, as YOLOv5's GPU_mem).
    CPU: growth of the process's peak RSS over its RSS at entry. On Linux the peak is reset at entry through
    /proc/self/clear_refs; elsewhere the lifetime maximum RSS is used, so only new peaks register.
    """

    def __init__(self, device):
        self.device = device
        self.gb = float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        trim_heap()
        self.rss_kib = _proc_kib("VmRSS")
        self.peak_reset = False
        if self.rss_kib is not None:
            try:
                _PROC_CLEAR_REFS.write_text("5")  # "5" resets VmHWM (peak RSS) to the current RSS
                self.peak_reset = True
            except OSError:
                pass
        self.maxrss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.gb = torch.cuda.max_memory_allocated(self.device) / 1e9
            return
        if self.peak_reset:
            self.gb = max(_proc_kib("VmHWM") - self.rss_kib, 0) * 1024 / 1e9
        else:
            unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
            self.gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.maxrss_start) * unit / 1e9


def _gflops(op, x):
    """Forward GFLOPs of op(x) (utils.flops), on a copy so BN statistics stay untouched."""
    return forward_flops(copy.deepcopy(op) if isinstance(op, nn.Module) else op, x) / 1e9


def _tensors(y):
    """Every tensor in an output that may nest lists/tuples, e.g. Detect's (boxes, [maps]) in eval mode."""
    if isinstance(y, torch.Tensor):
        yield y
    elif isinstance(y, (list, tuple)):
        for item in y:
            yield from _tensors(item)


def _backward(y):
    """Backpropagate the sum of y's differentiable tensors; False when there is nothing to differentiate."""
    grads = [t.float().sum() for t in _tensors(y) if t.requires_grad]
    if not grads:
        return False
    sum(grads).backward()
    return True


def _shape(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else "list"


def profile(input, ops, n=10, device=None):
    """Profile each op on each input: params, GFLOPs, peak memory (GB), forward and backward ms, shapes.

    `input` is a tensor or a list of tensors; `ops` a module/callable or a list of them. Prints a table and
    returns one row per (input, op), inputs outermost: [params, gflops, mem_gb, forward_ms, backward_ms,
    input_shape, output_shape], or None for an op that raised (its error is printed).
    Example: profile(torch.randn(16, 3, 64, 64), [nn.SiLU(), lambda x: x * torch.sigmoid(x)], n=20)
    """
    device = _resolve_device(device)
    inputs = input if isinstance(input, list) else [input]
    ops = ops if isinstance(ops, list) else [ops]
    LOGGER.info(f"{'Params':>12s}{'GFLOPs':>12s}{'mem (GB)':>12s}{'forward (ms)':>14s}{'backward (ms)':>14s}"
                f"{'input':>24s}{'output':>24s}")
    results = []
    for x in inputs:
        x = x.to(device).detach()  # a new leaf, so the caller's tensor is not marked requires_grad
        if x.is_floating_point():
            x.requires_grad_(True)
        for op in ops:
            if isinstance(op, nn.Module):
                op = op.to(device)
                op = op.half() if x.dtype is torch.float16 else op
            try:
                row = _profile_one(op, x, n, device)
                p, flops, mem, tf, tb, s_in, s_out = row
                LOGGER.info(f"{p:12}{flops:12.4g}{mem:12.3f}{tf:14.4g}{tb:14.4g}{str(s_in):>24s}{str(s_out):>24s}")
                results.append(row)
            except Exception as e:  # an op unsupported on this device/dtype must not stop the comparison
                LOGGER.info(f"{type(op).__name__}: {e}")
                results.append(None)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def _profile_one(op, x, n, device):
    """One table row for op on x, averaged over n forward+backward runs."""
    flops = _gflops(op, x)
    forward_ms = backward_ms = 0.0
    with _PeakMemory(device) as peak:
        for _ in range(n):
            t0 = time_sync(device)
            y = op(x)
            t1 = time_sync(device)
            t2 = time_sync(device) if _backward(y) else float("nan")  # nan: e.g. integer input, no parameters
            forward_ms += (t1 - t0) * 1000 / n
            backward_ms += (t2 - t1) * 1000 / n
    params = sum(p.numel() for p in op.parameters()) if isinstance(op, nn.Module) else 0
    return [params, flops, peak.gb, forward_ms, backward_ms, _shape(x), _shape(y)]


def layer_cost(layer, x, n=10):
    """(forward ms as the mean of n runs, GFLOPs) of one network layer on its input x, a tensor or a list of them.

    A list is copied for every run: Detect writes its outputs into the list it is given.
    """
    fresh = (lambda: list(x)) if isinstance(x, list) else (lambda: x)
    gflops = _gflops(layer, fresh())
    t0 = time_sync()
    for _ in range(n):
        layer(fresh())
    return (time_sync() - t0) * 1000 / n, gflops
