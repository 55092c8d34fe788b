"""Genetic operators and the meta table: selection, YOLOv5's mutation, limits, rounding, crossover."""

import numpy as np
import pytest

from utils.evolve.ga import (
    constrain,
    crossover,
    mutate,
    mutation_factors,
    round_significant,
    select_parent,
    select_parents,
)
from utils.evolve.meta import META, METRIC_KEYS, evolution_space, fitness
from utils.hyp import load_hyp


class ScriptedRng:
    """Stands in for np.random.Generator with fixed draws, to pin the mutation formula by hand."""

    def __init__(self, uniforms, normals, scale):
        self.uniforms, self.normals, self.scale = np.asarray(uniforms), np.asarray(normals), scale

    def random(self, size=None):
        return self.scale if size is None else self.uniforms[:size]

    def standard_normal(self, size):
        return self.normals[:size]


@pytest.mark.parametrize("key, entry", [
    ("lr0", (1, 1e-5, 1e-1)), ("momentum", (0.3, 0.6, 0.98)), ("iou_t", (0, 0.1, 0.7)),
    ("anchors", (2, 2.0, 10.0)), ("fl_gamma", (0, 0.0, 2.0)), ("perspective", (0, 0.0, 0.001)),
    ("fliplr", (0, 0.0, 1.0)), ("mosaic", (1, 0.0, 1.0)), ("copy_paste", (1, 0.0, 1.0)),
    ("weight_decay", (1, 0.0, 0.001)), ("lrf", (1, 0.01, 1.0)), ("degrees", (1, 0.0, 45.0)),
])
def test_meta_values_are_yolov5s(key, entry):
    assert META[key] == entry


def test_meta_covers_every_shipped_hyp():
    for name in ("low", "med", "high"):
        hyp = load_hyp(f"data/hyps/hyp.scratch-{name}.yaml")
        assert set(hyp) <= set(META), set(hyp) - set(META)


@pytest.mark.parametrize("noautoanchor, has_anchors, expected", [
    (False, False, 3.0), (False, True, 4.0), (True, False, None), (True, True, None)])
def test_anchors_added_or_dropped(noautoanchor, has_anchors, expected):
    hyp = {"lr0": 0.01, **({"anchors": 4} if has_anchors else {})}
    out, meta = evolution_space(hyp, noautoanchor)
    assert out.get("anchors") == expected and set(meta) == set(out)
    assert list(out)[0] == "lr0"


def test_non_numeric_hyp_is_refused():
    with pytest.raises(ValueError, match="lr0: 'fast'"):
        evolution_space({"lr0": "fast"})


@pytest.mark.parametrize("metrics, expected", [
    ((0.5, 0.5, 0.6, 0.4, 1, 1, 1), 0.1 * 0.6 + 0.9 * 0.4),
    ((1.0, 1.0, 0.0, 0.0, 0, 0, 0), 0.0),
    ((0, 0, 1.0, 1.0, 0, 0, 0), 1.0),
])
def test_fitness(metrics, expected):
    assert fitness(metrics) == pytest.approx(expected)
    assert len(METRIC_KEYS) == 7


@pytest.mark.parametrize("value, expected", [
    (0.0123456, 0.012346), (123456.0, 123460.0), (0.01, 0.01), (1e-5, 1e-5), (0.000987654, 0.00098765), (0.0, 0.0)])
def test_round_significant(value, expected):
    assert round_significant(value) == expected


def test_constrain_clips_and_rounds():
    meta = {"a": (1, 0.0, 1.0), "b": (1, 1e-5, 0.1), "c": (0, None, None)}
    assert constrain({"a": 1.7, "b": 1e-7, "c": 123.456789}, meta) == {"a": 1.0, "b": 1e-5, "c": 123.46}


@pytest.mark.parametrize("gains, uniforms, normals, scale, expected", [
    # v = g * (u < 0.8) * n * r * 0.2 + 1, clipped to [0.3, 3]
    ([1, 1], [0.5, 0.9], [1.0, 1.0], 0.5, [1.1, 1.0]),
    ([0.3, 2], [0.1, 0.1], [-1.0, 2.0], 1.0, [0.94, 1.8]),
    ([2, 0], [0.1, 0.1], [10.0, 10.0], 1.0, [3.0, 1.0]),
    ([2, 1], [0.1, 0.1], [-10.0, 0.5], 1.0, [0.3, 1.1]),
])
def test_mutation_factors_by_hand(gains, uniforms, normals, scale, expected):
    rng = ScriptedRng(uniforms, normals, scale)
    assert mutation_factors(gains, rng) == pytest.approx(expected)


def test_mutation_redraws_until_a_gene_changes():
    class Sequence:
        def __init__(self):
            self.calls = 0

        def random(self, size=None):
            if size is None:
                return 0.5
            self.calls += 1
            return np.full(size, 0.9 if self.calls < 3 else 0.1)  # first two draws select no gene

        def standard_normal(self, size):
            return np.ones(size)

    rng = Sequence()
    assert mutation_factors([1, 1], rng) == pytest.approx([1.1, 1.1])
    assert rng.calls == 3


def test_mutation_with_all_gains_zero_is_refused():
    with pytest.raises(ValueError, match="gain 0"):
        mutation_factors([0, 0], np.random.default_rng(0))


