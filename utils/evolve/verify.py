"""--evolve-verify K: after the N generations, retrain hyps on seeds the search never used, pick on some, report on others.

The search trains every candidate with --seed S. Verification first retrains the initial hyps and the best 3 rows on the
K pick seeds S+1 .. S+K and picks the best mean (ties keep the initial hyps); then it retrains the pick and the initial
hyps on K more report seeds S+K+1 .. S+2K, and the gain it reports is the paired gain on those only. Picking the best of
4 by their mean on the same seeds that score them flatters the pick (measured: two to three times the gain it showed on
seeds it never saw); a pick scored on fresh seeds does not. K more seeds rather than half of K keeps each estimate on K
seeds, for 2K trainings more (none when the initial hyps are the pick). When the pick does not beat the initial hyps on
the report seeds, hyp_evolved.yaml keeps the initial hyps and the verdict says so.
Verification trains for --evolve-verify-epochs E (default the search's --epochs): the user's horizon when candidates were
shorter. It is never pruned. A job is one (evolve.csv row, seed, E): claimed and recorded in evolve_verify.csv through
the store, under the folder's lock, like a generation, so several processes or Ray workers share the jobs, a killed
verification restarts where it stopped, and the same command on a finished folder verifies without evolving again.
Results at another E stay in the file but never mix into this verdict.
"""

import contextlib
import math
import sys
from dataclasses import dataclass

import numpy as np
import yaml

from utils.evolve.ga import constrain
from utils.evolve.jobs import STOP, WAIT
from utils.evolve.meta import METRIC_KEYS, fitness
from utils.evolve.store import VERIFY_CLAIMS_DIR
from utils.log import LOGGER, colorstr

VERIFIED_ROWS = 3  # best rows verified beside the initial hyps
INITIAL_ROW = -1  # the row number of the initial hyps when no row of evolve.csv holds them
PREFIX = colorstr("verify: ")


def verify_seeds(search_seed, k):
    """(pick seeds, report seeds): the K seeds after the search's --seed, then the K after those."""
    first = int(search_seed or 0) + 1
    return tuple(range(first, first + int(k))), tuple(range(first + int(k), first + 2 * int(k)))


@dataclass(frozen=True)
class Candidate:
    row: int  # 0-based evolve.csv row, INITIAL_ROW when the initial hyps have none
    hyp: dict
    reported: float  # fitness in evolve.csv (nan without a row)
    metrics: tuple  # the 7 reported results (nan without a row)


@dataclass(frozen=True)
class Job:
    row: int
    seed: int
    epochs: int
    claim_id: str


@dataclass(frozen=True)
class RowVerdict:
    candidate: Candidate
    scores: tuple  # verified fitness per seed, in seed order
    metrics: np.ndarray  # (K, 7) verified results
    gains: tuple  # fitness minus the initial hyps' fitness, seed by seed

    @property
    def mean(self):
        return float(np.mean(self.scores))

    @property
    def sd(self):
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    @property
    def gain(self):
        return float(np.mean(self.gains))

    @property
    def gain_sd(self):
        return float(np.std(self.gains, ddof=1)) if len(self.gains) > 1 else 0.0


def pick_candidates(history, initial, count=VERIFIED_ROWS):
    """The initial hyps, then the best `count` rows by reported fitness with hyps not picked yet (fewer if none)."""
    keys = history.hyp_keys
    rows = [tuple(float(v) for v in row) for row in history.hyps]
    scores = history.fitness
    initial_key = tuple(float(initial[k]) for k in keys)
    first = rows.index(initial_key) if initial_key in rows else INITIAL_ROW
    nan = (math.nan,) * len(METRIC_KEYS)
    picked = [Candidate(first, {k: float(initial[k]) for k in keys}, float(scores[first]) if first >= 0 else math.nan,
                        tuple(float(x) for x in history.metrics[first]) if first >= 0 else nan)]
    seen = {initial_key}
    for i in np.argsort(-scores, kind="stable"):
        if len(picked) > count:
            break
        if rows[i] not in seen:
            seen.add(rows[i])
            picked.append(Candidate(int(i), history.hyp_dict(i), float(scores[i]),
                                    tuple(float(x) for x in history.metrics[i])))
    return picked


