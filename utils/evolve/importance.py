"""What the evolution learned: which hyps mattered, from the rows of evolve.csv (any method), as a table and a bar chart.

Optuna's PED-ANOVA evaluator scores, per hyp, how much the values it took in the best rows differ from the values it
took overall (a hyp the best rows agree on mattered; one they spread over as widely as all rows did did not). Every
hyp that varied is scored, on a log scale when all its values are above 0. The chart is evolve_importance.png beside
evolve.png. Optuna is optional: without it the importances are skipped with a message.
"""

import math
from pathlib import Path

import numpy as np

from utils.evolve.meta import METRIC_KEYS, fitness
from utils.evolve.store import EvolveStore
from utils.files import atomic_open
from utils.log import LOGGER, colorstr

IMAGE_NAME = "evolve_importance.png"
MIN_ROWS = 5  # fewer rows leave no top quantile to compare with the rest
TOP_ROWS = 5  # the best rows PED-ANOVA compares with all of them: at least this many, at least the best 10%
PREFIX = colorstr("evolve: ")


def target_quantile(rows):
    """The fraction of rows counted as the best ones: 10%, raised so that at least TOP_ROWS are, at most a half."""
    return min(0.5, max(0.1, TOP_ROWS / rows))


def hyp_importances(hyp_keys, hyps, scores):
    """{hyp: importance} (summing to 1, largest first) over the hyps that varied, from rows of hyps and fitness."""
    import optuna

    from utils.evolve.optuna_method import quiet_optuna

    hyps, scores = np.asarray(hyps, dtype=float), np.asarray(scores, dtype=float)
    finite = np.isfinite(scores)
    hyps, scores = hyps[finite], scores[finite]
    if len(scores) < MIN_ROWS:
        raise ValueError(f"{len(scores)} rows with a fitness: importances need at least {MIN_ROWS}")
    columns = {k: hyps[:, i] for i, k in enumerate(hyp_keys) if np.ptp(hyps[:, i]) > 0}
    if not columns:
        raise ValueError("no hyp varied across the rows")
    if np.ptp(scores) == 0:
        raise ValueError("every row has the same fitness, so no hyp can be told to matter")
    distributions = {k: optuna.distributions.FloatDistribution(float(v.min()), float(v.max()), log=bool(v.min() > 0))
                     for k, v in columns.items()}
    with quiet_optuna(optuna):
        study = optuna.create_study(direction="maximize")
        study.add_trials([optuna.trial.create_trial(params={k: float(v[i]) for k, v in columns.items()},
                                                    distributions=distributions, value=float(scores[i]))
                          for i in range(len(scores))])
        evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=target_quantile(len(scores)))
        return optuna.importance.get_param_importances(study, evaluator=evaluator)


def importance_table(importances, initial, best):
    """The printed table: each hyp that varied, its importance, its initial value and its value in the best row."""
    lines = [f"{'hyp':>16s} {'importance':>10s} {'initial':>10s} {'best row':>10s}"]
    for key, value in importances.items():
        lines.append(f"{key:>16s} {value:10.3f} {initial.get(key, math.nan):10.4g} {best[key]:10.4g}")
    return "\n".join(lines)


def plot_importance(importances, path, rows=None):
    """A horizontal bar chart of the importances, the largest on top, written atomically to `path`."""
    from matplotlib.figure import Figure

    keys = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.3 * len(keys) + 1.2), tight_layout=True)
    ax = fig.subplots()
    ax.barh(keys, [importances[k] for k in keys], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
    ax.set_title(f"Which hyps mattered{f' ({rows} rows of evolve.csv)' if rows else ''}", fontsize=10)
    ax.tick_params(labelsize=8)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=150)
    return path


def report_importance(folder, initial=None):
    """Log the importance table of `folder`'s evolve.csv and draw evolve_importance.png; returns the importances.

    Returns None, after saying why, when optuna is missing or the rows cannot rank the hyps yet.
    """
    try:
        import optuna  # noqa: F401
    except ImportError:
        LOGGER.info(f"{PREFIX}hyp importances skipped: they need the optional package optuna (pip install optuna)")
        return None
    keys, values = EvolveStore(folder).read()
    metric_count = len(METRIC_KEYS)
    hyp_keys, scores = keys[metric_count:], fitness(values[:, :metric_count]) if len(values) else np.zeros(0)
    try:
        importances = hyp_importances(hyp_keys, values[:, metric_count:] if len(values) else values, scores)
    except ValueError as e:
        LOGGER.info(f"{PREFIX}hyp importances skipped: {e}")
        return None
    best = dict(zip(hyp_keys, values[int(np.nanargmax(scores)), metric_count:]))
    table = importance_table(importances, initial or {}, best)
    LOGGER.info(f"{PREFIX}which hyps mattered ({len(scores)} rows):\n" + "\n".join(PREFIX + line
                                                                                  for line in table.splitlines()))
    path = plot_importance(importances, Path(folder) / IMAGE_NAME, len(scores))
    LOGGER.info(f"Saved {path}")
    return importances
