"""The C heap: freed memory kept for reuse on glibc."""

import platform

import torch

from utils.memory import retain_freed_memory


def test_retain_freed_memory_on_glibc():
    kept = retain_freed_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert kept
    assert torch.ones(2**23).sum() == 2**23  # 32 MB: now served from the heap, and still correct

