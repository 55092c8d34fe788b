"""evolve_rungs.csv's rows: which count (orphans do not), and the pruned candidates with their rung fitness."""

import pytest

from utils.evolve.rungs import COMPLETED, PROMOTED, PRUNED, RungRow, counted_rows, pruned_candidates

HYP = {"lr0": 0.01}


def row(candidate, epoch, state, value):
    return RungRow(candidate, epoch, state, value, (0, 0, value, value, 0, 0, 0), dict(HYP))


ROWS = [row("a", 1, PROMOTED, 0.5), row("b", 1, PRUNED, 0.2), row("c", 1, PROMOTED, 0.6),
        row("d", 1, PROMOTED, 0.7), row("a", 3, PROMOTED, 0.8), row("c", 3, PRUNED, 0.65),
        row("a", 9, COMPLETED, 0.9)]


@pytest.mark.parametrize("live, counted", [
    ({}, ["a", "b", "c", "a", "c", "a"]),  # a completed, b and c pruned; d is an orphan: its process died
    ({"d": HYP}, ["a", "b", "c", "d", "a", "c", "a"]),  # d in flight
])
def test_counted_rows_leave_out_orphans(live, counted):
    assert [r.candidate for r in counted_rows(ROWS, live)] == counted


def test_pruned_candidates_carry_every_rung_they_reached():
    pruned = pruned_candidates(ROWS)
    assert [(c.epoch, c.steps, c.fitness) for c in pruned] == [(1, {1: 0.2}, 0.2), (3, {1: 0.6, 3: 0.65}, 0.65)]
    assert pruned[0].hyp == HYP
