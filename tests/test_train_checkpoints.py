"""What a run's checkpoint holds and how a resume reads it back (YOLOv5's smart_resume rules)."""

import argparse

import pytest
import torch
from torch import nn

from utils.ema import ModelEMA
from utils.train.checkpoints import make_checkpoint, restore_training_state
from utils.train.options import ResumeError


def parts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    ema = ModelEMA(model, updates=7)
    return model, optimizer, ema


def test_checkpoint_contents():
    model, optimizer, ema = parts()
    ckpt = make_checkpoint(4, 0.25, model, ema, optimizer, argparse.Namespace(epochs=10))
    assert ckpt["epoch"] == 4 and ckpt["best_fitness"] == 0.25 and ckpt["updates"] == 7
    assert ckpt["opt"] == {"epochs": 10} and ckpt["optimizer"]["state"]
    weight = ckpt["model"][0].weight
    assert weight.dtype == torch.float16 and weight.is_contiguous()
    assert model[0].weight.dtype == torch.float32  # the training model itself is untouched


def test_resume_restores_everything():
    model, optimizer, ema = parts()
    ckpt = make_checkpoint(4, 0.25, model, ema, optimizer, argparse.Namespace())
    _, optimizer2, ema2 = parts()
    for g in optimizer2.param_groups:
        g["lr"] = 1.0
    best, start, epochs = restore_training_state(ckpt, optimizer2, ema2, "last.pt", 10)
    assert (best, start, epochs) == (0.25, 5, 10)
    assert optimizer2.param_groups[0]["lr"] == 0.01 and ema2.updates == 7


def test_finished_run_cannot_resume_and_finetune_adds_epochs():
    model, optimizer, ema = parts()
    ckpt = {"epoch": -1, "model": model, "optimizer": None, "ema": None}
    with pytest.raises(ResumeError, match="nothing to resume"):
        restore_training_state(ckpt, optimizer, ema, "last.pt", 10)
    ckpt = {**make_checkpoint(29, 0.5, model, ema, optimizer, argparse.Namespace())}
    assert restore_training_state(ckpt, optimizer, ema, "w.pt", 10, resume=False)[1:] == (30, 39)