def recorded(records, epochs):
    """{(row, seed): the 7 results} from evolve_verify.csv's rows trained for `epochs`; the first one wins."""
    results = {}
    for record in records:
        if int(record[2]) == int(epochs):
            results.setdefault((int(record[0]), int(record[1])), tuple(float(x) for x in record[4:]))
    return results


def verdicts(candidates, results, seeds):
    """One RowVerdict per candidate once every (row, seed) has a result, else None; gains are over candidates[0]."""
    if any((c.row, s) not in results for c in candidates for s in seeds):
        return None
    base = [float(fitness(results[candidates[0].row, s])) for s in seeds]
    out = []
    for c in candidates:
        metrics = np.array([results[c.row, s] for s in seeds], dtype=float)
        scores = tuple(float(x) for x in fitness(metrics))
        out.append(RowVerdict(c, scores, metrics, tuple(f - b for f, b in zip(scores, base))))
    return out


def best_verdict(rows):
    """The row with the best verified mean fitness; the first (the initial hyps) on a tie."""
    return rows[int(np.argmax([v.mean for v in rows]))]


@dataclass(frozen=True)
class Verdict:
    """The whole verification: every candidate on the pick seeds, and the pick against the initial on the report seeds."""

    picking: list  # RowVerdict per candidate on the pick seeds, the initial hyps first
    pick: RowVerdict  # the best of `picking`
    report: RowVerdict | None  # the pick on the report seeds, gains over the initial hyps; None when the pick is them
    report_initial: RowVerdict | None  # the initial hyps on the report seeds

    @property
    def improved(self):
        """Whether the pick beat the initial hyps on the seeds not used to pick it."""
        return self.report is not None and self.report.gain > 0

    @property
    def kept(self):
        """The candidate hyp_evolved.yaml holds: the pick when it improved, else the initial hyps."""
        return self.pick.candidate if self.improved else self.picking[0].candidate


def pending_jobs(candidates, results, pick_seeds, report_seeds):
    """(the (candidate, seed) jobs not recorded yet, in training order; whether report jobs follow once they are).

    Every candidate is trained on the pick seeds first, seed-major so rows pair early; the report jobs (the initial
    hyps and the pick) exist only once the pick is known, and there are none when the initial hyps are the pick.
    """
    picking = [(c, s) for s in pick_seeds for c in candidates if (c.row, s) not in results]
    if picking:
        return picking, True
    pick = best_verdict(verdicts(candidates, results, pick_seeds)).candidate
    if pick is candidates[0]:
        return [], False
    return [(c, s) for s in report_seeds for c in (candidates[0], pick) if (c.row, s) not in results], False


def judge(candidates, results, pick_seeds, report_seeds):
    """The Verdict once every job pending_jobs asks for is recorded, else None."""
    if pending_jobs(candidates, results, pick_seeds, report_seeds)[0]:
        return None
    picking = verdicts(candidates, results, pick_seeds)
    pick = best_verdict(picking)
    if pick is picking[0]:
        return Verdict(picking, pick, None, None)
    initial, report = verdicts([candidates[0], pick.candidate], results, report_seeds)
    return Verdict(picking, pick, report, initial)


def _row_name(verdict, initial):
    row = verdict.candidate.row
    if verdict.candidate is initial:
        return "initial" if row == INITIAL_ROW else f"{row} (initial)"
    return str(row)


def _seed_text(seeds):
    return ", ".join(str(s) for s in seeds)


