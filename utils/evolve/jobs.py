"""What the evolve loops (runner.run_local, ray_backend.run_on_ray) share with the job sources they consume.

A job source is an Evolution (generations, runner.py) or a Verification (retrainings, verify.py) with
    next_candidate() -> STOP | WAIT | (hyp, ticket)   the next training, or why there is none now
    candidate_opt(ticket) -> opt                      the options of that training
    record(hyp, results, ticket)                      a training that ran to its last epoch
    release(ticket)                                   a training that failed: another process trains it
    progress()                                        a context manager showing a progress bar
    judge                                             the prune.RungJudge of its trainings, or None (never pruned)
    record_pruned(hyp, pruned, ticket)                with a judge: a training stopped at a rung (CandidatePruned)
"""

from utils.evolve.prune import CandidatePruned

STOP, WAIT = "stop", "wait"


def train_candidate(train_fn, hyp, opt, device, reporter=None, cache=None):
    """Train one candidate: its 7 results, or the CandidatePruned that stopped it at a rung.

    reporter: a prune.RungReporter (or None: no pruning): train() validates at its rungs and calls it after each epoch.
    cache: the reuse.TrainingCache of this process, passed to train_fn(hyp, opt, device, callbacks, cache).
    """
    callbacks = None
    if reporter is not None:
        opt.val_epochs = list(reporter.rungs)
        callbacks = {"on_fit_epoch_end": reporter}
    try:
        return tuple(train_fn(hyp, opt, device, callbacks, cache))
    except CandidatePruned as pruned:
        return pruned


def finish_candidate(source, hyp, outcome, ticket):
    """Hand a training's outcome (train_candidate's) to its source: recorded as completed or as pruned."""
    if isinstance(outcome, CandidatePruned):
        source.record_pruned(hyp, outcome, ticket)
    else:
        source.record(hyp, outcome, ticket)
