"""--evolve-verify K: which rows are retrained, on which seeds, the verdict, hyp_evolved.yaml, sharing and resuming."""

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
    pick_candidates,
    recorded,
    verdict_table,
    verdicts,
    verify_seeds,
)
from utils.files import ROOT

TESTS = str(Path(__file__).parent)


def lucky_train(hyp, opt, device):
    """fake_train, its fitness turned upside down on the search seed (0): the reported ranking misleads, seeds 1+ tell."""
    p, r, map50, score, *losses = fake_train(hyp, opt, device)
    if opt.seed == 0:
        map50, score = 1.1 - map50, 1.0 - score
    return (p, r, map50, score, *losses)


def history(rows, keys=("a", "b")):
    """rows: (fitness, hyp) pairs; fitness goes into both mAPs, so it equals the row's fitness."""
    metrics = np.array([[0, 0, f, f, 0, 0, 0] for f, _ in rows], dtype=float).reshape(len(rows), 7)
    return History(keys, metrics, np.array([[h[k] for k in keys] for _, h in rows], dtype=float))


def test_seeds_follow_the_search_seed():
    assert verify_seeds(0, 3) == (1, 2, 3) and verify_seeds(7, 2) == (8, 9) and verify_seeds(None, 1) == (1,)


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
    table = verdict_table(rows, (1, 2))
    assert "0 (initial)" in table and table.splitlines()[-1].endswith("<- picked")
    tie = verdicts(picked[:2], {**results, (1, 1): results[0, 1], (1, 2): results[0, 2]}, (1, 2))
    assert best_verdict(tie) is tie[0]  # a tie keeps the initial hyps


def test_verify_file_format_and_torn_tail(tmp_path):
    store = EvolveStore(tmp_path)
    store.append_verify(12, 3, (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))
    with open(store.verify_csv, "a") as f:
        f.write("   7,   1")  # a writer killed mid-row
    store.append_verify(123456, 4, (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))
    lines = store.verify_csv.read_text().splitlines()
    assert [k.strip() for k in lines[0].split(",")] == list(VERIFY_KEYS) and len(lines) == 3
    assert all(len(f) == 20 for line in lines for f in line.split(","))
    values = store.read_verify()
    assert values[:, :2].tolist() == [[12, 3], [123456, 4]] and values[0, 2] == pytest.approx(0.1 * 0.6 + 0.9 * 0.3)
    assert recorded(values)[(12, 3)] == pytest.approx((0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01))


def test_k_zero_keeps_yolov5s_behaviour(tmp_path):
    run_evolution(make_opt(tmp_path, 3, seed=0, evolve_verify=0), "cpu", fake_train)
    assert not (tmp_path / "exp" / "evolve_verify.csv").exists()


def test_verdict_on_a_finished_folder_picks_hyp_evolved_by_verified_mean(tmp_path):
    folder = tmp_path / "exp"
    run_evolution(make_opt(tmp_path, 8, seed=0), "cpu", lucky_train)
    rows_before = EvolveStore(folder).read()[1]
    calls = []

    def counting_train(hyp, opt, device):
        calls.append(opt.seed)
        return lucky_train(hyp, opt, device)

    assert run_evolution(make_opt(tmp_path, 8, seed=0, evolve_verify=3), "cpu", counting_train) == 0
    assert np.array_equal(EvolveStore(folder).read()[1], rows_before)  # verified without evolving again
    assert sorted(calls) == [1] * 4 + [2] * 4 + [3] * 4
    values = EvolveStore(folder).read_verify()
    assert len(values) == 12 and set(values[:, 1]) == {1, 2, 3}

    history = EvolveStore(folder).history(tuple(initial_hyp()))
    picked = pick_candidates(history, initial_hyp())
    assert picked[0].row == 0 and len(picked) == 4
    true_scores = [float(fitness(fake_train(c.hyp, make_opt(tmp_path, 1, seed=1), "cpu"))) for c in picked]
    best = picked[int(np.argmax(true_scores))]
    text = (folder / "hyp_evolved.yaml").read_text()
    assert yaml.safe_load(text) == best.hyp
    assert text.splitlines()[1].startswith(f"# Best generation: {best.row} ")
    assert f"reported {best.reported:.5f}, verified {max(true_scores):.5f}" in text
    assert best.row != picked[1].row  # the row reported best is not the one verification picks

    calls.clear()
    assert run_evolution(make_opt(tmp_path, 8, seed=0, evolve_verify=3), "cpu", counting_train) == 0
    assert calls == [] and (folder / "hyp_evolved.yaml").read_text() == text  # all done: the verdict again


def verify_in_subprocess(folder, generations, k, sleep_s):
    """Entry point for the process tests: evolve and verify with a fake train that sleeps while verifying."""
    opt = make_opt(folder, generations, seed=0, evolve_verify=k)

    def slow_train(hyp, o, device):
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
    assert len(jobs) == len(set(jobs)) == 8
    assert "verified" in (tmp_path / "exp" / "hyp_evolved.yaml").read_text()
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
                  lambda hyp, o, d: calls.append(o.seed) or fake_train(hyp, o, d))
    jobs = [(int(r), int(s)) for r, s in store.read_verify()[:, :2]]
    assert len(calls) == 12 - done and len(jobs) == len(set(jobs)) == 12


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
                            lambda hyp, o, d: seen.append(o.seed) or fake_train(hyp, o, d), poll_s=0.2)
    holder.wait()
    assert trained == 1 and len(store.read()[1]) == 4 and seen.count(1) == 4
