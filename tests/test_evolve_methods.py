"""The methods table and YOLOv5's mutation method: anchors held fixed from --weights, searched from scratch."""

import argparse

import numpy as np
import pytest

from utils.evolve import space
from utils.evolve.meta import evolution_space
from utils.evolve.methods import METHODS, MutationMethod, get_method
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
