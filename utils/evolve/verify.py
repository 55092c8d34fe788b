"""--evolve-verify K: after the N generations, retrain the initial hyps and the best rows on K seeds the search never used.

The search trains every candidate with --seed S; verification trains with seeds S+1 .. S+K. A job is one (evolve.csv
row, seed): it is claimed and recorded in evolve_verify.csv through the store, under the folder's lock, like a
generation, so several processes or Ray workers share the jobs, a killed verification restarts where it stopped, and
the same command on a finished folder verifies without evolving again. The verdict gives per row the reported fitness,
the mean and spread on the new seeds and the gain over the initial hyps paired by seed, and hyp_evolved.yaml is
rewritten from the row with the best verified mean (ties keep the initial hyps).
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
    """The K training seeds of verification: the ones after the search's --seed."""
    return tuple(int(search_seed or 0) + 1 + i for i in range(int(k)))


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


def recorded(records):
    """{(row, seed): the 7 results} from evolve_verify.csv's rows (row, seed, fitness, 7 metrics); first one wins."""
    results = {}
    for record in records:
        results.setdefault((int(record[0]), int(record[1])), tuple(float(x) for x in record[3:]))
    return results


def verdicts(candidates, results, seeds):
    """One RowVerdict per candidate once every (row, seed) has a result, else None."""
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


def verdict_table(rows, seeds):
    """The printed verdict: per row the reported fitness, verified mean and sd, and the paired gain over the initial."""
    seed_text = ", ".join(str(s) for s in seeds)
    lines = [f"{len(rows)} hyps retrained on {len(seeds)} unseen seeds ({seed_text}); fitness 0.1 mAP@0.5 + "
             "0.9 mAP@0.5:0.95",
             f"{'row':>14s} {'reported':>10s} {'verified mean':>14s} {'sd':>8s} {'gain vs initial':>16s} {'sd':>8s}"]
    best = best_verdict(rows)
    for v in rows:
        row = v.candidate.row
        name = ("initial" if row == INITIAL_ROW else f"{row} (initial)") if v is rows[0] else str(row)
        reported = "-" if math.isnan(v.candidate.reported) else f"{v.candidate.reported:.5f}"
        lines.append(f"{name:>14s} {reported:>10s} {v.mean:14.5f} {v.sd:8.5f} {v.gain:+16.5f} "
                     f"{v.gain_sd:8.5f}{'  <- picked' if v is best else ''}")
    return "\n".join(lines)


def verified_yaml_text(verdict, seeds, last_row):
    """hyp_evolved.yaml for the picked row: YOLOv5's header lines, both fitness figures, reported and verified metrics."""
    row = verdict.candidate.row
    reported = verdict.candidate.metrics
    return (
        "# YOLOv5 Hyperparameter Evolution Results\n"
        f"# Best generation: {row if row >= 0 else 'initial hyps (no row)'} (best verified mean fitness)\n"
        f"# Last generation: {last_row}\n"
        f"# Fitness: reported {verdict.candidate.reported:.5f}, verified {verdict.mean:.5f} +/- {verdict.sd:.5f} "
        f"(sd) on seeds {', '.join(str(s) for s in seeds)}, gain over the initial hyps {verdict.gain:+.5f} "
        f"+/- {verdict.gain_sd:.5f} (paired by seed)\n"
        "# " + ", ".join(f"{k:>20s}" for k in METRIC_KEYS) + "\n"
        "# " + ", ".join(f"{v:>20.5g}" for v in reported) + "  (reported)\n"
        "# " + ", ".join(f"{v:>20.5g}" for v in verdict.metrics.mean(0)) + "  (verified mean)\n\n"
        + yaml.safe_dump(dict(verdict.candidate.hyp), sort_keys=False)
    )


class Verification:
    """The verification jobs of one evolve folder, as the runner's loops consume them (like Evolution's generations)."""

    judge = None  # verification trainings run all their epochs, never pruned

    def __init__(self, evolution, k):
        self.evolution = evolution
        self.store = evolution.store
        self.seeds = verify_seeds(getattr(evolution.opt, "seed", 0), k)
        self.initial = constrain(evolution.hyp, evolution.meta)
        self.unfinished = False  # the evolution lost a generation (a process died) after this one's loop ended
        self.bar = None

    def state(self):
        """(history, candidates, results) read under the lock."""
        with self.store.locked():
            history = self.store.history(self.evolution.keys)
            return history, pick_candidates(history, self.initial), recorded(self.store.read_verify())

    def next_candidate(self):
        """WAIT while generations are in flight, STOP when every job is done or claimed, else (hyp, Job)."""
        with self.store.locked():
            history, candidates, results = self.state()
            self.unfinished = history.started < self.evolution.target
            if self.unfinished:
                return STOP
            if history.finished < self.evolution.target:
                return WAIT
            in_flight = {(int(c["row"]), int(c["seed"])) for c in self.store.claims(VERIFY_CLAIMS_DIR)}
            for seed in self.seeds:  # seed-major: the initial hyps and each row are paired early
                for c in candidates:
                    if (c.row, seed) not in results and (c.row, seed) not in in_flight:
                        job = Job(c.row, seed, self.store.claim({"row": c.row, "seed": seed}, VERIFY_CLAIMS_DIR))
                        return dict(c.hyp), job
            return STOP

    def candidate_opt(self, job):
        opt = self.evolution.candidate_opt()
        opt.seed = job.seed
        return opt

    def release(self, job):
        self.store.release(job.claim_id, VERIFY_CLAIMS_DIR)

    def record(self, hyp, results, job):
        self.store.append_verify(job.row, job.seed, results, job.claim_id)
        LOGGER.info(f"{PREFIX}row {job.row} seed {job.seed}: " + ", ".join(
            f"{k} {float(v):.5g}" for k, v in zip(METRIC_KEYS[:4], results)))
        if self.bar is not None:
            self.bar.update(1)

    @contextlib.contextmanager
    def progress(self):
        from tqdm import tqdm

        _, candidates, results = self.state()
        total = len(candidates) * len(self.seeds)
        done = sum((c.row, s) in results for c in candidates for s in self.seeds)
        try:
            with tqdm(total=total, initial=done, desc="Verifying", unit="run", file=sys.stderr) as self.bar:
                yield self.bar
        finally:
            self.bar = None

    def finish(self):
        """Print the verdict and rewrite hyp_evolved.yaml from the best verified row, once every job is recorded."""
        with self.store.locked():
            history, candidates, results = self.state()
            rows = verdicts(candidates, results, self.seeds)
            if rows is None:
                LOGGER.info(f"{PREFIX}verification jobs are still running in other processes: the last one to finish "
                            "prints the verdict and writes hyp_evolved.yaml")
                return None
            best = best_verdict(rows)
            self.store.replace_yaml(verified_yaml_text(best, self.seeds, len(history) - 1))
        LOGGER.info("\n".join(PREFIX + line for line in verdict_table(rows, self.seeds).splitlines()))
        LOGGER.info(f"{PREFIX}{self.store.yaml} holds row {best.candidate.row}: verified mean {best.mean:.5f}, "
                    f"gain {best.gain:+.5f} over the initial hyps")
        return rows
