"""EpochRunner on a tiny model: optimizer steps under accumulation, EMA updates, non-finite loss handling."""

import argparse
import dataclasses

import pytest
import torch
from torch import nn

from utils.ema import ModelEMA
from utils.precision import Precision
from utils.train.loop import EarlyStopping, EpochRunner, EpochSettings, NonFiniteLossError, multi_scale

HYP = {"warmup_bias_lr": 0.1, "warmup_momentum": 0.8, "momentum": 0.937}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return [self.conv(x)]


def loader(n=8, bs=2, size=32):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 255, (bs, 3, size, size), dtype=torch.uint8, generator=g), torch.zeros(1, 6),
             [f"im{i}.jpg"] * bs, None) for i in range(n)]


def make_runner(loss_fn, precision=None, warmup_iters=1, batch_size=16, multi_scale=False, quad=False):
    torch.manual_seed(0)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for g in optimizer.param_groups:
        g["initial_lr"] = 0.01
    steps = []
    step = optimizer.step
    optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
    opt = argparse.Namespace(quad=quad, multi_scale=multi_scale)
    settings = EpochSettings.from_options(opt, HYP, epochs=3, batch_size=batch_size, imgsz=32, stride=32,
                                          warmup_iters=warmup_iters, verbose=False)
    runner = EpochRunner(model, model, optimizer, ModelEMA(model), loss_fn, precision or Precision("cpu"), settings,
                         lambda e: 1.0, torch.device("cpu"))
    return runner, steps


def square_loss(pred, targets):
    loss = pred[0].float().pow(2).mean()
    return loss, torch.stack([loss.detach()] * 3)


def test_settings_from_options():
    opt = argparse.Namespace(quad=1, multi_scale=0, epochs=99, hyp="ignored.yaml")
    settings = EpochSettings.from_options(opt, {**HYP, "lr0": 0.01, "warmup_epochs": 3.0}, epochs=5, batch_size=8,
                                          imgsz=64, stride=32, warmup_iters=100)
    assert (settings.epochs, settings.batch_size, settings.imgsz, settings.stride) == (5, 8, 64, 32)
    assert (settings.warmup_iters, settings.quad, settings.multi_scale, settings.verbose) == (100, True, False, True)
    assert settings.warmup_hyp == HYP
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 6


@pytest.mark.parametrize("quad, factor", [(False, 1.0), (True, 4.0)])
def test_quad_loss_counts_four_times(quad, factor):
    runner, _ = make_runner(square_loss, quad=quad)
    loss, items = runner._loss(torch.rand(2, 3, 32, 32), torch.zeros(1, 6))
    assert loss.item() == pytest.approx(factor * items[0].item())


@pytest.mark.parametrize("epoch, batch_size, expected_steps", [
    (0, 16, 2),  # accumulate 1 at iteration 0 (step), then 4: steps at iterations 0 and 4
    (1, 16, 2),  # iterations 8-15: first step at 8 (8 - (-1) >= 4), then 12
    (1, 64, 8),  # nominal batch: every batch steps
    (1, 32, 4),  # accumulate 2
])
def test_optimizer_steps_with_accumulation(epoch, batch_size, expected_steps):
    runner, steps = make_runner(square_loss, batch_size=batch_size)
    mean = runner.run(loader(), epoch)
    assert len(steps) == expected_steps and runner.ema.updates == expected_steps
    assert mean.shape == (3,) and (mean > 0).all()


def test_loss_decreases_over_epochs():
    runner, _ = make_runner(square_loss, batch_size=64)
    first = runner.run(loader(), 1)[0]
    for e in range(2, 5):
        last = runner.run(loader(), e)[0]
    assert last < first


def test_nan_loss_stops_naming_epoch_and_batch():
    calls = []

    def loss_fn(pred, targets):
        calls.append(1)
        loss, items = square_loss(pred, targets)
        return (loss * float("nan") if len(calls) == 4 else loss), items

    runner, _ = make_runner(loss_fn)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3.*last\.pt"):
        runner.run(loader(), 2, checkpoint_hint="The last good checkpoint is last.pt. ")


def test_bf16_nan_falls_back_to_fp32_and_continues():
    def loss_fn(pred, targets):
        loss, items = square_loss(pred, targets)
        return (loss * float("inf") if pred[0].dtype == torch.bfloat16 else loss), items

    runner, steps = make_runner(loss_fn, precision=Precision("cpu", torch.bfloat16, True), batch_size=64)
    runner.run(loader(), 1)
    assert runner.precision.dtype is None and runner.precision.channels_last and len(steps) == 8


def test_multi_scale_sizes_are_stride_multiples():
    torch.manual_seed(0)
    for _ in range(20):
        out = multi_scale(torch.zeros(1, 3, 64, 96), 64, 32)
        assert all(s % 32 == 0 for s in out.shape[2:]) and 32 <= max(out.shape[2:]) <= 96


@pytest.mark.parametrize("patience, fits, stop_at", [(3, [0.1, 0.2, 0.2, 0.1, 0.1, 0.1], 5), (2, [0.3, 0.1, 0.1], 2),
                                                     (0, [0.5] + [0.1] * 20, None)])
def test_early_stopping(patience, fits, stop_at):
    stopper = EarlyStopping(patience)
    stops = [stopper(epoch, f) for epoch, f in enumerate(fits)]
    assert (stops.index(True) if True in stops else None) == stop_at


def test_managed_threads_run_the_optimizer_on_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def loss_fn(pred, targets):
        seen.append(torch.get_num_threads())
        return square_loss(pred, targets)

    try:
        runner, steps = make_runner(loss_fn, precision=Precision("cpu", None, True, tune_cpu=True), batch_size=64)
        step = runner.optimizer.step
        runner.optimizer.step = lambda *a, **k: (seen.append(("step", torch.get_num_threads())), step(*a, **k))[1]
        runner.run(loader(), 1)
        assert {x for x in seen if isinstance(x, tuple)} == {("step", 1)} and runner.threads is not None
        assert 2 in seen  # the loss runs at the count the ThreadTuner sets
        plain, _ = make_runner(square_loss)
        assert plain.threads is None  # the plain path leaves torch's threads alone
    finally:
        torch.set_num_threads(threads)
