"""The mutation GA as a method: the first candidate, and parents taken from evolve.csv only (never pruned ones)."""

import numpy as np

from utils.evolve.ga import constrain
from utils.evolve.meta import META
from utils.evolve.methods import MutationMethod
from utils.evolve.rungs import PrunedCandidate
from utils.evolve.store import History

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
