"""Search methods by name: each proposes the next hyp dict from the shared history; the default is YOLOv5's mutation GA.

mutation and population are genetic algorithms (ga.py, population.py); gp, tpe and cmaes ask an Optuna sampler fitted
on evolve.csv (optuna_method.py, optional package optuna).

A method is an object with
    target_rows(generations) -> int            rows of evolve.csv that complete an evolution of `generations`
    propose(history, rng) -> dict | None       the next hyps (constrained), or None to wait for in-flight claims
It is built as `Method(initial_hyp, meta, folder, opt)`. The runner calls `propose` under the folder's lock, so a
method may keep its own state file in `folder`; it must draw only from `rng`.
"""

from utils.evolve.ga import constrain, mutate, select_parent, select_parents
from utils.evolve.optuna_method import CmaEsMethod, GPMethod, TPEMethod
from utils.evolve.population import PopulationMethod
from utils.evolve.space import held_meta


class MutationMethod:
    """YOLOv5's guide GA: mutate a parent picked from the best 5 rows; the very first candidate is the initial hyps.

    Parents come from evolve.csv alone, so a candidate pruned at a rung (--evolve-prune) is never one.
    From --weights, `anchors` keeps its initial value (space.held_meta), even in a parent from an older row that moved it.
    """

    def __init__(self, initial_hyp, meta, folder=None, opt=None, parent="single", top=5):
        self.initial = constrain(initial_hyp, meta)
        self.meta, self.held = held_meta(meta, opt)
        self.parent = parent
        self.top = top

    def target_rows(self, generations):
        return int(generations)

    def propose(self, history, rng):
        if len(history) == 0:
            # processes started together: one trains the initial hyps, the others mutations of them
            if not history.claims and not history.pruned:
                return dict(self.initial)
            return mutate(self.initial, self.meta, rng)
        parents, scores = select_parents(history.metrics, history.hyps, self.top)
        vector = select_parent(parents, scores, rng, self.parent)
        parent = dict(zip(history.hyp_keys, (float(v) for v in vector))) | {k: self.initial[k] for k in self.held}
        return mutate(parent, self.meta, rng)


METHODS = {"mutation": MutationMethod, "population": PopulationMethod, "gp": GPMethod, "tpe": TPEMethod,
           "cmaes": CmaEsMethod}


def get_method(name):
    """The method class for --evolve-method `name`, or a clear error listing the ones available."""
    if name not in METHODS:
        raise ValueError(f"--evolve-method {name} is not available in this version; choose one of "
                         f"{', '.join(sorted(METHODS))}")
    return METHODS[name]
