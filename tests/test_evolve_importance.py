"""Which hyps mattered: PED-ANOVA importances over evolve.csv's rows, the printed table, evolve_importance.png."""

import io
import logging
import sys

import numpy as np
import pytest

from utils.evolve.importance import (
    IMAGE_NAME,
    hyp_importances,
    importance_table,
    report_importance,
    target_quantile,
)
from utils.evolve.store import EvolveStore
from utils.log import LOGGER

pytest.importorskip("optuna")

KEYS = ("lr0", "momentum", "mixup", "iou_t")


def rows(count=40, seed=0):
    """Rows where only lr0 (on a log scale) moves the fitness; momentum and mixup are noise, iou_t never varies."""
    rng = np.random.default_rng(seed)
    hyps = np.column_stack([10 ** rng.uniform(-4, -1, count), rng.uniform(0.6, 0.98, count),
                            rng.uniform(0.0, 0.25, count), np.full(count, 0.2)])
    scores = 0.5 - (np.log10(hyps[:, 0]) + 2.5) ** 2 / 10 + rng.normal(0, 0.002, count)
    return hyps, scores


@pytest.fixture
def log():
    """What LOGGER writes while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    LOGGER.addHandler(handler)
    yield stream
    LOGGER.removeHandler(handler)


def write_folder(folder, hyps, scores):
    store = EvolveStore(folder)
    for hyp, score in zip(hyps, scores):
        store.append((0.5, 0.5, score, score, 0.1, 0.1, 0.1), dict(zip(KEYS, (float(v) for v in hyp))))


def test_the_hyp_that_drives_fitness_ranks_first():
    importances = hyp_importances(KEYS, *rows())
    assert list(importances)[0] == "lr0" and importances["lr0"] > 0.5
    assert set(importances) == {"lr0", "momentum", "mixup"}  # a constant column is not scored
    assert sum(importances.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("count, expected", [(5, 0.5), (20, 0.25), (50, 0.1), (300, 0.1)])
def test_at_least_five_rows_count_as_the_best(count, expected):
    assert target_quantile(count) == pytest.approx(expected)


def test_too_few_rows_or_nothing_varied_is_explained():
    hyps, scores = rows(4)
    with pytest.raises(ValueError, match="at least 5"):
        hyp_importances(KEYS, hyps, scores)
    hyps, scores = rows(10)
    with pytest.raises(ValueError, match="no hyp varied"):
        hyp_importances(KEYS, np.repeat(hyps[:1], 10, 0), scores)
    with pytest.raises(ValueError, match="same fitness"):
        hyp_importances(KEYS, hyps, np.zeros(10))


def test_table_lists_importance_initial_and_best_values():
    table = importance_table({"lr0": 0.75, "mixup": 0.25}, {"lr0": 0.01, "mixup": 0.0}, {"lr0": 0.0031, "mixup": 0.1})
    lines = table.splitlines()
    assert lines[0].split() == ["hyp", "importance", "initial", "best", "row"]
    assert lines[1].split() == ["lr0", "0.750", "0.01", "0.0031"] and lines[2].split()[0] == "mixup"


def test_finished_folder_gets_the_table_and_the_chart(tmp_path, log):
    write_folder(tmp_path, *rows(30))
    importances = report_importance(tmp_path, {"lr0": 0.01, "momentum": 0.937, "mixup": 0.0, "iou_t": 0.2})
    assert list(importances)[0] == "lr0"
    assert (tmp_path / IMAGE_NAME).stat().st_size > 5_000
    text = log.getvalue()
    assert "which hyps mattered (30 rows)" in text and "importance" in text and IMAGE_NAME in text


def test_without_optuna_the_chart_is_skipped_with_the_pip_command(tmp_path, monkeypatch, log):
    write_folder(tmp_path, *rows(10))
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert report_importance(tmp_path) is None
    assert "pip install optuna" in log.getvalue() and not (tmp_path / IMAGE_NAME).exists()


def test_a_folder_with_too_few_rows_says_so(tmp_path, log):
    write_folder(tmp_path, *rows(3))
    assert report_importance(tmp_path) is None
    assert "need at least 5" in log.getvalue()