def verdict_table(verdict, pick_seeds, report_seeds, epochs):
    """The printed verdict: the candidates on the pick seeds, then the pick against the initial on the report seeds."""
    initial = verdict.picking[0].candidate
    lines = [f"{len(verdict.picking)} hyps retrained for {epochs} epochs on pick seeds {_seed_text(pick_seeds)}; "
             "fitness 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95",
             f"{'row':>14s} {'reported':>10s} {'mean':>10s} {'sd':>8s} {'gain vs initial':>16s} {'sd':>8s}"]
    for v in verdict.picking:
        reported = "-" if math.isnan(v.candidate.reported) else f"{v.candidate.reported:.5f}"
        lines.append(f"{_row_name(v, initial):>14s} {reported:>10s} {v.mean:10.5f} {v.sd:8.5f} {v.gain:+16.5f} "
                     f"{v.gain_sd:8.5f}{'  <- picked' if v is verdict.pick else ''}")
    if verdict.report is None:
        lines.append("the initial hyps scored best on the pick seeds: hyp_evolved.yaml keeps them")
        return "\n".join(lines)
    report, better = verdict.report, sum(g > 0 for g in verdict.report.gains)
    lines += [f"row {_row_name(verdict.pick, initial)} and the initial hyps retrained on report seeds "
              f"{_seed_text(report_seeds)}, not used to pick:",
              f"{_row_name(verdict.report_initial, initial):>14s} {'':>10s} {verdict.report_initial.mean:10.5f} {verdict.report_initial.sd:8.5f}",
              f"{_row_name(report, initial):>14s} {'':>10s} {report.mean:10.5f} {report.sd:8.5f} {report.gain:+16.5f} "
              f"{report.gain_sd:8.5f}  better on {better}/{len(report.gains)} seeds"]
    if verdict.improved:
        lines.append(f"gain of the pick on unseen seeds: {report.gain:+.5f} (on the seeds that picked it: "
                     f"{verdict.pick.gain:+.5f}); hyp_evolved.yaml holds row {report.candidate.row}")
    else:
        lines.append(f"the pick did NOT beat the initial hyps on the report seeds (gain {report.gain:+.5f}; its "
                     f"{verdict.pick.gain:+.5f} on the seeds that picked it did not hold): hyp_evolved.yaml keeps the "
                     "initial hyps")
    return "\n".join(lines)


def verified_yaml_text(verdict, pick_seeds, report_seeds, epochs, last_row):
    """hyp_evolved.yaml after verification: YOLOv5's header lines, which seeds picked and which reported, the figures."""
    pick, report, kept = verdict.pick, verdict.report, verdict.kept
    picked_on = f"picked on seeds {_seed_text(pick_seeds)}"
    if report is None:
        best = "initial hyps (no row beat them on the pick seeds)"
        outcome, verified = f"{picked_on}; no report trainings needed", verdict.picking[0]
    else:
        outcome = (f"row {pick.candidate.row} {picked_on} (gain {pick.gain:+.5f}); on report seeds "
                   f"{_seed_text(report_seeds)}, not used to pick, its gain over the initial hyps is "
                   f"{report.gain:+.5f} +/- {report.gain_sd:.5f} (paired)")
        if verdict.improved:
            best, verified = f"{kept.row} (picked by verified mean, better on the report seeds)", report
        else:
            best = f"initial hyps (the pick, row {pick.candidate.row}, did not beat them on the report seeds)"
            verified = verdict.report_initial
    return (
        "# YOLOv5 Hyperparameter Evolution Results\n"
        f"# Best generation: {best}\n"
        f"# Last generation: {last_row}\n"
        f"# Verified for {epochs} epochs: {outcome}\n"
        "# " + ", ".join(f"{k:>20s}" for k in METRIC_KEYS) + "\n"
        "# " + ", ".join(f"{v:>20.5g}" for v in kept.metrics) + "  (reported by the search)\n"
        "# " + ", ".join(f"{v:>20.5g}" for v in verified.metrics.mean(0)) + "  (verified mean)\n\n"
        + yaml.safe_dump(dict(kept.hyp), sort_keys=False)
    )


