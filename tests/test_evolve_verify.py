"""--evolve-verify K: which rows are retrained, on which seeds and epochs, the verdict on seeds that did not pick,
hyp_evolved.yaml, sharing and resuming."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_evolve_runner import fake_train, initial_hyp, make_opt

from utils.evolve.meta import fitness
from utils.evolve.runner import run_evolution
from utils.evolve.store import VERIFY_KEYS, EvolveStore, History
from utils.evolve.verify import (
    INITIAL_ROW,
    best_verdict,
    judge,
    pending_jobs,
    pick_candidates,
    recorded,
    verdict_table,
    verdicts,
    verified_yaml_text,
    verify_seeds,
)
from utils.files import ROOT

TESTS = str(Path(__file__).parent)


def lucky_train(hyp, opt, device, callbacks=None, cache=None):
    """fake_train, its fitness turned upside down on the search seed (0): the reported ranking misleads, seeds 1+ tell."""
    p, r, map50, score, *losses = fake_train(hyp, opt, device)
    if opt.seed == 0:
        map50, score = 1.1 - map50, 1.0 - score
    return (p, r, map50, score, *losses)


def history(rows, keys=("a", "b")):
    """rows: (fitness, hyp) pairs; fitness goes into both mAPs, so it equals the row's fitness."""
    metrics = np.array([[0, 0, f, f, 0, 0, 0] for f, _ in rows], dtype=float).reshape(len(rows), 7)
    return History(keys, metrics, np.array([[h[k] for k in keys] for _, h in rows], dtype=float))


def expected_jobs(folder, k, epochs=1):
    """How many trainings a finished verification of `folder` made: 4K to pick, 2K more unless the pick is the initial."""
    store = EvolveStore(folder)
    candidates = pick_candidates(store.history(tuple(initial_hyp())), initial_hyp())
    pick_seeds, report_seeds = verify_seeds(0, k)
    verdict = judge(candidates, recorded(store.read_verify(), epochs), pick_seeds, report_seeds)
    assert verdict is not None
    return len(candidates) * k + (0 if verdict.report is None else 2 * k)


@pytest.mark.parametrize("search_seed, k, expected", [
    (0, 3, ((1, 2, 3), (4, 5, 6))), (7, 2, ((8, 9), (10, 11))), (None, 1, ((1,), (2,)))])
def test_pick_seeds_then_report_seeds_follow_the_search_seed(search_seed, k, expected):
    assert verify_seeds(search_seed, k) == expected


def test_candidates_are_the_initial_hyps_and_the_best_distinct_rows():
    initial = {"a": 1.0, "b": 2.0}
    rows = [(0.3, initial), (0.5, {"a": 2.0, "b": 2.0}), (0.5, {"a": 2.0, "b": 2.0}), (0.4, {"a": 3.0, "b": 2.0}),
            (0.9, initial), (0.1, {"a": 4.0, "b": 2.0}), (0.2, {"a": 5.0, "b": 2.0})]
    picked = pick_candidates(history(rows), initial)
    assert [c.row for c in picked] == [0, 1, 3, 6]  # the initial's first row; duplicates and the initial skipped
    assert picked[0].reported == pytest.approx(0.3) and picked[1].hyp == {"a": 2.0, "b": 2.0}
    alone = pick_candidates(history(rows[1:2]), initial)
    assert [c.row for c in alone] == [INITIAL_ROW, 0] and math.isnan(alone[0].reported)


def test_verdict_pairs_gains_by_seed_and_picks_the_best_mean():
    initial = {"a": 1.0, "b": 2.0}
    picked = pick_candidates(history([(0.3, initial), (0.6, {"a": 2.0, "b": 2.0}), (0.4, {"a": 3.0, "b": 2.0})]),
                             initial)
    scores = {(0, 1): 0.30, (0, 2): 0.20, (1, 1): 0.31, (1, 2): 0.23, (2, 1): 0.35, (2, 2): 0.21}
    results = {k: (0, 0, v, v, 0, 0, 0) for k, v in scores.items()}
    assert verdicts(picked, {k: v for k, v in results.items() if k != (2, 2)}, (1, 2)) is None
    rows = verdicts(picked, results, (1, 2))
    assert rows[1].gains == pytest.approx((0.01, 0.03)) and rows[1].gain == pytest.approx(0.02)
    assert rows[1].gain_sd == pytest.approx(np.std([0.01, 0.03], ddof=1))
    assert rows[2].mean == pytest.approx(0.28) and best_verdict(rows) is rows[2]
    tie = verdicts(picked[:2], {**results, (1, 1): results[0, 1], (1, 2): results[0, 2]}, (1, 2))
    assert best_verdict(tie) is tie[0]  # a tie keeps the initial hyps


