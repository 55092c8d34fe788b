"""EpochEnd on a tiny model: which epochs validate, the results rows, best.pt and early stopping."""

import argparse
import csv

import pytest
import torch
from torch import nn

from utils.ema import ModelEMA
from utils.train.epoch_end import EpochEnd


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.nc = 2


def results_row(map50):
    """P, R, mAP@0.5, mAP@0.5:0.95, val losses: fitness = 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95 = map50 here."""
    return (0.5, 0.5, map50, map50, 0.1, 0.1, 0.1)


def make_epoch_end(tmp_path, maps50, epochs, **options):
    """An EpochEnd whose validations return maps50 in turn; returns it and the rows on_fit_epoch_end receives."""
    opt = argparse.Namespace(**{"noval": False, "patience": 100, "save_dir": str(tmp_path), "evolve": True,
                                "nosave": False, "save_period": -1, **options})
    (tmp_path / "weights").mkdir()
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    validated, rows = [], []

    def validate(model):
        validated.append(len(validated))
        return results_row(maps50[len(validated) - 1]), [0.0, 0.0], None

    end = EpochEnd(opt, validate, model, ModelEMA(model), optimizer, tmp_path / "weights", epochs,
                   on_fit_epoch_end=lambda epoch, row: rows.append((epoch, row)))
    return end, rows


@pytest.mark.parametrize("options, logged_map50", [
    ({}, [0.2, 0.3, 0.4]),  # every epoch validates
    ({"noval": True}, [0.0, 0.0, 0.2]),  # the final epoch only; before it the rows hold zeros
    ({"noval": True, "val_epochs": [1]}, [0.2, 0.2, 0.3]),  # epoch 1 (1-based) and the final one
])
def test_validates_when_due(tmp_path, options, logged_map50):
    end, rows = make_epoch_end(tmp_path, [0.2, 0.3, 0.4], 3, **options)
    for epoch in range(3):
        end(epoch, [1.0, 2.0, 3.0], [0.01, 0.02, 0.03])
    end.close()
    assert [epoch for epoch, _ in rows] == [0, 1, 2]
    assert [row[5] for _, row in rows] == logged_map50  # mean losses, P, R, then mAP@0.5
    assert rows[-1][1] == [1.0, 2.0, 3.0, *results_row(logged_map50[-1]), 0.01, 0.02, 0.03]
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.reader(f))) == 4  # the header and one row per epoch


def test_best_pt_follows_fitness_and_patience_stops(tmp_path):
    end, _ = make_epoch_end(tmp_path, [0.3, 0.1, 0.1, 0.1], 10, patience=2)
    stops = []
    for epoch in range(4):
        stops.append(end(epoch, [1.0, 1.0, 1.0], [0.01] * 3))
        if epoch == 0:
            best = (tmp_path / "weights/best.pt").stat().st_mtime_ns
    end.close()
    assert stops == [False, False, True, True] and end.best_fitness == pytest.approx(0.3)
    assert (tmp_path / "weights/best.pt").stat().st_mtime_ns == best  # only epoch 0 was the best
    assert torch.load(tmp_path / "weights/last.pt", weights_only=False)["epoch"] == 3
