"""Model-based methods from Optuna (--evolve-method gp, tpe, cmaes): each proposal asks a sampler fitted on evolve.csv.

Every proposal builds a fresh in-memory study from the shared folder: each row of evolve.csv, whichever process wrote
it, is a completed trial (value: its fitness), each candidate pruned at a rung (--evolve-prune) a pruned trial with its
fitness at each rung as intermediate values (step: the epoch), each live claim a running trial, so processes asking at
the same moment see each other's candidates in flight. The sampler is seeded from the runner's rng and asked for one
trial through Optuna's ask-and-tell interface. evolve.csv (and evolve_rungs.csv) stay the one record: no Optuna
database, no state file, so the multi-process loop, resuming after a crash and --ray work as with the GA.
Optuna is optional, like Ray: pip install optuna (and cmaes for --evolve-method cmaes).
"""

import contextlib
import warnings

import numpy as np

from utils.evolve.ga import constrain
from utils.evolve.space import ZERO_DEFAULT_SPAN, describe_space, held_meta, search_space

STARTUP_TRIALS = 10  # rows before the GP and TPE model the fitness (fewer: the sampler draws at random)


def import_optuna(method="gp"):
    """The optuna module, or an ImportError naming the pip command; cmaes also needs the cmaes package."""
    packages = "optuna cmaes" if method == "cmaes" else "optuna"
    try:
        import optuna

        if method == "cmaes":
            import cmaes  # noqa: F401
    except ImportError as e:
        raise ImportError(f"--evolve-method {method} needs the optional package(s) {packages}: pip install {packages} "
                          "(or evolve with --evolve-method mutation)") from e
    return optuna


@contextlib.contextmanager
def quiet_optuna(optuna):
    """Optuna's INFO lines (a study per proposal) and experimental-feature warnings off while the block runs."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


class OptunaMethod:
    """Propose hyps by asking an Optuna sampler fitted on every row of evolve.csv and aware of the claims in flight.

    Subclasses name the method and build its sampler: sampler(seed) -> optuna.samplers.BaseSampler.
    """

    name = ""

    def __init__(self, initial_hyp, meta, folder=None, opt=None, zero_span=ZERO_DEFAULT_SPAN):
        self.optuna = import_optuna(self.name)
        self.initial = constrain(initial_hyp, meta)
        self.meta = meta
        self.space = search_space(self.initial, meta, zero_span, held_meta(meta, opt)[1])
        self.held = {k: v for k, v in self.initial.items() if k not in self.space}
        if not self.space:
            raise ValueError("no hyp can be searched: every key has mutation gain 0 or no room within its limits")
        self.distributions = {k: self.optuna.distributions.FloatDistribution(r.low, r.high, log=r.log)
                              for k, r in self.space.items()}

    def target_rows(self, generations):
        return int(generations)

    def describe(self):
        """The search space as the log shows it when the evolution starts."""
        return (f"{self.name} searches {len(self.space)} hyps, the others stay at their initial values:\n"
                f"{describe_space(self.space, self.initial)}")

    # trials -----------------------------------------------------------------------------------------------------
    def params(self, hyp):
        """A hyp dict as trial params: each searched key, clipped into its range (rows of other methods may lie out)."""
        return {k: r.clip(hyp.get(k, self.initial[k])) for k, r in self.space.items()}

    def comparable(self, hyp):
        """Whether a row holds the initial value of every key the space keeps fixed (a GA row may have moved one)."""
        return all(hyp.get(k, v) == v for k, v in self.held.items())

    def completed_trials(self, history):
        """One completed trial per row of evolve.csv with a finite fitness and the fixed keys' values, in row order.

        A row that moved a fixed key (another anchor count, written by the GA) is left out: the sampler cannot see
        the key, so its fitness would read as noise on the keys it does see.
        """
        create = self.optuna.trial.create_trial
        scores = history.fitness
        rows = (history.hyp_dict(i) for i in range(len(history)))
        return [create(params=self.params(hyp), distributions=self.distributions, value=float(score))
                for hyp, score in zip(rows, scores) if np.isfinite(score) and self.comparable(hyp)]

    def pruned_trials(self, history):
        """One pruned trial per candidate stopped at a rung, its fitness there and at earlier rungs by epoch."""
        create, pruned = self.optuna.trial.create_trial, self.optuna.trial.TrialState.PRUNED
        return [create(state=pruned, params=self.params(c.hyp), distributions=self.distributions,
                       intermediate_values=dict(c.steps))
                for c in history.pruned if self.comparable(c.hyp)]

    def running_trials(self, history):
        """One running trial per candidate claimed by any process: what the sampler must not propose again."""
        running = self.optuna.trial.TrialState.RUNNING
        return [self.optuna.trial.create_trial(state=running, params=self.params(hyp), distributions=self.distributions)
                for hyp in history.claims]

    def study(self, history, seed):
        """A fresh in-memory study holding the rows (completed), pruned candidates and the claims (running)."""
        study = self.optuna.create_study(direction="maximize", sampler=self.sampler(seed))
        study.add_trials(self.completed_trials(history) + self.pruned_trials(history) + self.running_trials(history))
        return study

    # proposing --------------------------------------------------------------------------------------------------
    def propose(self, history, rng):
        """The initial hyps first (the baseline row, as the GA trains it), then the sampler's next point."""
        if history.started == 0:
            return dict(self.initial)
        seed = int(rng.integers(2**31 - 1))
        with quiet_optuna(self.optuna):
            study = self.study(history, seed)
            params = study.ask(self.distributions).params
        return constrain({**self.initial, **params}, self.meta)


class GPMethod(OptunaMethod):
    """Gaussian-process Bayesian optimisation (Optuna's GPSampler, log EI; q-batch log EI over the claims in flight)."""

    name = "gp"

    def sampler(self, seed):
        return self.optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)


class TPEMethod(OptunaMethod):
    """Multivariate TPE; claims in flight are running trials it scores as the worst rows (constant liar)."""

    name = "tpe"

    def sampler(self, seed):
        return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True,
                                               constant_liar=True)


class CmaEsMethod(OptunaMethod):
    """CMA-ES from the centre of the space; the rows are replayed as its generations, in row order, on each proposal.

    CMA-ES keeps its state (mean, step size, covariance) between generations, so a fresh study cannot just hold the
    rows: each row is enqueued, asked and told in turn, which rebuilds the same state from evolve.csv alone. Claims in
    flight are running trials, pruned candidates pruned trials (which CMA-ES leaves out); processes asking at once
    still differ, since each proposal's seed does.
    """

    name = "cmaes"

    def sampler(self, seed):  # the centre is the initial value for each key searched over its whole reach, d/3 to 3d
        return self.optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)

    def study(self, history, seed):
        study = self.optuna.create_study(direction="maximize", sampler=self.sampler(seed))
        for trial in self.completed_trials(history):
            study.enqueue_trial(trial.params)
            study.tell(study.ask(self.distributions), trial.value)
        study.add_trials(self.pruned_trials(history) + self.running_trials(history))
        return study