def results_of(scores):
    """{(row, seed): 7 results} whose fitness is the given score (both mAPs set to it)."""
    return {key: (0, 0, v, v, 0, 0, 0) for key, v in scores.items()}


def test_report_jobs_come_only_once_the_pick_is_known():
    initial = {"a": 1.0, "b": 2.0}
    picked = pick_candidates(history([(0.3, initial), (0.6, {"a": 2.0, "b": 2.0})]), initial)
    jobs, more = pending_jobs(picked, {}, (1, 2), (3, 4))
    assert [(c.row, s) for c, s in jobs] == [(0, 1), (1, 1), (0, 2), (1, 2)] and more
    row_wins = results_of({(0, 1): 0.30, (0, 2): 0.20, (1, 1): 0.31, (1, 2): 0.23})
    jobs, more = pending_jobs(picked, row_wins, (1, 2), (3, 4))
    assert [(c.row, s) for c, s in jobs] == [(0, 3), (1, 3), (0, 4), (1, 4)] and not more
    initial_wins = {**row_wins, **results_of({(1, 1): 0.29, (1, 2): 0.20})}
    assert pending_jobs(picked, initial_wins, (1, 2), (3, 4)) == ([], False)  # nothing to report on
    verdict = judge(picked, initial_wins, (1, 2), (3, 4))
    assert verdict.report is None and verdict.kept is picked[0] and not verdict.improved


@pytest.mark.parametrize("report_scores, improved, kept_row", [
    ({(0, 3): 0.30, (0, 4): 0.30, (1, 3): 0.28, (1, 4): 0.29}, False, 0),  # picked on luck: worse on fresh seeds
    ({(0, 3): 0.30, (0, 4): 0.30, (1, 3): 0.31, (1, 4): 0.30}, True, 1),
])
def test_the_gain_is_reported_on_seeds_that_did_not_pick_the_row(report_scores, improved, kept_row):
    initial = {"a": 1.0, "b": 2.0}
    picked = pick_candidates(history([(0.3, initial), (0.6, {"a": 2.0, "b": 2.0}), (0.4, {"a": 3.0, "b": 2.0})]),
                             initial)
    pick_scores = {(0, 1): 0.30, (0, 2): 0.30, (1, 1): 0.34, (1, 2): 0.36, (2, 1): 0.31, (2, 2): 0.30}
    results = results_of({**pick_scores, **report_scores})
    assert judge(picked, results_of(pick_scores), (1, 2), (3, 4)) is None  # the report jobs are still to run
    verdict = judge(picked, results, (1, 2), (3, 4))
    assert verdict.pick.candidate.row == 1 and verdict.pick.gain == pytest.approx(0.05)  # large on the pick seeds
    expected_gain = np.mean([report_scores[1, s] - report_scores[0, s] for s in (3, 4)])
    assert verdict.report.gain == pytest.approx(expected_gain) and verdict.improved == improved
    assert verdict.kept is picked[kept_row]
    table = verdict_table(verdict, (1, 2), (3, 4), 10)
    assert "for 10 epochs on pick seeds 1, 2" in table and "report seeds 3, 4, not used to pick" in table
    assert ("did NOT beat the initial hyps" in table) == (not improved)
    text = verified_yaml_text(verdict, (1, 2), (3, 4), 10, 2)
    assert yaml.safe_load(text) == picked[kept_row].hyp
    assert "picked on seeds 1, 2" in text and "on report seeds 3, 4, not used to pick" in text
    assert f"gain over the initial hyps is {expected_gain:+.5f}" in text
    assert ("# Best generation: initial hyps (the pick, row 1, did not beat them" in text) == (not improved)


def test_verify_file_format_and_torn_tail(tmp_path):
    store = EvolveStore(tmp_path)
    store.append_verify(12, 3, 10, (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))
    with open(store.verify_csv, "a") as f:
        f.write("   7,   1")  # a writer killed mid-row
    store.append_verify(123456, 4, 1, (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))
    lines = store.verify_csv.read_text().splitlines()
    assert [k.strip() for k in lines[0].split(",")] == list(VERIFY_KEYS) and len(lines) == 3
    assert all(len(f) == 20 for line in lines for f in line.split(","))
    values = store.read_verify()
    assert values[:, :3].tolist() == [[12, 3, 10], [123456, 4, 1]]
    assert values[0, 3] == pytest.approx(0.1 * 0.6 + 0.9 * 0.3)
    assert recorded(values, 10) == {(12, 3): pytest.approx((0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))}
    assert list(recorded(values, 1)) == [(123456, 4)]  # a job at other epochs never mixes in


