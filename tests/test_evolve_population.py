"""The population method's bookkeeping: seeds, claims, evaluation by rows, breeding, best kept, resume."""

import argparse

import numpy as np
import pytest
import yaml

from utils.evolve import population
from utils.evolve.ga import round_significant
from utils.evolve.population import STATE_NAME, PopulationMethod
from utils.evolve.rungs import PrunedCandidate
from utils.evolve.store import EvolveStore, History

META = {"a": (1, 0.0, 1.0), "b": (1, 10.0, 20.0), "frozen": (0, 0.0, 5.0)}
INITIAL = {"a": 0.5, "b": 15.0, "frozen": 2.0}


def history(rows=(), claims=(), pruned=()):
    """rows: (fitness, hyp) pairs; fitness goes into mAP@0.5 and mAP@0.5:0.95 so it equals the row's fitness.

    pruned: hyps of candidates pruned at epoch 1 (--evolve-prune), each with fitness 0.99 there.
    """
    metrics = np.array([[0, 0, f, f, 0, 0, 0] for f, _ in rows], dtype=float).reshape(len(rows), 7)
    hyps = np.array([[h[k] for k in INITIAL] for _, h in rows], dtype=float).reshape(len(rows), len(INITIAL))
    return History(tuple(INITIAL), metrics, hyps, list(claims), [PrunedCandidate(h, 1, {1: 0.99}) for h in pruned])


def method(tmp_path, size=4, **kwargs):
    return PopulationMethod(INITIAL, META, tmp_path, size=size, generations=10, **kwargs)


def test_first_population_initial_then_random_within_limits(tmp_path):
    pop = method(tmp_path)
    first = pop.propose(history(), np.random.default_rng(0))
    assert first == INITIAL
    state = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    assert state["generation"] == 0 and state["start_row"] == 0 and len(state["individuals"]) == 4
    for ind in state["individuals"][1:]:
        assert 0 <= ind["a"] <= 1 and 10 <= ind["b"] <= 20 and ind["frozen"] == 2.0
        assert ind["a"] == round_significant(ind["a"])


def test_seed_folder_sets_evolvable_keys_only(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "one.yaml").write_text("a: 0.25\nb: 30.0\nfrozen: 4.0\n")
    (seeds / "two.yaml").write_text("a: 0.75\n")
    pop = method(tmp_path / "evolve", seeds_dir=seeds)
    pop.propose(history(), np.random.default_rng(0))
    individuals = yaml.safe_load((tmp_path / "evolve" / STATE_NAME).read_text())["individuals"]
    assert individuals[0] == {"a": 0.25, "b": 20.0, "frozen": 2.0}  # clipped to the limit, frozen key kept
    assert individuals[1] == {"a": 0.75, "b": 15.0, "frozen": 2.0}


def test_empty_seed_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.yaml"):
        method(tmp_path, seeds_dir=tmp_path).propose(history(), np.random.default_rng(0))


def test_claimed_and_evaluated_individuals_are_skipped(tmp_path):
    pop = method(tmp_path, size=3)
    rng = np.random.default_rng(0)
    first = pop.propose(history(), rng)
    second = pop.propose(history(claims=[first]), rng)
    third = pop.propose(history(claims=[first, second]), rng)
    assert len({tuple(x.values()) for x in (first, second, third)}) == 3
    assert pop.propose(history(claims=[first, second, third]), rng) is None  # all in flight elsewhere
    assert pop.propose(history(rows=[(0.1, first)], claims=[second, third]), rng) is None
    assert pop.propose(history(rows=[(0.1, first), (0.2, second)], claims=[]), rng) == third


def test_breeding_ranks_by_fitness_keeps_best_and_copies_parents(tmp_path):
    pop = method(tmp_path, size=4)
    rng = np.random.default_rng(1)
    pop.propose(history(), rng)
    state = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    individuals = state["individuals"]
    scores = [0.2, 0.9, 0.4, 0.1]
    rows = list(zip(scores, individuals))
    snapshot = [dict(ind) for ind in individuals]
    child = pop.propose(history(rows=rows), rng)
    new = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    assert new["generation"] == 1 and new["start_row"] == 4 and len(new["individuals"]) == 4
    assert new["best"] == {"fitness": 0.9, "hyp": individuals[1]}
    assert new["individuals"][0] == individuals[1] and child == individuals[1]  # the best comes first
    assert new["individuals"][1] == individuals[2]  # elite 2 (2 elites at this progress) is the 2nd by fitness
    assert individuals == snapshot
    for ind in new["individuals"]:
        assert ind["frozen"] == 2.0 and 0 <= ind["a"] <= 1 and 10 <= ind["b"] <= 20

    # a worse next generation: the best individual ever seen still leads the one after
    rows += [(0.05, ind) for ind in new["individuals"]]
    pop.propose(history(rows=rows), rng)
    third = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    assert third["generation"] == 2 and third["start_row"] == 8
    assert third["best"]["fitness"] == 0.9 and third["individuals"][0] == individuals[1]


