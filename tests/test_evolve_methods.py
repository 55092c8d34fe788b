"""The methods table and YOLOv5's mutation method: anchors held fixed from --weights, searched from scratch; the first
candidate, and parents taken from evolve.csv only (never pruned ones)."""

import argparse

import numpy as np
import pytest

from utils.evolve import space
from utils.evolve.ga import constrain
from utils.evolve.meta import META, evolution_space
from utils.evolve.methods import METHODS, MutationMethod, get_method
from utils.evolve.rungs import PrunedCandidate
from utils.evolve.space import held_meta
from utils.evolve.store import History
from utils.files import ROOT
from utils.hyp import load_hyp


def hyps_and_meta():
    return evolution_space(load_hyp(ROOT / "data/hyps/hyp.scratch-low.yaml"))


def one_row_history(hyp, anchors):
    """One scored row of `hyp` with `anchors` anchors (a parent for every proposal)."""
    keys = tuple(hyp)
    row = [anchors if k == "anchors" else hyp[k] for k in keys]
    return History(keys, np.array([[0.5, 0.5, 0.3, 0.2, 0.05, 0.03, 0.01]]), np.array([row], dtype=float))


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(ValueError, match="choose one of cmaes, gp, mutation, population, tpe"):
        get_method("grid")
    assert get_method("mutation") is MutationMethod and set(METHODS) == {"cmaes", "gp", "mutation", "population", "tpe"}


@pytest.mark.parametrize("weights, held", [("yolov5n.pt", ("anchors",)), ("", ()), (None, ())])
def test_held_meta_zeroes_the_gain_of_anchors_from_weights_only(weights, held, monkeypatch):
    lines = []
    monkeypatch.setattr(space.LOGGER, "info", lines.append)
    hyp, meta = hyps_and_meta()
    out, keys = held_meta(meta, argparse.Namespace(weights=weights))
    assert keys == held and out["anchors"] == ((0,) if held else (2,)) + meta["anchors"][1:]
    assert {k: v for k, v in out.items() if k != "anchors"} == {k: v for k, v in meta.items() if k != "anchors"}
    assert len(lines) == len(held) and all("anchors held at the initial value while training from --weights" in line
                                           for line in lines)
    assert held_meta({"lr0": meta["lr0"]}, argparse.Namespace(weights="yolov5n.pt"))[1] == ()  # --noautoanchor


@pytest.mark.parametrize("weights, anchors_move", [("yolov5n.pt", False), ("", True)])
def test_mutation_holds_anchors_from_weights_and_moves_them_from_scratch(weights, anchors_move):
    hyp, meta = hyps_and_meta()
    method = MutationMethod(hyp, meta, None, argparse.Namespace(weights=weights))
    rng = np.random.default_rng(0)
    proposals = [method.propose(one_row_history(hyp, 4.0), rng) for _ in range(200)]
    counts = {p["anchors"] for p in proposals}
    if anchors_move:
        assert len(counts) > 10  # from scratch, mutation draws other anchor counts (gain 2)
    else:
        assert counts == {3.0}  # the initial count, even from a parent row holding 4
    assert len({p["lr0"] for p in proposals}) > 100  # the other keys still mutate


INITIAL = {"lr0": 0.01, "momentum": 0.9}
META_TWO = {k: META[k] for k in INITIAL}


def history(rows=(), pruned=(), claims=()):
    """rows: (fitness, hyp) pairs of evolve.csv; pruned: (fitness at epoch 1, hyp) of candidates pruned there."""
    metrics = np.array([[0, 0, f, f, 0, 0, 0] for f, _ in rows], dtype=float).reshape(len(rows), 7)
    hyps = np.array([[h[k] for k in INITIAL] for _, h in rows], dtype=float).reshape(len(rows), len(INITIAL))
    return History(tuple(INITIAL), metrics, hyps, list(claims), [PrunedCandidate(h, 1, {1: f}) for f, h in pruned])


def test_first_candidate_is_the_initial_hyps_unless_tried_or_in_flight():
    method, rng = MutationMethod(INITIAL, META_TWO), np.random.default_rng(0)
    assert method.propose(history(), rng) == INITIAL
    assert method.propose(history(claims=[INITIAL]), rng) != INITIAL
    assert method.propose(history(pruned=[(0.1, INITIAL)]), rng) != INITIAL  # pruned: tried, not retrained


def test_parents_are_rows_of_evolve_csv_never_pruned_candidates():
    method = MutationMethod(INITIAL, META_TWO)
    row = {"lr0": 0.0005, "momentum": 0.9}
    far = {"lr0": 0.05, "momentum": 0.9}  # 100x the row's lr0: no mutation of one reaches the other's reach
    candidates = history(rows=[(0.1, row)], pruned=[(0.9, far), (0.8, far)])
    for seed in range(50):
        child = method.propose(candidates, np.random.default_rng(seed))
        assert 0.3 * row["lr0"] <= child["lr0"] <= 3 * row["lr0"], child
        assert child == constrain(child, META_TWO)
