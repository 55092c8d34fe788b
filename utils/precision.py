"""Mixed precision and memory format for a device, shared by train, val and detect.

CUDA: fp16 autocast + GradScaler (YOLOv5's AMP). CPU: bf16 autocast where the CPU runs bf16 natively (AVX512-BF16
or AMX), found once by a small probe; elsewhere fp32 with a warning. Weights stay fp32 and the loss is computed in
fp32. channels_last (NHWC) is used on CPU and CUDA, where oneDNN / cuDNN convolutions are faster in it. On the CPU a
Precision also says whether the runtime is tuned: threads (utils/cpu_threads.py) and the heap (utils/memory.py).
"""

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.cpu_threads import STARTUP_THREADS, run_in_chunks, single_threaded
from utils.log import LOGGER, colorstr

PREFIX = colorstr("precision: ")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
        chunk per core (or per thread, if more were set), in parallel threads (cpu_threads.run_in_chunks). For
        inference only."""
        threads = max(torch.get_num_threads(), STARTUP_THREADS)
        chunks = min(threads, len(images)) if self.tune_cpu else 1
        if chunks < 2:
            with self.autocast():
                return model(images, **kwargs)
        return run_in_chunks(lambda chunk: model(chunk, **kwargs), images, chunks, self.autocast)

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


@functools.cache
def _warn_once(message):
    LOGGER.warning(message)
