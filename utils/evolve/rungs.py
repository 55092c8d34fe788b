"""evolve_rungs.csv's rows (--evolve-prune) and what they say: which count, which candidates were pruned where.

One row per (candidate, rung reached): the candidate's claim token, the epoch, its state there, its fitness and 7
results, its hyps. A candidate's rows end with a terminal one (pruned at a rung, or completed at --epochs); the rows
of a candidate whose process died before that are orphans.
"""

from dataclasses import dataclass

from utils.evolve.meta import METRIC_KEYS

RUNG_KEYS = ("candidate", "epoch", "state", "fitness") + METRIC_KEYS
PROMOTED, PRUNED, COMPLETED = "promoted", "pruned", "completed"


@dataclass(frozen=True)
class RungRow:
    """One row of evolve_rungs.csv: a candidate (its claim token) validated at a rung epoch, and what followed."""

    candidate: str
    epoch: int
    state: str  # PROMOTED, PRUNED or COMPLETED
    fitness: float
    metrics: tuple  # the 7 results at that epoch
    hyp: dict


@dataclass(frozen=True)
class PrunedCandidate:
    """A candidate stopped at a rung: its hyps, that rung's epoch and its fitness at every rung it reached."""

    hyp: dict
    epoch: int
    steps: dict  # {rung epoch: fitness}, the last one where it stopped

    @property
    def fitness(self):
        return self.steps[self.epoch]


def counted_rows(rows, live_claims):
    """The rung rows that count: those of candidates with a terminal row (pruned, completed) or a live claim.

    The other rows are orphans: a process died with that candidate in flight, so its rungs are neither counted nor
    compared against.
    """
    finished = {row.candidate for row in rows if row.state != PROMOTED}
    return [row for row in rows if row.candidate in finished or row.candidate in live_claims]


def pruned_candidates(rows):
    """The pruned candidates of evolve_rungs.csv's rows, in the order they were pruned."""
    steps = {}
    for row in rows:
        steps.setdefault(row.candidate, {})[row.epoch] = row.fitness
    return [PrunedCandidate(row.hyp, row.epoch, steps[row.candidate]) for row in rows if row.state == PRUNED]
