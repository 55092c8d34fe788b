"""utils/autobatch.py: 16 on CPUs with YOLOv5's notice; on CUDA a line fitted to the profiled memory (faked here)."""

from types import SimpleNamespace

import pytest
import torch

import utils.autobatch as autobatch_module
from models.yolo import DetectionModel
from utils.autobatch import TRIAL_BATCH_SIZES, autobatch, check_train_batch_size, fit_batch_size

GIB = 1 << 30


@pytest.fixture
def messages(log_records):
    return lambda: [r.getMessage() for r in log_records]


def test_cpu_model_gets_16_with_the_notice(messages):
    model = DetectionModel("yolov5n.yaml", verbose=False)
    assert check_train_batch_size(model, imgsz=64) == 16
    assert any("CUDA not detected, using default CPU batch-size 16" in m for m in messages())
    assert model.training  # the caller's model is untouched: a copy is profiled


class FakeCudaModel:
    """Just what autobatch reads from a model before profiling: its device."""

    def parameters(self):
        yield SimpleNamespace(device=torch.device("cuda", 0))


@pytest.fixture
def fake_cuda(monkeypatch):
    """A 16 GiB 'Fake GPU' with 1 GiB reserved and 0.5 GiB allocated; set_profile(f) fakes memory (GB) per batch."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=16 * GIB,
                                                                                        name="Fake GPU"))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: 1 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: GIB // 2)

    def set_profile(memory_gb):
        def fake_profile(images, model, n, device):
            assert [im.shape[0] for im in images] == list(TRIAL_BATCH_SIZES) and n == 3 and device.type == "cuda"
            return [None if memory_gb(im.shape[0]) is None else [0, 0, memory_gb(im.shape[0]), 0, 0, (), ()]
                    for im in images]
        monkeypatch.setattr(autobatch_module, "profile", fake_profile)

    return set_profile


def test_cuda_fit_uses_80_percent_of_free_memory(fake_cuda, messages):
    """Free 16 - 1 - 0.5 = 14.5 GiB; 80% = 11.6; memory 0.5 + 0.25 b GB reaches it at b = 44.4 -> 44, predicted
    (0.5 + 11 + 1.5) / 16 = 81%."""
    fake_cuda(lambda b: 0.5 + 0.25 * b)
    assert autobatch(FakeCudaModel(), imgsz=64) == 44
    log = messages()
    assert "CUDA:0 (Fake GPU) 16.00G total, 1.00G reserved, 0.50G allocated, 14.50G free" in log[1]
    assert log[-1].endswith("Using batch-size 44 for CUDA:0 13.00G/16.00G (81%) ✅")


@pytest.mark.parametrize("memory, expected, warns", [
    (lambda b: 0.5 + 0.25 * b if b < 16 else None, 8, False),  # 16 failed (out of memory): the last size that ran
    (lambda b: 0.5 + 0.001 * b, 16, True),  # fit says 11100: outside 1-1024, an anomaly -> default
    (lambda b: 20 + 0.25 * b, 16, True),  # the model alone exceeds the budget: b < 1 -> default
])
def test_cuda_fit_guards(fake_cuda, messages, memory, expected, warns):
    fake_cuda(memory)
    assert autobatch(FakeCudaModel(), imgsz=64) == expected
    assert any("CUDA anomaly detected" in m for m in messages()) == warns


def test_cudnn_benchmark_keeps_the_default(fake_cuda, monkeypatch, messages):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    assert autobatch(FakeCudaModel(), batch_size=12) == 12
    assert any("Requires torch.backends.cudnn.benchmark=False" in m for m in messages())


def test_profiling_error_keeps_the_default(fake_cuda, monkeypatch, messages):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(autobatch_module, "profile", broken)
    assert autobatch(FakeCudaModel()) == 16
    assert any("out of memory" in m for m in messages())


def test_fit_batch_size_is_the_line_crossing_the_budget():
    b, line = fit_batch_size([[0, 0, 1.0 + 0.5 * s, 0, 0, (), ()] for s in TRIAL_BATCH_SIZES], 10.2, 16)
    assert b == 18 and line == pytest.approx([0.5, 1.0])  # (10.2 - 1) / 0.5 = 18.4, truncated as YOLOv5 does