def test_pruned_individuals_are_evaluated_but_never_parents_elites_or_best(tmp_path, monkeypatch):
    monkeypatch.setattr(population, "MUTATION_STEP", 0.0)  # children are crossovers: every value is a parent's
    pop = method(tmp_path, size=6)
    rng = np.random.default_rng(2)
    pop.propose(history(), rng)
    individuals = yaml.safe_load((tmp_path / STATE_NAME).read_text())["individuals"]
    completed, pruned = individuals[:3], individuals[3:]
    scores = pop.evaluated(yaml.safe_load((tmp_path / STATE_NAME).read_text()),
                           history(rows=[(0.3, completed[0])], pruned=pruned[:1]))
    assert scores[0] == pytest.approx(0.3) and scores[1:] == [None, None, -np.inf, None, None]
    pop.propose(history(rows=[(0.1, h) for h in completed], pruned=pruned), rng)
    state = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    assert state["generation"] == 1 and state["start_row"] == 3 and state["start_pruned"] == 3
    assert state["best"]["hyp"] == completed[0] and state["best"]["fitness"] == 0.1
    for child in state["individuals"]:
        for key in ("a", "b"):
            assert child[key] in {h[key] for h in completed}, (key, child)


def test_a_generation_pruned_whole_breeds_from_the_best_ever(tmp_path):
    pop = method(tmp_path, size=3)
    rng = np.random.default_rng(0)
    pop.propose(history(), rng)
    first = yaml.safe_load((tmp_path / STATE_NAME).read_text())["individuals"]
    rows = [(0.2, h) for h in first]
    pop.propose(history(rows=rows), rng)
    second = yaml.safe_load((tmp_path / STATE_NAME).read_text())["individuals"]
    pop.propose(history(rows=rows, pruned=second), rng)
    third = yaml.safe_load((tmp_path / STATE_NAME).read_text())
    assert third["generation"] == 2 and third["best"] == {"fitness": 0.2, "hyp": first[0]}
    assert third["individuals"][0] == first[0]


def test_rank_is_fitness_not_map50(tmp_path):
    pop = method(tmp_path, size=2)
    rng = np.random.default_rng(0)
    pop.propose(history(), rng)
    first, second = yaml.safe_load((tmp_path / STATE_NAME).read_text())["individuals"]
    metrics = np.array([[0, 0, 0.9, 0.1, 0, 0, 0], [0, 0, 0.3, 0.3, 0, 0, 0]])  # fitness 0.18 vs 0.30
    hyps = np.array([[first[k] for k in INITIAL], [second[k] for k in INITIAL]])
    pop.propose(History(tuple(INITIAL), metrics, hyps, []), rng)
    assert yaml.safe_load((tmp_path / STATE_NAME).read_text())["best"]["hyp"] == second


def test_rows_before_the_generation_do_not_count(tmp_path):
    old = [(0.3, INITIAL)]
    pop = method(tmp_path, size=2)
    assert pop.propose(history(rows=old), np.random.default_rng(0)) == INITIAL  # start_row = 1
    assert yaml.safe_load((tmp_path / STATE_NAME).read_text())["start_row"] == 1


def test_target_rows_is_generations_times_population(tmp_path):
    assert method(tmp_path, size=5).target_rows(7) == 35


def test_resume_from_another_population_file(tmp_path):
    pop = method(tmp_path / "old", size=3)
    pop.propose(history(), np.random.default_rng(0))
    saved = tmp_path / "old" / STATE_NAME
    resumed = method(tmp_path / "new", size=50, resume_file=saved)
    assert resumed.target_rows(2) == 6
    rows = [(0.1, INITIAL)] * 2
    assert resumed.propose(history(rows=rows), np.random.default_rng(5)) == INITIAL
    state = yaml.safe_load((tmp_path / "new" / STATE_NAME).read_text())
    assert state["start_row"] == 2 and state["individuals"] == yaml.safe_load(saved.read_text())["individuals"]


def test_resume_file_with_other_hyps_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"individuals": [{"a": 0.1}]}))
    with pytest.raises(ValueError, match="--hyp and --noautoanchor"):
        method(tmp_path, resume_file=bad).propose(history(), np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="--resume-evolve"):
        method(tmp_path, resume_file=tmp_path / "none.yaml").target_rows(3)


def test_state_is_shared_through_the_folder(tmp_path):
    store = EvolveStore(tmp_path)
    one, two = method(tmp_path, size=2), method(tmp_path, size=2)
    rng = np.random.default_rng(0)
    with store.locked():
        first = one.propose(store.history(tuple(INITIAL)), rng)
        claim = store.claim(first)
        second = two.propose(store.history(tuple(INITIAL)), rng)
    assert first != second
    store.append((0, 0, 0.2, 0.2, 0, 0, 0), first, claim)
    assert two.propose(store.history(tuple(INITIAL)), rng) == second


@pytest.mark.parametrize("weights, anchors_move", [("yolov5n.pt", False), ("", True)])
def test_anchors_are_held_from_weights_and_evolve_from_scratch(tmp_path, weights, anchors_move):
    initial, meta = {**INITIAL, "anchors": 3.0}, {**META, "anchors": (2, 2.0, 10.0)}
    pop = PopulationMethod(initial, meta, tmp_path, argparse.Namespace(weights=weights), size=6, generations=2)
    rng = np.random.default_rng(0)
    keys = tuple(initial)
    rows = []
    for _ in range(18):  # three generations: random individuals, then two bred ones
        hyp = pop.propose(History(keys, *row_arrays(rows, keys)), rng)
        rows.append((float(rng.random()), hyp))
    assert ({h["anchors"] for _, h in rows} != {3.0}) == anchors_move
    assert ("anchors" in pop.evolvable) == anchors_move


def row_arrays(rows, keys):
    metrics = np.array([[0, 0, f, f, 0, 0, 0] for f, _ in rows], dtype=float).reshape(len(rows), 7)
    return metrics, np.array([[h[k] for k in keys] for _, h in rows], dtype=float).reshape(len(rows), len(keys))
