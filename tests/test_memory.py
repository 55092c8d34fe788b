"""The C heap: freed memory kept for reuse on glibc."""

import gc
import platform

import torch

from utils.memory import freeze_loaded_objects, retain_freed_memory, thaw_objects


def test_retain_freed_memory_on_glibc():
    kept = retain_freed_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert kept
    assert torch.ones(2**23).sum() == 2**23  # 32 MB: now served from the heap, and still correct



def test_freeze_loaded_objects_exempts_what_is_alive_from_collections():
    gc.collect()
    kept = [object() for _ in range(1000)]
    try:
        freeze_loaded_objects()
        assert gc.get_freeze_count() >= len(kept)
        garbage = []
        garbage.append(garbage)  # a cycle made after the freeze is still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        thaw_objects()
    assert gc.get_freeze_count() == 0
