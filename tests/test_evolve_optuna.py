"""--evolve-method gp / tpe / cmaes: the search space, proposals from evolve.csv, claims in flight, processes, restarts."""

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from utils.evolve.ga import constrain
from utils.evolve.meta import META, evolution_space
from utils.evolve.methods import get_method
from utils.evolve.rungs import PrunedCandidate
from utils.evolve.runner import run_evolution
from utils.evolve.space import ZERO_DEFAULT_SPAN, Range, fixed_by_training, search_space
from utils.evolve.store import EvolveStore, History
from utils.files import ROOT
from utils.hyp import load_hyp

pytest.importorskip("optuna")

from test_evolve_runner import HYP_FILE, fake_train, make_opt  # noqa: E402

TESTS = str(Path(__file__).parent)


def scratch_low():
    hyp, meta = evolution_space(load_hyp(HYP_FILE))
    return constrain(hyp, meta), meta


def fake_history(method, rows, claims=(), seed=0):
    """`rows` candidates drawn at random from the method's space, scored by a smooth function of lr0 and momentum."""
    rng = np.random.default_rng(seed)
    keys = tuple(method.initial)
    hyps = []
    for _ in range(rows):
        hyp = dict(method.initial)
        hyp.update({k: float(rng.uniform(r.low, r.high)) for k, r in method.space.items()})
        hyps.append(constrain(hyp, method.meta))
    scores = [0.5 - np.log10(h["lr0"] / 0.01) ** 2 - (h["momentum"] - 0.9) ** 2 for h in hyps]
    metrics = np.array([[0, 0, s, s, 0, 0, 0] for s in scores], dtype=float).reshape(rows, 7)
    return History(keys, metrics, np.array([[h[k] for k in keys] for h in hyps]).reshape(rows, len(keys)),
                   list(claims))


def build(name):
    hyp, meta = scratch_low()
    return get_method(name)(hyp, meta, None, None)


# search space --------------------------------------------------------------------------------------------------------
def test_space_is_the_gas_reach_and_zero_defaults_span_the_low_end_of_their_limits():
    hyp, meta = scratch_low()
    space = search_space(hyp, meta)
    assert space["lr0"] == Range(0.01 / 3, 0.03, True)
    assert space["momentum"] == Range(0.6, 0.98, True)  # 0.937 / 3 and 0.937 * 3, cut to the meta limits
    assert space["mosaic"] == Range(1 / 3, 1.0, True)
    for key in ("mixup", "copy_paste", "degrees", "shear", "flipud"):
        _, low, high = META[key]
        assert hyp[key] == 0 and space[key] == Range(low, low + ZERO_DEFAULT_SPAN * (high - low), False)
    for key in ("iou_t", "fl_gamma", "perspective", "fliplr"):  # zero gain: fixed, whatever their default
        assert META[key][0] == 0 and key not in space
    assert list(space) == [k for k in hyp if k in space]


def test_space_refuses_a_span_out_of_range_and_skips_keys_without_room():
    meta = {"a": (1, 0.0, 1.0), "b": (1, 0.5, 0.5), "c": (0, 0.0, 1.0), "d": (1, None, None)}
    assert search_space({"a": 0.0, "b": 0.5, "c": 0.2, "d": 3.0}, meta, 0.5) == {"a": Range(0.0, 0.5, False)}
    with pytest.raises(ValueError, match="zero_span"):
        search_space({"a": 0.0}, meta, 0.0)


@pytest.mark.parametrize("weights, fixed", [("yolov5n.pt", ("anchors",)), ("", ()), (None, ())])
def test_anchors_stay_fixed_when_training_starts_from_weights(weights, fixed):
    opt = argparse.Namespace(weights=weights)
    assert fixed_by_training(opt) == fixed
    hyp, meta = scratch_low()
    assert ("anchors" in search_space(hyp, meta, fixed=fixed_by_training(opt))) == (not fixed)


def test_rows_that_moved_a_fixed_key_are_left_out_of_the_study():
    hyp, meta = scratch_low()
    method = get_method("gp")(hyp, meta, None, argparse.Namespace(weights="yolov5n.pt"))
    history = fake_history(method, 6)
    history.hyps[2, history.hyp_keys.index("anchors")] = 4.0  # a GA row with another anchor count
    trials = method.completed_trials(history)
    assert len(trials) == 5 and "anchors" not in trials[0].params


def test_missing_optuna_names_the_pip_command(monkeypatch):
    hyp, meta = scratch_low()
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match="pip install optuna"):
        get_method("gp")(hyp, meta, None, None)


def test_missing_cmaes_names_both_packages(monkeypatch):
    hyp, meta = scratch_low()
    monkeypatch.setitem(sys.modules, "cmaes", None)
    with pytest.raises(ImportError, match="pip install optuna cmaes"):
        get_method("cmaes")(hyp, meta, None, None)


# proposals -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gp", "tpe", "cmaes"])
def test_first_proposal_is_the_initial_hyps_then_points_of_the_space(name):
    method = build(name)
    assert method.propose(fake_history(method, 0), np.random.default_rng(0)) == method.initial
    hyp = method.propose(fake_history(method, 12), np.random.default_rng(0))
    assert hyp == constrain(hyp, method.meta) and list(hyp) == list(method.initial)
    for key, value in hyp.items():
        if key in method.space:
            assert method.space[key].low * 0.9999 <= value <= method.space[key].high * 1.0001, key
        else:
            assert value == method.initial[key], key


