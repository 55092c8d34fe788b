"""The C heap (glibc malloc) and memory between runs: freed memory kept for reuse within a training, and given back
between trainings (a long evolution or sweep must not grow with each run it makes)."""

import ctypes
import gc
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt() parameters (malloc.h)


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


def trim_heap():
    """Give freed heap pages back to the OS (glibc malloc_trim), e.g. so that memory reused later shows as RSS growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        pass


def freeze_loaded_objects():
    """Exempt every object alive now from the cyclic garbage collector, for the rest of the process (gc.freeze).

    For a loop of trainings, called once after the first has been released: the modules and caches loaded by then
    (torch alone is about 240k objects) would be walked again by every full collection (release_memory() after each
    training), 0.1-0.2 s each time. Frozen objects are still freed by reference counting, but not as part of a cycle:
    freeze what lives as long as the loop, right after a collection, and thaw_objects() after the loop.
    """
    gc.freeze()


def thaw_objects():
    """Undo freeze_loaded_objects(): every object is the cyclic garbage collector's again (gc.unfreeze)."""
    gc.unfreeze()


def release_memory():
    """Give back what a finished training held: Python garbage, cached CUDA blocks, freed heap pages (glibc)."""
    gc.collect()
    torch = sys.modules.get("torch")  # only when torch is loaded already: this module imports nothing heavy
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()
