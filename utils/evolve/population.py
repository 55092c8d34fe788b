"""The population GA (--evolve-method population): whole generations of individuals, bred by tournament and crossover.

The state (generation, its individuals, the best ever) lives in evolve_population.yaml in the evolve folder, so every
process, a restart and --resume-evolve continue the same population. An individual counts as evaluated once a row with
exactly its hyps appears in evolve.csv after its generation began; N generations cost N x population-size trainings.
With --evolve-prune an individual pruned at a rung counts as evaluated too, ranked below every completed one: it is
never an elite, a tournament's winner or the best.
Compared with the population GA in current YOLOv5 code: individuals are ranked by fitness (0.1 mAP@0.5 + 0.9
mAP@0.5:0.95), children are built from copies of their parents, mutation steps scale with each key's range, the best
individual ever seen is kept in every generation, and only keys with a non-zero meta gain evolve (`anchors` does not
when training from --weights: space.held_meta).
"""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from utils.evolve.ga import constrain, crossover
from utils.evolve.space import held_meta
from utils.files import atomic_write_text
from utils.log import LOGGER

STATE_NAME = "evolve_population.yaml"
POPULATION_SIZE = 50
ELITE_RANGE = (2, 5)  # elite size grows over the run: explore first, keep more of the best later
TOURNAMENT_RANGE = (2, 10)
MUTATION_RATE_RANGE = (0.5, 0.01)  # per-key mutation probability, first generation to last
CROSSOVER_RATE_RANGE = (1.0, 0.5)
MUTATION_STEP = 0.1  # standard deviation of a mutation, as a fraction of the key's (high - low)


def _between(bounds, progress):
    start, end = bounds
    return start + (end - start) * progress


