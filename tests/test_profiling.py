import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from utils.profiling import Profile, layer_cost, profile


def test_profile_two_ops_returns_figures_for_each():
    x = torch.randn(2, 3, 32, 32)
    rows = profile(x, [nn.SiLU(), lambda t: t * torch.sigmoid(t)], n=3, device="cpu")
    assert len(rows) == 2
    for params, gflops, mem, forward_ms, backward_ms, s_in, s_out in rows:
        assert params == 0
        assert gflops == 0  # elementwise ops count no matmul/conv FLOPs
        assert mem >= 0
        assert forward_ms > 0 and backward_ms > 0
        assert s_in == s_out == (2, 3, 32, 32)
    assert not x.requires_grad  # the caller's tensor is left as it was


@pytest.mark.parametrize("batch, c_in, c_out, k, size", [(1, 3, 8, 3, 16), (2, 4, 16, 1, 8)])
def test_profile_conv_params_and_gflops_hand_derived(batch, c_in, c_out, k, size):
    conv = nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=False)
    (row,) = profile(torch.randn(batch, c_in, size, size), conv, n=1, device="cpu")
    params, gflops, _, _, _, s_in, s_out = row
    assert params == c_out * c_in * k * k
    # one multiply-add (2 FLOPs) per kernel tap, input channel, output channel and output pixel
    assert gflops == pytest.approx(2 * k * k * c_in * c_out * size * size * batch / 1e9)
    assert s_in == (batch, c_in, size, size) and s_out == (batch, c_out, size, size)


def test_profile_inputs_outer_ops_inner_and_failures_are_none():
    inputs = [torch.randn(1, 3, 8, 8), torch.randn(1, 5, 8, 8)]
    rows = profile(inputs, [nn.Conv2d(3, 4, 1), nn.ReLU()], n=1, device="cpu")
    assert len(rows) == 4
    assert rows[0][6] == (1, 4, 8, 8) and rows[1][6] == (1, 3, 8, 8)
    assert rows[2] is None  # 5 channels into a 3-channel conv raises; the comparison goes on
    assert rows[3][6] == (1, 5, 8, 8)


def test_profile_list_output_and_no_backward():
    rows = profile(torch.arange(6).view(2, 3), [lambda t: [t + 1, t * 2]], n=2, device="cpu")
    params, _, _, forward_ms, backward_ms, s_in, s_out = rows[0]
    assert s_out == "list" and s_in == (2, 3)
    assert forward_ms >= 0 and math.isnan(backward_ms)  # integer input: nothing to differentiate


def test_profile_stopwatch_accumulates():
    dt = Profile()
    for _ in range(2):
        with dt:
            time.sleep(0.01)
    assert 0.01 <= dt.dt < dt.t and dt.t >= 0.02


def test_profile_nested_outputs_and_familiar_import_path():
    from utils.torch_utils import profile as familiar_profile

    class TwoHeads(nn.Module):  # eval-mode Detect returns (tensor, [tensors])
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return y.flatten(1), [y, y * 2]

    (row,) = familiar_profile(torch.randn(1, 3, 8, 8), [TwoHeads()], n=2, device="cpu")
    assert row[0] == 16 and row[6] == "list" and row[4] > 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_profile_cpu_peak_memory_sees_a_50mb_output():
    x = torch.randn(1, 1, 1, 1)
    (row,) = profile(x, [lambda t: t.expand(1, 1, 3125, 4000).contiguous()], n=1, device="cpu")
    assert 0.045 < row[2] < 1.0  # 12.5M float32 = 50 MB in GB, plus the gradient buffers at most


class WritesIntoItsInput(nn.Module):
    """Like Detect: replaces the entries of the list it is given."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1, bias=False)

    def forward(self, x):
        x[0] = self.conv(x[0])
        return x


def test_layer_cost_gflops_and_fresh_list_per_run():
    """1x1 conv 2->4 on 8x8: 64 px x 4 x 2 multiply-adds x 2 = 1024 FLOPs. A run must not see the previous output."""
    x = [torch.rand(1, 2, 8, 8)]
    ms, gflops = layer_cost(WritesIntoItsInput(), x, n=3)
    assert gflops == pytest.approx(1024 / 1e9) and ms >= 0
    assert x[0].shape == (1, 2, 8, 8)  # the caller's list is untouched
