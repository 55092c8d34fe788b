"""The precision helper: the bf16 probe, autocast contexts, GradScaler use and memory format per device."""

import pytest
import torch
from torch import nn

from utils import precision as precision_module
from utils.precision import Precision, cpu_bf16_support, select_precision


def test_no_amp_is_fp32():
    p = select_precision("cpu", amp=False)
    assert p.dtype is None and p.name == "fp32" and not p.enabled
    assert not p.grad_scaler().is_enabled()
    with p.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cpu_amp_follows_the_probe():
    supported, reason = cpu_bf16_support()
    assert isinstance(reason, str) and reason
    p = select_precision("cpu", amp=True)
    assert p.dtype == (torch.bfloat16 if supported else None)
    assert not p.grad_scaler().is_enabled()  # bf16 needs no loss scaling


@pytest.mark.skipif(not cpu_bf16_support()[0], reason="this CPU has no native bf16")
def test_bf16_autocast_forward_and_fp32_weights():
    p = select_precision("cpu")
    model = p.model(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU()))
    x = p.batch(torch.randn(2, 3, 16, 16))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with p.autocast():
        y = model(x)
    assert y.dtype == torch.bfloat16
    assert all(q.dtype == torch.float32 for q in model.parameters())
    assert p.fp32().dtype is None and p.fp32().channels_last


def test_unsupported_cpu_falls_back_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_bf16_support", lambda: (False, "a test CPU"))
    precision_module._warn_once.cache_clear()
    caplog.set_level("WARNING", logger="yolov5")
    precision_module.LOGGER.propagate = True
    try:
        assert select_precision("cpu").dtype is None
        select_precision("cpu")
    finally:
        precision_module.LOGGER.propagate = False
    assert sum("a test CPU" in r.message for r in caplog.records) == 1


def test_cuda_precision_is_fp16_with_scaler():
    p = select_precision(torch.device("cuda", 0)) if torch.cuda.is_available() else Precision("cuda", torch.float16, True)
    assert p.dtype == torch.float16 and p.name == "fp16 AMP" and p.channels_last
    if torch.cuda.is_available():
        assert p.grad_scaler().is_enabled()


def test_channels_last_default_per_device():
    assert select_precision("cpu", amp=False).channels_last
    assert not select_precision("mps", amp=False).channels_last
    assert not select_precision("cpu", amp=False, channels_last=False).channels_last