class PopulationMethod:
    """Propose the next untrained, unclaimed individual of the current generation; breed the next when all are done."""

    def __init__(self, initial_hyp, meta, folder, opt=None, size=None, seeds_dir=None, resume_file=None,
                 generations=None):
        self.initial = constrain(initial_hyp, meta)
        self.meta, _ = held_meta(meta, opt)  # from --weights, anchors is not evolvable
        self.keys = list(self.initial)
        self.evolvable = [k for k in self.keys if self.meta[k][0] > 0]
        self.state_file = Path(folder) / STATE_NAME
        self.size = int(size or getattr(opt, "evolve_population_size", None) or POPULATION_SIZE)
        self.seeds_dir = seeds_dir or getattr(opt, "evolve_population", None)
        self.resume_file = resume_file or getattr(opt, "resume_evolve", None)
        self.generations = int(generations or getattr(opt, "evolve", None) or 300)
        if self.size < 2:
            raise ValueError(f"the population needs at least 2 individuals, got {self.size}")

    def target_rows(self, generations):
        self.generations = int(generations)
        return self.generations * self.state_size()

    def state_size(self):
        if self.state_file.exists():
            return len(self._read_state(self.state_file)["individuals"])
        if self.resume_file:
            return len(self._read_state(self.resume_file)["individuals"])
        return self.size

    # state ------------------------------------------------------------------------------------------------------
    def _read_state(self, path):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"population file {path} not found: pass an evolve_population.yaml to "
                                    "--resume-evolve, or leave the flag out to start a new population")
        state = yaml.safe_load(path.read_text()) or {}
        if not isinstance(state.get("individuals"), list) or not state["individuals"]:
            raise ValueError(f"{path} has no 'individuals' list: it is not an evolve_population.yaml")
        for individual in state["individuals"]:
            if set(individual) != set(self.keys):
                raise ValueError(f"{path} holds individuals with hyps {sorted(individual)}, this evolution has "
                                 f"{sorted(self.keys)}: use the --hyp and --noautoanchor it was made with")
        state["individuals"] = [{k: float(ind[k]) for k in self.keys} for ind in state["individuals"]]
        return state

    def _save(self, state):
        atomic_write_text(self.state_file, yaml.safe_dump(state, sort_keys=False))

    def _seed_hyps(self):
        """Hyp dicts from the YAML files of --evolve-population DIR (their evolvable keys), else the initial hyps."""
        if not self.seeds_dir:
            return [dict(self.initial)]
        folder = Path(self.seeds_dir)
        files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        if not files:
            raise FileNotFoundError(f"--evolve-population {folder}: no *.yaml hyp files there; put seed hyp YAMLs in "
                                    "it or leave the flag out")
        seeds = []
        for file in files[: self.size]:
            loaded = yaml.safe_load(file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{file} is not a hyp YAML (a mapping of hyp names to numbers)")
            seed = dict(self.initial)  # frozen (gain 0) keys always keep the initial value
            seed.update({k: float(loaded[k]) for k in self.evolvable if k in loaded})
            seeds.append(constrain(seed, self.meta))
        return seeds

    def _random_hyp(self, rng):
        hyp = dict(self.initial)
        for key in self.evolvable:
            _, low, high = self.meta[key]
            hyp[key] = float(rng.uniform(low, high))
        return constrain(hyp, self.meta)

    def _load_or_create(self, history, rng):
        if self.state_file.exists():
            return self._read_state(self.state_file)
        if self.resume_file:
            state = self._read_state(self.resume_file)
            # its individuals are (re)trained into this folder's evolve.csv
            state.update(start_row=len(history), start_pruned=len(history.pruned))
            LOGGER.info(f"evolve: population of {len(state['individuals'])} resumed from {self.resume_file}")
        else:
            individuals = self._seed_hyps()
            individuals += [self._random_hyp(rng) for _ in range(self.size - len(individuals))]
            state = {"generation": 0, "start_row": len(history), "start_pruned": len(history.pruned), "best": None,
                     "individuals": individuals}
        self._save(state)
        return state

    # bookkeeping ------------------------------------------------------------------------------------------------
    def _key(self, hyp):
        return tuple(float(hyp[k]) for k in self.keys)

    def evaluated(self, state, history):
        """Fitness per individual of the current generation: None where nothing holds it yet, -inf where pruned."""
        start = int(state.get("start_row", 0))
        available = Counter()
        scores = {}
        for index in range(start, len(history)):
            key = self._key(history.hyp_dict(index))
            available[key] += 1
            scores.setdefault(key, []).append(float(history.fitness[index]))
        pruned = Counter(self._key(c.hyp) for c in history.pruned[int(state.get("start_pruned", 0)):])
        result = []
        for individual in state["individuals"]:
            key = self._key(individual)
            if available[key] > 0:
                available[key] -= 1
                result.append(scores[key][-available[key] - 1])
            elif pruned[key] > 0:
                pruned[key] -= 1
                result.append(-math.inf)
            else:
                result.append(None)
        return result

    def propose(self, history, rng):
        state = self._load_or_create(history, rng)
        scores = self.evaluated(state, history)
        if all(s is not None for s in scores):
            state = self._breed(state, scores, history, rng)
            self._save(state)
            scores = [None] * len(state["individuals"])
        in_flight = Counter(self._key(hyp) for hyp in history.claims)
        for individual, score in zip(state["individuals"], scores):
            if score is not None:
                continue
            key = self._key(individual)
            if in_flight[key] > 0:
                in_flight[key] -= 1
                continue
            return dict(individual)
        return None  # every remaining individual is being trained elsewhere

    # breeding ---------------------------------------------------------------------------------------------------
    def _breed(self, state, scores, history, rng):
        """The next generation from a fully evaluated one: best-ever + elites, then tournament/crossover/mutation.

        Only completed individuals (finite scores) are elites, tournament entrants or the best; a generation pruned
        whole breeds from the best ever, else from the initial hyps.
        """
        individuals = [dict(ind) for ind in state["individuals"]]
        size = len(individuals)
        generation = int(state.get("generation", 0)) + 1
        progress = min(1.0, generation / max(self.generations, 1))
        completed = [i for i in np.argsort(-np.asarray(scores), kind="stable") if np.isfinite(scores[i])]
        best = state.get("best")
        if completed and (best is None or scores[completed[0]] > best["fitness"]):
            best = {"fitness": float(scores[completed[0]]), "hyp": dict(individuals[completed[0]])}

        elite_count = min(size, int(round(_between(ELITE_RANGE, progress))))
        children = [dict(best["hyp"] if best else self.initial)]
        for i in completed:
            if len(children) >= elite_count:
                break
            if individuals[i] not in children:
                children.append(dict(individuals[i]))

        tournament = max(2, min(size, int(round(_between(TOURNAMENT_RANGE, progress)))))
        mutation_rate = _between(MUTATION_RATE_RANGE, progress)
        crossover_rate = _between(CROSSOVER_RATE_RANGE, progress)
        pool = sorted(completed)

        def pick():
            if not pool:
                return dict(children[0])
            entrants = rng.choice(pool, size=min(tournament, len(pool)), replace=False)
            return dict(individuals[max(entrants, key=lambda i: scores[i])])

        while len(children) < size:
            first, second = pick(), pick()
            child = crossover(first, second, self.evolvable, rng) if rng.random() < crossover_rate else first
            for key in self.evolvable:
                if rng.random() < mutation_rate:
                    _, low, high = self.meta[key]
                    child[key] += rng.normal(0.0, MUTATION_STEP * (high - low))
            children.append(constrain(child, self.meta))
        best_text = f"{best['fitness']:.5g}" if best else "none yet (every individual pruned)"
        LOGGER.info(f"evolve: population generation {generation}: best fitness {best_text}, "
                    f"{elite_count} elites, mutation rate {mutation_rate:.3g}")
        return {"generation": generation, "start_row": len(history), "start_pruned": len(history.pruned),
                "best": best, "individuals": children}

