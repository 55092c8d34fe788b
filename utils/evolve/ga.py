"""Genetic operators for hyp dicts: parent selection, YOLOv5's mutation, limits and rounding, crossover.

Every function that draws takes its own `rng` (np.random.Generator), never the global RNGs that train() reseeds.
"""

import numpy as np

from utils.evolve.meta import fitness

MUTATION_PROB = 0.8  # chance that a gene takes part in a mutation draw
MUTATION_SIGMA = 0.2
FACTOR_LIMITS = (0.3, 3.0)  # a mutation multiplies a gene by at most 3 and at least 0.3
SIGNIFICANT_DIGITS = 5  # what evolve.csv stores ('%20.5g'), so a row read back equals the hyp that was trained


def round_significant(value, digits=SIGNIFICANT_DIGITS):
    """Round to `digits` significant digits: 0.0123456 -> 0.012346, 123456.0 -> 123460.0."""
    return float(f"{float(value):.{digits}g}")


def constrain(hyp, meta):
    """Clip each key with limits into [low, high] and round it to 5 significant digits (a new dict)."""
    out = {}
    for key, value in hyp.items():
        _, low, high = meta[key]
        if low is not None:
            value = min(max(value, low), high)
        out[key] = round_significant(value)
    return out


def select_parents(metrics, hyps, n=5):
    """The best n = min(n, rows) rows by fitness, best first: (their hyps (n, k) array, their fitness (n,))."""
    metrics, hyps = np.asarray(metrics, dtype=float).reshape(len(hyps), -1), np.asarray(hyps, dtype=float)
    scores = fitness(metrics)
    order = np.argsort(-scores, kind="stable")[: min(n, len(scores))]
    return hyps[order], scores[order]


def select_parent(parents, scores, rng, method="single"):
    """One parent vector from the top rows: 'single' draws one with weights fitness - min + 1e-6, 'weighted' averages.

    parents: (n, k) hyps of the best rows; scores: (n,) their fitness.
    """
    parents, scores = np.asarray(parents, dtype=float), np.asarray(scores, dtype=float)
    weights = scores - scores.min() + 1e-6
    if method == "single" or len(parents) == 1:
        return parents[rng.choice(len(parents), p=weights / weights.sum())].copy()
    if method == "weighted":
        return (parents * weights[:, None]).sum(0) / weights.sum()
    raise ValueError(f"parent selection method must be 'single' or 'weighted', got {method!r}")


def mutation_factors(gains, rng, prob=MUTATION_PROB, sigma=MUTATION_SIGMA):
    """YOLOv5's multiplicative factors v = (g * (rand < mp) * randn * rand * s + 1).clip(0.3, 3), redrawn while all 1.

    Keys with gain 0 always get 1. All gains 0 is refused, since no draw could ever change anything.
    """
    gains = np.asarray(gains, dtype=float)
    if not gains.any():
        raise ValueError("every hyp has mutation gain 0: nothing can evolve")
    factors = np.ones(len(gains))
    while np.all(factors == 1):
        factors = gains * (rng.random(len(gains)) < prob) * rng.standard_normal(len(gains)) * rng.random() * sigma + 1
        factors = factors.clip(*FACTOR_LIMITS)
    return factors


def mutate(parent, meta, rng, prob=MUTATION_PROB, sigma=MUTATION_SIGMA, max_tries=1000):
    """A child of `parent` (hyp dict): multiplied by mutation_factors, clipped to limits, rounded; never the parent.

    A factor can be undone by the limits or the rounding (a gene at its limit, or 0 times anything), so the draw is
    repeated until the constrained child differs from the parent.
    """
    keys = list(parent)
    gains = [meta[k][0] for k in keys]
    base = constrain(parent, meta)
    for _ in range(max_tries):
        factors = mutation_factors(gains, rng, prob, sigma)
        child = constrain({k: parent[k] * f for k, f in zip(keys, factors)}, meta)
        if child != base:
            return child
    raise ValueError(f"no mutation of {parent} changes it within {max_tries} draws: every evolvable hyp is 0 or stuck "
                     "at a limit; start from hyps with non-zero values inside the limits")


def crossover(first, second, keys, rng):
    """Single-point crossover over `keys`: the child takes first's values before a random cut, second's from it."""
    child = dict(first)
    if len(keys) < 2:
        return child
    cut = int(rng.integers(1, len(keys)))
    for key in keys[cut:]:
        child[key] = second[key]
    return child
