"""The --evolve loop: propose hyps, train them, record the row; many processes (or Ray workers) share one folder.

Every process started with the same --project/--name evolves in runs/evolve/<name> (never incremented). N counts the
candidates started in that folder: rows of evolve.csv, candidates pruned (--evolve-prune, evolve_rungs.csv) and
candidates in flight; a process starts no new one once they reach N, so rerunning the command after a crash continues to
N, and 4 processes on 4 GPUs finish N generations about 4x sooner. With --evolve-verify K the same loops then run the
verification jobs (verify.py); at the end evolve.png and, when optuna is installed, the hyp importances (importance.py)
are drawn beside evolve.csv. Once they reach N a process waits for the candidates in flight and takes over any whose
claim went stale (its process died or its host was lost: claims.py).

run_local and ray_backend.run_on_ray consume a job source (jobs.py): Evolution (generations) or Verification.
"""

import contextlib
import copy
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from utils.evolve.claims import DEFAULT_GRACE_MIN
from utils.evolve.jobs import STOP, WAIT, finish_candidate, train_candidate
from utils.evolve.meta import METRIC_KEYS, evolution_space, fitness, unknown_keys
from utils.evolve.methods import get_method
from utils.evolve.prune import RungJudge, RungReporter, rung_epochs, spend_summary
from utils.evolve.ray_backend import run_on_ray
from utils.evolve.rungs import COMPLETED, PRUNED
from utils.evolve.store import EvolveStore, summary_text
from utils.evolve.verify import Verification
from utils.files import ROOT
from utils.hyp import load_hyp
from utils.log import LOGGER, colorstr
from utils.memory import freeze_loaded_objects, release_memory, thaw_objects
from utils.reuse import TrainingCache

PREFIX = colorstr("evolve: ")


def evolve_folder(opt):
    """runs/evolve/<name> (or <project>/<name>): shared by every process started alike, so never incremented."""
    project = Path(getattr(opt, "project", None) or ROOT / "runs/evolve")
    if project.resolve() in ((ROOT / "runs/train").resolve(), Path("runs/train").resolve()):
        project = ROOT / "runs/evolve"
    return project / (getattr(opt, "name", None) or "exp")


def seed_entropy(opt):
    """The GA's seed: --seed when given (reproducible single-process runs), else fresh OS entropy per process."""
    seed = getattr(opt, "seed", None)
    return int(seed) if seed is not None else np.random.SeedSequence().entropy


