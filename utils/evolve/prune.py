"""--evolve-prune: asynchronous successive halving (ASHA) of evolve candidates, across every process of a folder.

A candidate is validated at its rungs, epochs R, R*eta, R*eta^2, ... below --epochs, and at its last epoch. At each
rung it goes on only when its fitness there is among the top 1/eta of every candidate that reached that rung so far,
whichever process trained it; otherwise it stops there (pruned). The rule is Optuna's SuccessiveHalvingPruner's
(tests/test_evolve_prune.py checks they agree), written here so that the GA methods do not need optuna and the
decision reads evolve_rungs.csv directly, under the folder's lock, the moment a rung is reached.
"""

from utils.evolve.ga import round_significant
from utils.evolve.meta import METRIC_KEYS, fitness
from utils.evolve.rungs import PROMOTED, PRUNED
from utils.evolve.store import EvolveStore


def rung_epochs(min_epochs, eta, epochs):
    """The rung epochs R, R*eta, R*eta^2, ... below `epochs`: (1, 3) for R 1, eta 3, 9 epochs; (1, 3, 9) for 10."""
    if int(min_epochs) < 1:
        raise ValueError(f"--evolve-prune-min-epochs must be at least 1, got {min_epochs}")
    if int(eta) < 2:
        raise ValueError(f"--evolve-prune-eta must be at least 2, got {eta}")
    rungs, epoch = [], int(min_epochs)
    while epoch < int(epochs):
        rungs.append(epoch)
        epoch *= int(eta)
    return tuple(rungs)


def promoted(value, competitors, eta):
    """Whether a candidate with fitness `value` at a rung goes on, `competitors` being the others' fitness there.

    It goes on when it ranks within the best n // eta of the n candidates at the rung (itself included), or, while
    n < eta, when it is the best so far, so the first candidate at a rung always goes on (ties go on).
    """
    values = sorted([*competitors, value], reverse=True)
    keep = max(len(values) // int(eta), 1)
    return value >= values[keep - 1]


class CandidatePruned(Exception):
    """Raised from train()'s epoch callback when a rung stops the candidate; it carries that rung and its results."""

    def __init__(self, epoch, results):
        super().__init__(epoch, results)
        self.epoch, self.results = int(epoch), tuple(results)

    def __str__(self):
        return f"pruned at epoch {self.epoch}"


class RungJudge:
    """Records candidates at their rungs in evolve_rungs.csv and decides, under the folder's lock, which go on."""

    def __init__(self, folder, hyp_keys, rungs, eta):
        self.folder, self.hyp_keys, self.rungs, self.eta = str(folder), tuple(hyp_keys), tuple(rungs), int(eta)
        self.store = EvolveStore(folder)

    def report(self, candidate, epoch, results, hyp):
        """Record `candidate` (its claim token) at rung `epoch`; True: it goes on, False: pruned, its claim released."""
        value = round_significant(fitness(results[:4]))  # as evolve_rungs.csv holds it: the file replays decisions
        with self.store.locked():
            competitors = [row.fitness for row in self.store.counted_rungs(self.hyp_keys)
                           if row.epoch == epoch and row.candidate != candidate]
            go_on = promoted(value, competitors, self.eta)
            self.store.append_rung(candidate, epoch, PROMOTED if go_on else PRUNED, results, hyp)
            if not go_on:
                self.store.release(candidate)
        return go_on


class RungReporter:
    """train()'s on_fit_epoch_end callback for one candidate: reports each rung to a judge, stops it when pruned.

    judge: a RungJudge, or ray_backend's proxy of one; either has `rungs` and report(candidate, epoch, results, hyp).
    """

    def __init__(self, judge, candidate, hyp):
        self.judge, self.candidate, self.hyp, self.rungs = judge, candidate, dict(hyp), tuple(judge.rungs)

    def __call__(self, epoch, row):
        if epoch + 1 not in self.rungs:
            return
        results = tuple(float(x) for x in row[3:3 + len(METRIC_KEYS)])  # row: 3 mean train losses, 7 results, lrs
        if not self.judge.report(self.candidate, epoch + 1, results, self.hyp):
            raise CandidatePruned(epoch + 1, results)


def spend_summary(completed, pruned_epochs, epochs):
    """The end-of-run line: candidates completed and pruned (how many at which rung), training epochs spent.

    completed: rows of evolve.csv; pruned_epochs: the rung epoch of each pruned candidate; epochs: --epochs.
    """
    counts = {e: pruned_epochs.count(e) for e in sorted(set(pruned_epochs))}
    where = ", ".join(f"{n} at epoch {e}" for e, n in counts.items())
    total = completed + len(pruned_epochs)
    spent = completed * epochs + sum(pruned_epochs)
    return (f"{total} candidates: {completed} trained all {epochs} epochs, {len(pruned_epochs)} pruned"
            f"{f' ({where})' if where else ''}; {spent} training epochs spent, {total * epochs} without pruning")
