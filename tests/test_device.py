"""select_device parsing and errors; distributed rank helpers outside DDP."""

import pytest
import torch

from utils import distributed
from utils.device import select_device, smart_inference_mode


@pytest.mark.parametrize("arg", ["cpu", "CPU", " cpu "])
def test_cpu(arg):
    assert select_device(arg) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
def test_default_and_errors_without_cuda(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert select_device("") == torch.device("cpu")
    assert select_device("mps").type in ("cpu", "mps")
    with pytest.raises(ValueError, match="--device cpu"):
        select_device("0")
    with pytest.raises(ValueError, match="CUDA indices"):
        select_device("gpu")


def test_smart_inference_mode():
    @smart_inference_mode()
    def f(x):
        return x * 2

    assert torch.is_inference(f(torch.ones(1, requires_grad=True)))


def test_single_process_is_main():
    assert distributed.is_main() and not distributed.is_distributed()
    with distributed.torch_distributed_zero_first(-1):
        pass
    distributed.teardown_distributed()  # nothing joined: a no-op