def log_hparams(folder, run_name, hyp, results, stop=None):
    """One TensorBoard HParams run per candidate under <folder>/hparams, for the table and parallel coordinates.

    stop: with --evolve-prune, (state, epochs trained): shown as the `state` hparam and the `epochs` metric.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as e:
        LOGGER.warning(f"{PREFIX}TensorBoard HParams not logged ({e}); pip install tensorboard")
        return
    metrics = {"fitness": float(fitness(results[:4]))} | {k: float(v) for k, v in zip(METRIC_KEYS, results)}
    hyp = dict(hyp)
    if stop is not None:
        hyp["state"], metrics["epochs"] = stop[0], float(stop[1])
    writer = SummaryWriter(log_dir=str(Path(folder) / "hparams" / run_name))
    try:
        experiment, start, end = hparams(hyp, metrics)
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            writer.add_scalar(key, value)
    finally:
        writer.close()


class Evolution:
    """One process's view of a shared evolution: set-up, the next candidate, recording a result, the wrap-up."""

    def __init__(self, opt):
        if int(os.getenv("WORLD_SIZE", 1)) > 1 or getattr(opt, "local_rank", -1) not in (-1, None):
            raise ValueError("--evolve does not run under DDP (torchrun): start one process per GPU with --device i "
                             "(see the README), or use --ray")
        generations = getattr(opt, "evolve", None)
        if not isinstance(generations, int) or generations < 1:
            raise ValueError(f"--evolve takes a positive number of generations, got {generations!r}")
        self.opt = opt = copy.copy(opt)  # the caller's options stay as they were
        self.folder = evolve_folder(opt)
        self.folder.mkdir(parents=True, exist_ok=True)
        opt.noval, opt.nosave, opt.save_dir = True, True, str(self.folder)  # validate and save only the final epoch

        raw_hyp = load_hyp(getattr(opt, "hyp", None) or "hyp.scratch-low.yaml")
        try:
            self.hyp, self.meta = evolution_space(raw_hyp, bool(getattr(opt, "noautoanchor", False)))
        except ValueError as e:
            raise ValueError(f"--hyp {getattr(opt, 'hyp', None)}: {e}") from e
        if unknown_keys(self.hyp):
            LOGGER.warning(f"{PREFIX}hyps not in the meta table stay fixed: {', '.join(unknown_keys(self.hyp))}")
        self.keys = tuple(self.hyp)
        grace_min = float(getattr(opt, "evolve_claim_grace", None) or DEFAULT_GRACE_MIN)
        self.store = EvolveStore(self.folder, claim_grace_s=grace_min * 60)
        method_name = getattr(opt, "evolve_method", None) or "mutation"
        with self.store.locked():
            self.store.check_keys(self.keys)
            self.method = get_method(method_name)(self.hyp, self.meta, self.folder, opt)
            self.target = self.method.target_rows(generations)
        if method_name == "population":
            LOGGER.info(f"{PREFIX}population method: {generations} generations x {self.target // generations} "
                        f"individuals = {self.target} trainings")
        if hasattr(self.method, "describe"):
            LOGGER.info(PREFIX + self.method.describe().replace("\n", "\n" + PREFIX))
        self.judge = self._judge(opt)
        self.entropy = seed_entropy(opt)
        self.worker_dir = self.folder / "candidates" / f"{socket.gethostname()}-{os.getpid()}"
        self.trained = 0  # candidates this process finished, pruned ones included
        self.bar = None

    def _judge(self, opt):
        """The RungJudge of --evolve-prune (None without the flag), after logging the rungs."""
        if not getattr(opt, "evolve_prune", False):
            return None
        eta = int(getattr(opt, "evolve_prune_eta", 3))
        rungs = rung_epochs(getattr(opt, "evolve_prune_min_epochs", 1), eta, opt.epochs)
        if rungs:
            LOGGER.info(f"{PREFIX}pruning: candidates are validated at the rungs, epochs {', '.join(map(str, rungs))}, "
                        f"and at epoch {opt.epochs}; past each rung only the best 1/{eta} go on "
                        f"({self.store.rungs_csv})")
        else:
            LOGGER.warning(f"{PREFIX}--evolve-prune: no rung below --epochs {opt.epochs}, nothing will be pruned")
        return RungJudge(self.folder, self.keys, rungs, eta)

    def finished(self):
        """Candidates that ended in this folder, any process: rows of evolve.csv plus pruned candidates."""
        return self.store.history(self.keys).finished

    def next_candidate(self):
        """STOP when candidates that ended reach the target; WAIT while candidates in flight elsewhere fill it (their
        claims may turn stale and free their slots) or the method waits for them; else (hyp, claim)."""
        with self.store.locked():
            history = self.store.history(self.keys)
            slot = history.started
            if slot >= self.target:
                return STOP if history.finished >= self.target else WAIT
            # one stream per candidate slot: independent of train()'s global reseeding, distinct across processes
            rng = np.random.default_rng(np.random.SeedSequence(self.entropy, spawn_key=(slot,)))
            hyp = self.method.propose(history, rng)
            if hyp is None:
                return WAIT
            return hyp, self.store.claim(hyp)

    def candidate_opt(self, claim_id=None):
        """opt for one training: its outputs go to this process's own scratch folder, not the shared one."""
        opt = copy.deepcopy(self.opt)
        opt.save_dir = str(self.worker_dir)
        return opt

    def release(self, claim_id):
        """Give up a candidate whose training failed, so that another process trains it."""
        self.store.release(claim_id)

    def record(self, hyp, results, claim_id):
        """Append the row (and its rung row when pruning), log it (text and TensorBoard); returns the row's index."""
        results = tuple(float(x) for x in tuple(results)[: len(METRIC_KEYS)])
        with self.store.locked():
            index = self.store.append(results, hyp)
            if self.judge:
                self.store.append_rung(claim_id, self.opt.epochs, COMPLETED, results, hyp)
            self.store.release(claim_id)
        self.trained += 1
        LOGGER.info(summary_text(METRIC_KEYS + self.keys, results + tuple(hyp.values()), index + 1, PREFIX) + "\n")
        log_hparams(self.folder, f"gen_{index:05d}", hyp, results,
                    (COMPLETED, self.opt.epochs) if self.judge else None)
        self._advance_bar()
        return index

    def record_pruned(self, hyp, pruned, claim_id):
        """Log a candidate stopped at a rung: its row in evolve_rungs.csv and its claim were handled by the judge."""
        self.trained += 1
        LOGGER.info(f"{PREFIX}candidate {claim_id} pruned at epoch {pruned.epoch}: fitness "
                    f"{float(fitness(pruned.results[:4])):.5g} not among the best 1/{self.judge.eta} there\n")
        log_hparams(self.folder, f"pruned_{claim_id}", hyp, pruned.results, (PRUNED, pruned.epoch))
        self._advance_bar()

    def _advance_bar(self):
        if self.bar is not None:
            self.bar.n = min(self.finished(), self.target)
            self.bar.refresh()

    @contextlib.contextmanager
    def progress(self):
        """A tqdm bar over the folder's rows (every process's generations) while the block runs."""
        from tqdm import tqdm

        try:
            with tqdm(total=self.target, initial=min(self.finished(), self.target), desc="Evolving", unit="gen",
                      file=sys.stderr) as self.bar:
                yield self.bar
        finally:
            self.bar = None

    def finish(self):
        from utils.evolve.importance import report_importance
        from utils.evolve.plots import plot_evolve

        history = self.store.history(self.keys)
        if len(history):
            plot_evolve(self.store.csv)
            report_importance(self.folder, self.hyp)
        if self.judge:
            pruned_epochs = [candidate.epoch for candidate in history.pruned]
            LOGGER.info(PREFIX + spend_summary(len(history), pruned_epochs, self.opt.epochs))
        LOGGER.info(f"Hyperparameter evolution finished {history.finished} generations ({self.trained} by this "
                    "process)\n"
                    f"Results saved to {colorstr('bold', self.folder)}\n"
                    f"Usage example: $ python train.py --hyp {self.store.yaml}")


