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


def test_unsupported_cpu_falls_back_with_one_warning(monkeypatch, log_records):
    monkeypatch.setattr(precision_module, "cpu_bf16_support", lambda: (False, "a test CPU"))
    precision_module._warn_once.cache_clear()
    assert select_precision("cpu").dtype is None
    select_precision("cpu")
    assert sum("a test CPU" in r.getMessage() for r in log_records) == 1


def test_cuda_precision_is_fp16_with_scaler():
    p = select_precision(torch.device("cuda", 0)) if torch.cuda.is_available() else Precision("cuda", torch.float16, True)
    assert p.dtype == torch.float16 and p.name == "fp16 AMP" and p.channels_last
    if torch.cuda.is_available():
        assert p.grad_scaler().is_enabled()


def test_channels_last_default_per_device():
    assert select_precision("cpu", amp=False).channels_last
    assert not select_precision("mps", amp=False).channels_last
    assert not select_precision("cpu", amp=False, channels_last=False).channels_last


def test_threads_are_managed_on_the_cpu_only(restore_threads):
    cpu = select_precision("cpu")
    assert cpu.tune_cpu and cpu.fp32().tune_cpu
    assert not Precision("cuda", torch.float16, True).tune_cpu
    torch.set_num_threads(2)
    with cpu.small_ops():
        assert torch.get_num_threads() == 1
    with Precision("cpu").small_ops():  # the plain path leaves torch's threads alone
        assert torch.get_num_threads() == 2


class TwoOutputs(nn.Module):
    """Conv + BN (eval) returning YOLO's eval structure: (a tensor, [tensors per level]), and the dtypes it saw."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.seen = []

    def forward(self, x):
        y = self.bn(self.conv(x))
        self.seen.append((len(x), y.dtype, torch.is_inference_mode_enabled()))
        return y.flatten(1).float(), [y.float(), y[:, :2].float()]


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_infer_in_chunks_matches_one_forward(restore_threads, dtype):
    if dtype is torch.bfloat16 and not cpu_bf16_support()[0]:
        pytest.skip("this CPU has no native bf16")
    torch.manual_seed(0)
    model = TwoOutputs().eval()
    p = Precision("cpu", dtype, True, tune_cpu=True)
    x = p.batch(torch.rand(5, 3, 8, 8))
    torch.set_num_threads(2)
    with torch.inference_mode():
        chunked = p.infer(model, x)
        with p.autocast():
            whole = model(x)
    assert sorted(s[0] for s in model.seen[:2]) == [2, 3]  # two chunks, in parallel threads
    assert all(s[1] == (dtype or torch.float32) and s[2] for s in model.seen)  # autocast and inference mode there too
    torch.testing.assert_close(chunked[0], whole[0])
    assert isinstance(chunked[1], list) and len(chunked[1]) == 2
    for a, b in zip(chunked[1], whole[1]):
        torch.testing.assert_close(a, b)
    assert torch.get_num_threads() == 2


def test_infer_runs_whole_batch_without_managed_threads(restore_threads):
    model = TwoOutputs().eval()
    torch.set_num_threads(2)
    with torch.no_grad():
        Precision("cpu").infer(model, torch.rand(4, 3, 8, 8))
        select_precision("cpu", amp=False).infer(model, torch.rand(1, 3, 8, 8))  # one image: nothing to split
    assert [s[0] for s in model.seen] == [4, 1]