def test_a_verify_file_without_epochs_is_refused_clearly(tmp_path):
    store = EvolveStore(tmp_path)
    old_keys = tuple(k for k in VERIFY_KEYS if k != "epochs")
    store.verify_csv.write_text(("%20s," * len(old_keys) % old_keys).rstrip(",") + "\n")
    with pytest.raises(ValueError, match="lacks 'epochs'\\): move it aside"):
        store.read_verify()
    with pytest.raises(ValueError, match="move it aside"):
        store.append_verify(0, 1, 1, (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))


def test_k_zero_keeps_yolov5s_behaviour(tmp_path):
    run_evolution(make_opt(tmp_path, 3, seed=0, evolve_verify=0), "cpu", fake_train)
    assert not (tmp_path / "exp" / "evolve_verify.csv").exists()


def test_verdict_on_a_finished_folder_reports_on_seeds_that_did_not_pick(tmp_path):
    """The initial hyps score best, but 0.05 lower on the pick seeds 1-3: a row is picked, and the report seeds 4-6
    show it worse than the initial hyps, so hyp_evolved.yaml keeps them and says why."""
    folder = tmp_path / "exp"
    run_evolution(make_opt(tmp_path, 8, seed=0), "cpu", lucky_train)
    rows_before = EvolveStore(folder).read()[1]
    calls = []

    def unlucky_initial_train(hyp, opt, device, callbacks=None, cache=None):
        calls.append(opt.seed)
        p, r, map50, score, *losses = lucky_train(hyp, opt, device)
        if opt.seed in (1, 2, 3) and hyp == initial_hyp():
            map50, score = map50 - 0.05, score - 0.05
        return (p, r, map50, score, *losses)

    assert run_evolution(make_opt(tmp_path, 8, seed=0, evolve_verify=3), "cpu", unlucky_initial_train) == 0
    assert np.array_equal(EvolveStore(folder).read()[1], rows_before)  # verified without evolving again
    assert sorted(calls) == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 2 + [5] * 2 + [6] * 2
    values = EvolveStore(folder).read_verify()
    assert len(values) == 18 and set(values[:, 1]) == {1, 2, 3, 4, 5, 6} and set(values[:, 2]) == {1}

    history = EvolveStore(folder).history(tuple(initial_hyp()))
    picked = pick_candidates(history, initial_hyp())
    true_scores = [float(fitness(fake_train(c.hyp, make_opt(tmp_path, 1, seed=1), "cpu"))) for c in picked]
    assert picked[0].row == 0 and len(picked) == 4 and int(np.argmax(true_scores)) == 0
    best_row = picked[1 + int(np.argmax(true_scores[1:]))].row
    assert {int(r) for r, s in values[:, :2] if s > 3} == {0, best_row}  # the pick and the initial hyps only
    text = (folder / "hyp_evolved.yaml").read_text()
    assert yaml.safe_load(text) == initial_hyp()
    assert text.splitlines()[1] == (f"# Best generation: initial hyps (the pick, row {best_row}, did not beat them on "
                                    "the report seeds)")
    gain = true_scores[picked.index(next(c for c in picked if c.row == best_row))] - true_scores[0]
    assert "picked on seeds 1, 2, 3" in text and f"on report seeds 4, 5, 6, not used to pick, its gain over the " \
        f"initial hyps is {gain:+.5f}" in text

    calls.clear()
    assert run_evolution(make_opt(tmp_path, 8, seed=0, evolve_verify=3), "cpu", unlucky_initial_train) == 0
    assert calls == [] and (folder / "hyp_evolved.yaml").read_text() == text  # all done: the verdict again


