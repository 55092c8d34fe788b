"""Give memory back between trainings: a long evolution or sweep must not grow with each run it makes."""

import contextlib
import ctypes
import gc
import sys


def release_memory():
    """Give back what a finished training held: Python garbage, cached CUDA blocks, freed heap pages (glibc)."""
    gc.collect()
    torch = sys.modules.get("torch")  # only when torch is loaded already: this module imports nothing heavy
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