def run_local(source, device, train_fn, poll_s, cache):
    """Train the source's candidates one after another in this process until it says STOP; they share `cache`, the
    process's reuse.TrainingCache."""
    frozen = False
    try:
        with source.progress():
            while True:
                step = source.next_candidate()
                if step == STOP:
                    break
                if step == WAIT:
                    time.sleep(poll_s)
                    continue
                hyp, ticket = step
                try:
                    reporter = RungReporter(source.judge, ticket, hyp) if source.judge else None
                    outcome = train_candidate(train_fn, dict(hyp), source.candidate_opt(ticket), device, reporter,
                                              cache)
                except BaseException:
                    source.release(ticket)
                    raise
                finish_candidate(source, hyp, outcome, ticket)
                del outcome
                release_memory()
                if not frozen:  # loaded now (modules, the cache the first candidate filled) stays to the end
                    freeze_loaded_objects()
                    frozen = True
    finally:
        if frozen:
            thaw_objects()  # the caller's later collections walk everything again


def run_evolution(opt, device, train_fn, poll_s=5.0):
    """Evolve hyps as `--evolve N` asks (method, Ray, shared folder from opt), then verify with --evolve-verify K.

    Returns the candidates this process trained, pruned ones included (verification trainings are not in N).
    train_fn(hyp, opt, device, callbacks, cache) -> (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls losses), as
    train.train: callbacks is None unless --evolve-prune (then opt.val_epochs is set too, and a callback may raise
    prune.CandidatePruned); cache is the reuse.TrainingCache that the process's trainings share.
    """
    evolution = Evolution(opt)
    verify = int(getattr(opt, "evolve_verify", 0) or 0)
    if verify < 0:
        raise ValueError(f"--evolve-verify takes a number of seeds >= 0, got {verify}")
    verify_epochs = getattr(opt, "evolve_verify_epochs", None)
    if verify_epochs is not None and verify_epochs < 1:
        raise ValueError(f"--evolve-verify-epochs takes a number of epochs >= 1, got {verify_epochs}")
    if getattr(opt, "ray", False):
        def run(source):
            run_on_ray(source, device, train_fn, address=getattr(opt, "ray_address", None), poll_s=poll_s)
    else:
        cache = TrainingCache()

        def run(source):
            run_local(source, device, train_fn, poll_s, cache)

    try:
        run(evolution)
        if verify:
            verification = Verification(evolution, verify)
            run(verification)
            while verification.unfinished:  # a process died with a generation in flight: train it here, then verify
                run(evolution)
                run(verification)
            verification.finish()
        evolution.finish()
    finally:
        evolution.store.close()
    return evolution.trained