class Verification:
    """The verification jobs of one evolve folder, as the runner's loops consume them (like Evolution's generations)."""

    judge = None  # verification trainings run all their epochs, never pruned

    def __init__(self, evolution, k):
        opt = evolution.opt
        self.evolution = evolution
        self.store = evolution.store
        self.pick_seeds, self.report_seeds = verify_seeds(getattr(opt, "seed", 0), k)
        self.epochs = int(getattr(opt, "evolve_verify_epochs", None) or opt.epochs)
        self.initial = constrain(evolution.hyp, evolution.meta)
        self.unfinished = False  # the evolution lost a generation (a process died) after this one's loop ended
        self.bar = None

    def state(self):
        """(history, candidates, results at this verification's epochs) read under the lock."""
        with self.store.locked():
            history = self.store.history(self.evolution.keys)
            results = recorded(self.store.read_verify(), self.epochs)
            return history, pick_candidates(history, self.initial), results

    def pending(self, candidates, results):
        return pending_jobs(candidates, results, self.pick_seeds, self.report_seeds)

    def next_candidate(self):
        """WAIT while generations or the pick's jobs are in flight, STOP when every job is done or claimed,
        else (hyp, Job)."""
        with self.store.locked():
            history, candidates, results = self.state()
            self.unfinished = history.started < self.evolution.target
            if self.unfinished:
                return STOP
            if history.finished < self.evolution.target:
                return WAIT
            jobs, more = self.pending(candidates, results)
            in_flight = {(int(c["row"]), int(c["seed"])) for c in self.store.claims(VERIFY_CLAIMS_DIR)
                         if int(c.get("epochs", self.epochs)) == self.epochs}
            for c, seed in jobs:
                if (c.row, seed) not in in_flight:
                    item = {"row": c.row, "seed": seed, "epochs": self.epochs}
                    return dict(c.hyp), Job(c.row, seed, self.epochs, self.store.claim(item, VERIFY_CLAIMS_DIR))
            return WAIT if more else STOP  # the report jobs wait for the pick's jobs in flight elsewhere

    def candidate_opt(self, job):
        """The candidate's opt at the verification's seed and epochs, never pruned: it is the user's whole training."""
        opt = self.evolution.candidate_opt()
        opt.seed, opt.epochs, opt.evolve_prune = job.seed, job.epochs, False
        return opt

    def release(self, job):
        self.store.release(job.claim_id, VERIFY_CLAIMS_DIR)

    def record(self, hyp, results, job):
        self.store.append_verify(job.row, job.seed, job.epochs, results, job.claim_id)
        LOGGER.info(f"{PREFIX}row {job.row} seed {job.seed} ({job.epochs} epochs): " + ", ".join(
            f"{k} {float(v):.5g}" for k, v in zip(METRIC_KEYS[:4], results)))
        if self.bar is not None:
            self.bar.n, self.bar.total = self.counts()
            self.bar.refresh()

    def counts(self):
        """(jobs recorded, jobs known now): the report seeds' jobs are known once the pick is."""
        _, candidates, results = self.state()
        done = sum((c.row, s) in results for c in candidates for s in self.pick_seeds + self.report_seeds)
        return done, done + len(self.pending(candidates, results)[0])

    @contextlib.contextmanager
    def progress(self):
        """A bar over the folder's verification jobs (every process's), growing when the report jobs appear."""
        from tqdm import tqdm

        done, total = self.counts()
        try:
            with tqdm(total=total, initial=done, desc="Verifying", unit="run", file=sys.stderr) as self.bar:
                yield self.bar
        finally:
            self.bar = None

    def finish(self):
        """Print the verdict and rewrite hyp_evolved.yaml from it, once every job is recorded; returns the Verdict."""
        with self.store.locked():
            history, candidates, results = self.state()
            verdict = judge(candidates, results, self.pick_seeds, self.report_seeds)
            if verdict is None:
                LOGGER.info(f"{PREFIX}verification jobs are still running in other processes: the last one to finish "
                            "prints the verdict and writes hyp_evolved.yaml")
                return None
            self.store.replace_yaml(verified_yaml_text(verdict, self.pick_seeds, self.report_seeds, self.epochs,
                                                       len(history) - 1))
        table = verdict_table(verdict, self.pick_seeds, self.report_seeds, self.epochs)
        LOGGER.info("\n".join(PREFIX + line for line in table.splitlines()))
        return verdict