def test_mutate_pinned_by_hand():
    meta = {"lr0": (1, 1e-5, 1e-1), "iou_t": (0, 0.1, 0.7)}
    child = mutate({"lr0": 0.01, "iou_t": 0.2}, meta, ScriptedRng([0.5, 0.5], [1.0, 1.0], 0.5))
    assert child == {"lr0": 0.011, "iou_t": 0.2}


@pytest.mark.parametrize("seed", range(20))
def test_mutate_respects_gains_limits_rounding_and_never_repeats(seed):
    rng = np.random.default_rng(seed)
    parent, meta = evolution_space(load_hyp("data/hyps/hyp.scratch-low.yaml"))
    parent["lr0"] = 0.1  # at its upper limit: a factor > 1 is clipped away
    for _ in range(10):
        child = mutate(parent, meta, rng)
        assert child != constrain(parent, meta)
        for key, value in child.items():
            gain, low, high = meta[key]
            assert low <= value <= high, key
            assert value == round_significant(value), key
            if gain == 0 or parent[key] == 0:  # frozen, or 0 that a multiplication cannot move
                assert value == parent[key], key
            else:
                assert 0.3 * parent[key] - 1e-12 <= value or value == low, key
                assert value <= 3.0 * parent[key] + 1e-12 or value == high, key


def test_mutate_gives_up_when_nothing_can_move():
    meta = {"a": (1, 0.0, 1.0), "b": (0, 0.0, 1.0)}
    with pytest.raises(ValueError, match="stuck"):
        mutate({"a": 0.0, "b": 0.5}, meta, np.random.default_rng(0), max_tries=20)


def crafted_rows():
    # metrics rows (P, R, mAP50, mAP, box, obj, cls); fitness = 0.1 * mAP50 + 0.9 * mAP
    metrics = np.array([
        [0.9, 0.9, 0.90, 0.10, 0, 0, 0],  # 0.18: best mAP@0.5, poor fitness
        [0.1, 0.1, 0.50, 0.50, 0, 0, 0],  # 0.50
        [0.1, 0.1, 0.30, 0.30, 0, 0, 0],  # 0.30
        [0.1, 0.1, 0.60, 0.60, 0, 0, 0],  # 0.60
        [0.1, 0.1, 0.20, 0.20, 0, 0, 0],  # 0.20
        [0.1, 0.1, 0.40, 0.40, 0, 0, 0],  # 0.40
        [0.1, 0.1, 0.10, 0.10, 0, 0, 0],  # 0.10
    ])
    hyps = np.arange(7.0)[:, None] * np.ones((1, 2))  # row i has hyps (i, i)
    return metrics, hyps


def test_select_parents_takes_best_five_by_fitness():
    parents, scores = select_parents(*crafted_rows())
    assert parents[:, 0].tolist() == [3, 1, 5, 2, 4]
    assert scores == pytest.approx([0.6, 0.5, 0.4, 0.3, 0.2])


def test_select_parents_with_fewer_rows():
    metrics, hyps = crafted_rows()
    parents, scores = select_parents(metrics[:2], hyps[:2])
    assert parents[:, 0].tolist() == [1, 0] and len(scores) == 2


def test_single_parent_weights():
    # weights = fitness - min + 1e-6 -> (0.2, 0.1, ~0): drawn about 2/3, 1/3, never
    parents, scores = np.array([[1.0], [2.0], [3.0]]), np.array([0.3, 0.2, 0.1])
    rng = np.random.default_rng(0)
    draws = np.array([select_parent(parents, scores, rng)[0] for _ in range(3000)])
    assert (draws == 1).mean() == pytest.approx(2 / 3, abs=0.03)
    assert (draws == 2).mean() == pytest.approx(1 / 3, abs=0.03)
    assert (draws == 3).sum() == 0


def test_weighted_parent_is_the_weighted_mean():
    parents, scores = np.array([[1.0, 10.0], [4.0, 40.0], [0.0, 0.0]]), np.array([0.3, 0.2, 0.1])
    expected = (0.2 * np.array([1.0, 10.0]) + 0.1 * np.array([4.0, 40.0])) / 0.3  # the third weighs 1e-6
    assert select_parent(parents, scores, np.random.default_rng(0), "weighted") == pytest.approx(expected, rel=1e-4)


def test_select_parent_copies_and_checks_method():
    parents = np.array([[1.0, 2.0]])
    chosen = select_parent(parents, np.array([0.5]), np.random.default_rng(0))
    chosen[0] = 99
    assert parents[0, 0] == 1.0
    with pytest.raises(ValueError, match="single"):
        select_parent(np.ones((2, 1)), np.ones(2), np.random.default_rng(0), "best")


def test_crossover_single_point():
    keys = ["a", "b", "c", "d"]
    first, second = dict.fromkeys(keys, 1.0) | {"z": 5.0}, dict.fromkeys(keys, 2.0) | {"z": 6.0}
    for seed in range(20):
        child = crossover(first, second, keys, np.random.default_rng(seed))
        values = [child[k] for k in keys]
        cut = values.index(2.0)
        assert 1 <= cut <= 3 and values == [1.0] * cut + [2.0] * (4 - cut)
        assert child["z"] == 5.0  # keys outside the crossover come from the first parent
    assert first["a"] == 1.0 and second["a"] == 2.0