@pytest.mark.parametrize("name", ["gp", "tpe", "cmaes"])
def test_same_rows_and_seed_give_the_same_proposal(name):
    method = build(name)
    history = fake_history(method, 14)
    assert method.propose(history, np.random.default_rng(5)) == method.propose(history, np.random.default_rng(5))


@pytest.mark.parametrize("name", ["gp", "tpe"])
def test_a_candidate_in_flight_is_not_proposed_again(name):
    method = build(name)
    history = fake_history(method, 14)
    first = method.propose(history, np.random.default_rng(3))
    with_claim = History(history.hyp_keys, history.metrics, history.hyps, [first])
    second = method.propose(with_claim, np.random.default_rng(3))  # the same seed: only the claim differs
    assert second != first


@pytest.mark.parametrize("name", ["gp", "tpe", "cmaes"])
def test_pruned_candidates_are_pruned_trials_with_their_rung_values(name):
    method = build(name)
    history = fake_history(method, 12)
    far = {**method.initial, "lr0": method.space["lr0"].high}
    history.pruned = [PrunedCandidate(far, 1, {1: 0.05}), PrunedCandidate(method.initial, 3, {1: 0.2, 3: 0.1})]
    study = method.study(history, 0)
    state = method.optuna.trial.TrialState
    pruned = [t for t in study.trials if t.state == state.PRUNED]
    assert [t.intermediate_values for t in pruned] == [{1: 0.05}, {1: 0.2, 3: 0.1}]
    assert pruned[0].params["lr0"] == method.space["lr0"].high
    assert sum(t.state == state.COMPLETE for t in study.trials) == 12  # not as finished, not as failures
    assert not [t for t in study.trials if t.state == state.FAIL]
    hyp = method.propose(history, np.random.default_rng(0))
    assert list(hyp) == list(method.initial)


def test_rows_outside_the_space_are_clipped_into_it():
    method = build("gp")
    far = {**method.initial, "lr0": 0.09, "mixup": 0.9}
    params = method.params(far)
    assert params["lr0"] == method.space["lr0"].high and params["mixup"] == method.space["mixup"].high


# through the runner --------------------------------------------------------------------------------------------------
def test_gp_run_writes_rows_in_the_gas_format(tmp_path):
    run_evolution(make_opt(tmp_path / "ga", 3, seed=0), "cpu", fake_train)
    assert run_evolution(make_opt(tmp_path / "gp", 4, seed=0, evolve_method="gp"), "cpu", fake_train) == 4
    ga_text, gp_text = ((tmp_path / m / "exp" / "evolve.csv").read_text() for m in ("ga", "gp"))
    assert gp_text.splitlines()[0] == ga_text.splitlines()[0]
    assert all(len(f) == 20 for line in gp_text.splitlines() for f in line.split(","))
    keys, values = EvolveStore(tmp_path / "gp" / "exp").read()
    hyp, meta = scratch_low()
    assert values.shape == (4, 7 + len(hyp)) and dict(zip(keys[7:], values[0, 7:])) == hyp
    rows = [dict(zip(keys[7:], row)) for row in values[:, 7:]]
    assert all(row["iou_t"] == hyp["iou_t"] and row["fl_gamma"] == 0 for row in rows)  # zero gain: fixed
    assert any(row["mixup"] > 0 for row in rows[1:])  # a zero default the GA never moves
    assert (tmp_path / "gp" / "exp" / "hyp_evolved.yaml").exists()


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_other_samplers_run_through_the_runner(tmp_path, name):
    assert run_evolution(make_opt(tmp_path, 5, seed=1, evolve_method=name), "cpu", fake_train) == 5
    _, values = EvolveStore(tmp_path / "exp").read()
    assert len({tuple(row) for row in values[:, 7:]}) == 5


def evolve_in_subprocess(folder, generations, sleep_s, method):
    """Entry point for the process tests: evolve with `method` and a fake train that sleeps."""
    run_evolution(make_opt(folder, generations, fake_sleep=sleep_s, evolve_method=method), "cpu", fake_train)


def start_process(folder, generations, sleep_s, method="gp"):
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {TESTS!r}]; import test_evolve_optuna as t; "
            f"t.evolve_in_subprocess({str(folder)!r}, {generations}, {sleep_s}, {method!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def rows_of(folder):
    return EvolveStore(Path(folder) / "exp").read()[1]


def test_two_processes_asking_at_once_get_different_candidates(tmp_path):
    run_evolution(make_opt(tmp_path, 10, seed=0, evolve_method="gp"), "cpu", fake_train)  # past the random start
    procs = [start_process(tmp_path, 12, 3.0) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=240) == 0
    values = rows_of(tmp_path)
    assert len(values) == 12
    assert tuple(values[10, 7:]) != tuple(values[11, 7:])


def test_killed_gp_run_restarted_reaches_n(tmp_path):
    generations = 6
    victim = start_process(tmp_path, generations, 2.0)
    deadline = time.time() + 120
    while (not (tmp_path / "exp" / "evolve.csv").exists() or len(rows_of(tmp_path)) < 2) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.8)  # into the next generation's training
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    written = len(rows_of(tmp_path))
    assert 2 <= written < generations
    trained = run_evolution(make_opt(tmp_path, generations, evolve_method="gp"), "cpu", fake_train)
    assert trained == generations - written and len(rows_of(tmp_path)) == generations
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))