def test_verification_trains_at_its_own_epochs_never_pruned_and_keeps_lengths_apart(tmp_path):
    run_evolution(make_opt(tmp_path, 4, seed=0, epochs=1), "cpu", fake_train)
    seen = []

    def spy_train(hyp, opt, device, callbacks=None, cache=None):
        seen.append((opt.epochs, opt.evolve_prune, opt.seed))
        return fake_train(hyp, opt, device)

    run_evolution(make_opt(tmp_path, 4, seed=0, epochs=1, evolve_verify=1, evolve_verify_epochs=10), "cpu", spy_train)
    assert seen and all(epochs == 10 and prune is False for epochs, prune, _ in seen)
    store = EvolveStore(tmp_path / "exp")
    assert set(store.read_verify()[:, 2]) == {10} and len(seen) == expected_jobs(tmp_path / "exp", 1, epochs=10)
    first = len(seen)
    seen.clear()
    run_evolution(make_opt(tmp_path, 4, seed=0, epochs=1, evolve_verify=1, evolve_verify_epochs=3), "cpu", spy_train)
    assert {epochs for epochs, _, _ in seen} == {3} and len(seen) == expected_jobs(tmp_path / "exp", 1, epochs=3)
    assert len(store.read_verify()) == first + len(seen)  # the 10-epoch jobs are kept, not reused at 3 epochs
    assert "Verified for 3 epochs" in store.yaml.read_text()
    with pytest.raises(ValueError, match="--evolve-verify-epochs takes a number of epochs >= 1"):
        run_evolution(make_opt(tmp_path, 4, seed=0, evolve_verify=1, evolve_verify_epochs=0), "cpu", spy_train)


def verify_in_subprocess(folder, generations, k, sleep_s):
    """Entry point for the process tests: evolve and verify with a fake train that sleeps while verifying."""
    opt = make_opt(folder, generations, seed=0, evolve_verify=k)

    def slow_train(hyp, o, device, callbacks=None, cache=None):
        time.sleep(sleep_s if o.seed else 0.0)
        return fake_train(hyp, o, device)

    run_evolution(opt, "cpu", slow_train)


def start_process(folder, generations, k, sleep_s):
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {TESTS!r}]; import test_evolve_verify as t; "
            f"t.verify_in_subprocess({str(folder)!r}, {generations}, {k}, {sleep_s})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_two_processes_share_the_verification_jobs(tmp_path):
    procs = [start_process(tmp_path, 4, 2, 0.5) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=240) == 0
    values = EvolveStore(tmp_path / "exp").read_verify()
    jobs = [(int(r), int(s)) for r, s in values[:, :2]]
    assert len(jobs) == len(set(jobs)) == expected_jobs(tmp_path / "exp", 2)
    assert "Verified for 1 epochs" in (tmp_path / "exp" / "hyp_evolved.yaml").read_text()
    assert not list((tmp_path / "exp" / ".evolve_verify_claims").glob("*.json"))


def test_killed_verification_restarts_where_it_stopped(tmp_path):
    store = EvolveStore(tmp_path / "exp")
    victim = start_process(tmp_path, 4, 3, 1.0)
    deadline = time.time() + 120
    while len(store.read_verify()) < 3 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.4)  # into the next verification training
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = len(store.read_verify())
    assert 3 <= done < 12 and list((tmp_path / "exp" / ".evolve_verify_claims").glob("*.json"))
    calls = []
    run_evolution(make_opt(tmp_path, 4, seed=0, evolve_verify=3), "cpu",
                  lambda hyp, o, d, *rest: calls.append(o.seed) or fake_train(hyp, o, d))
    jobs = [(int(r), int(s)) for r, s in store.read_verify()[:, :2]]
    total = expected_jobs(tmp_path / "exp", 3)
    assert len(calls) == total - done and len(jobs) == len(set(jobs)) == total


def test_a_generation_lost_after_this_process_stopped_is_trained_before_verifying(tmp_path):
    run_evolution(make_opt(tmp_path, 3, seed=0), "cpu", fake_train)
    code = ("import json, sys, time; sys.path.insert(0, sys.argv[1]); from utils.evolve.store import EvolveStore; "
            "EvolveStore(sys.argv[2]).claim(json.loads(sys.argv[3])); print('claimed', flush=True); time.sleep(1.5)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(tmp_path / "exp"), json.dumps(initial_hyp())],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "claimed"  # a generation in flight in a process that then dies
    store = EvolveStore(tmp_path / "exp")
    seen = []
    trained = run_evolution(make_opt(tmp_path, 4, seed=0, evolve_verify=1), "cpu",
                            lambda hyp, o, d, *rest: seen.append(o.seed) or fake_train(hyp, o, d), poll_s=0.2)
    holder.wait()
    assert trained == 1 and len(store.read()[1]) == 4 and seen.count(1) == 4 and seen.count(2) in (0, 2)
