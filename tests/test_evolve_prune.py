"""--evolve-prune: the rungs, the ASHA rule, the judge, and evolutions that prune in one process, across processes,
after a kill, for every method, and with the real train() (tiny)."""

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_evolve_runner import fake_train, initial_hyp, make_opt, run_train_py, start_process  # noqa: E402

from utils.evolve.jobs import STOP
from utils.evolve.meta import METRIC_KEYS
from utils.evolve.prune import CandidatePruned, RungJudge, RungReporter, promoted, rung_epochs, spend_summary
from utils.evolve.rungs import COMPLETED, PROMOTED, PRUNED
from utils.evolve.runner import Evolution, run_evolution
from utils.evolve.store import EvolveStore


def fake_epochs_train(hyp, opt, device, callbacks=None, cache=None):
    """opt.epochs fake epochs, validated (fitness growing to fake_train's) at opt.val_epochs and the last epoch.

    Calls on_fit_epoch_end(epoch, row) after every epoch with train()'s row: 3 train losses, 7 results, 3 lrs.
    """
    final = fake_train(hyp, opt, device)
    val_epochs, results = set(getattr(opt, "val_epochs", None) or ()), (0.0,) * 7
    for epoch in range(opt.epochs):
        time.sleep(getattr(opt, "fake_epoch_s", 0.0))
        if epoch + 1 in val_epochs or epoch + 1 == opt.epochs:
            share = (epoch + 1) / opt.epochs
            results = tuple(x * share for x in final[:4]) + tuple(final[4:])
        if callbacks and "on_fit_epoch_end" in callbacks:
            callbacks["on_fit_epoch_end"](epoch, [0.1, 0.1, 0.1, *results, 0.01, 0.01, 0.01])
    return results


def prune_opt(folder, generations, **kwargs):
    return make_opt(folder, generations, **({"epochs": 9, "evolve_prune": True, "evolve_prune_min_epochs": 1,
                                            "evolve_prune_eta": 3} | kwargs))


def evolve_in_subprocess(folder, generations, epoch_s, report):
    """Entry point of the multi-process tests: evolve with pruning, write how many candidates this process trained."""
    trained = run_evolution(prune_opt(folder, generations, fake_epoch_s=epoch_s), "cpu", fake_epochs_train)
    Path(report).write_text(str(trained))


def rung_rows(folder):
    return EvolveStore(folder).read_rungs(tuple(initial_hyp()))


def terminal(rows):
    return [row for row in rows if row.state != PROMOTED]


def assert_decisions_follow_the_rule(rows, eta=3):
    """Replayed in file order (the order the lock wrote them), every rung row's state is what the rule decides."""
    seen = {}
    for row in rows:
        if row.state != COMPLETED:
            assert promoted(row.fitness, seen.get(row.epoch, []), eta) == (row.state == PROMOTED), row
        seen.setdefault(row.epoch, []).append(row.fitness)


def hparams_epochs(run):
    """The `epochs` metric a TensorBoard HParams run holds (the rung where a pruned candidate stopped)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run))
    events.Reload()
    return events.Scalars("epochs")[0].value


# rungs and the rule --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("min_epochs, eta, epochs, rungs", [
    (1, 3, 9, (1, 3)),  # 9 is the end, not a rung
    (1, 3, 10, (1, 3, 9)),
    (1, 3, 1, ()),
    (2, 2, 17, (2, 4, 8, 16)),
    (3, 3, 9, (3,)),
    (1, 4, 100, (1, 4, 16, 64)),
])
def test_rung_epochs(min_epochs, eta, epochs, rungs):
    assert rung_epochs(min_epochs, eta, epochs) == rungs


@pytest.mark.parametrize("min_epochs, eta, match", [(0, 3, "min-epochs"), (1, 1, "eta")])
def test_rung_settings_out_of_range_name_the_flag(min_epochs, eta, match):
    with pytest.raises(ValueError, match=match):
        rung_epochs(min_epochs, eta, 10)


@pytest.mark.parametrize("value, competitors, eta, goes_on", [
    (0.1, [], 3, True),  # the first at a rung goes on
    (0.4, [0.5], 3, False),  # 2 < eta: only the best so far goes on
    (0.5, [0.5], 3, True),  # ties go on
    (0.6, [0.5], 3, True),
    (0.4, [0.5, 0.3], 3, False),  # 3 candidates: the best 1
    (0.5, [0.4, 0.3], 3, True),
    (0.4, [0.5, 0.3, 0.2, 0.1, 0.0], 3, True),  # 6 candidates: the best 2
    (0.3, [0.5, 0.4, 0.2, 0.1, 0.0], 3, False),
    (0.3, [0.5, 0.2, 0.1], 2, True),  # eta 2, 4 candidates: the best 2
    (0.2, [0.5, 0.3, 0.1], 2, False),
])
def test_promoted_keeps_the_top_one_over_eta(value, competitors, eta, goes_on):
    assert promoted(value, competitors, eta) == goes_on


@pytest.mark.parametrize("eta", [2, 3])
def test_rule_agrees_with_optunas_successive_halving_pruner(eta):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(eta)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta, min_early_stopping_rate=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    rungs, seen = rung_epochs(1, eta, 30), {}
    for _ in range(40):
        trial = study.ask()
        for epoch in rungs:
            value = float(rng.random())
            trial.report(value, epoch)
            ours = promoted(value, seen.get(epoch, []), eta)
            seen.setdefault(epoch, []).append(value)
            assert ours == (not trial.should_prune())
            if not ours:
                break


def test_spend_summary_counts_candidates_and_epochs():
    assert spend_summary(2, [1, 3, 1], 9) == ("5 candidates: 2 trained all 9 epochs, 3 pruned (2 at epoch 1, 1 at "
                                              "epoch 3); 23 training epochs spent, 45 without pruning")
    assert spend_summary(3, [], 4) == "3 candidates: 3 trained all 4 epochs, 0 pruned; 12 training epochs spent, " \
                                      "12 without pruning"


# the judge -----------------------------------------------------------------------------------------------------------
def results_of(value):
    return (0.5, 0.5, value, value, 0.05, 0.03, 0.01)


def test_judge_records_each_rung_and_prunes_below_the_top_third(tmp_path):
    store, hyp = EvolveStore(tmp_path), initial_hyp()
    judge = RungJudge(tmp_path, tuple(hyp), (1, 3), 3)
    first, second = store.claim(hyp), store.claim(hyp)
    assert judge.report(first, 1, results_of(0.5), hyp)
    assert not judge.report(second, 1, results_of(0.4), hyp)
    assert list(store.live_claims()) == [first]  # the pruned candidate's claim is released, not left to expire
    rows = store.read_rungs(tuple(hyp))
    assert [(r.candidate, r.epoch, r.state, r.fitness) for r in rows] == [(first, 1, PROMOTED, 0.5),
                                                                          (second, 1, PRUNED, 0.4)]
    assert rows[1].metrics == results_of(0.4) and rows[1].hyp == hyp
    header = (tmp_path / "evolve_rungs.csv").read_text().splitlines()[0].split(",")
    assert [k.strip() for k in header] == ["candidate", "epoch", "state", "fitness", *METRIC_KEYS, *hyp]
    history = store.history(tuple(hyp))
    assert len(history) == 0 and [(c.epoch, c.fitness, c.steps) for c in history.pruned] == [(1, 0.4, {1: 0.4})]
    assert history.finished == 1 and history.started == 2


def test_rows_of_a_dead_process_are_orphans_not_competitors(tmp_path):
    store, hyp = EvolveStore(tmp_path), initial_hyp()
    judge = RungJudge(tmp_path, tuple(hyp), (1,), 3)
    dead = EvolveStore(tmp_path)
    orphan = dead.claim(hyp)
    dead.append_rung(orphan, 1, PROMOTED, results_of(0.9), hyp)
    dead.close()  # its owner lock is free: the process is gone
    assert judge.report(store.claim(hyp), 1, results_of(0.2), hyp)  # 0.9 of a dead candidate does not count
    assert store.history(tuple(hyp)).started == 1


def test_reporter_reports_rungs_only_and_raises_when_pruned(tmp_path):
    class Judge:
        rungs = (1, 3)

        def __init__(self):
            self.calls = []

        def report(self, candidate, epoch, results, hyp):
            self.calls.append((candidate, epoch, results))
            return epoch < 3

    judge = Judge()
    reporter = RungReporter(judge, "c1", {"lr0": 0.01})
    row = [0.1, 0.2, 0.3, *results_of(0.4), 0.01, 0.01, 0.01]
    for epoch in (0, 1):
        reporter(epoch, row)
    with pytest.raises(CandidatePruned) as stopped:
        reporter(2, row)
    assert judge.calls == [("c1", 1, results_of(0.4)), ("c1", 3, results_of(0.4))]
    assert stopped.value.epoch == 3 and stopped.value.results == results_of(0.4)


# evolutions ----------------------------------------------------------------------------------------------------------
def test_pruned_evolution_counts_candidates_started_and_keeps_yolov5s_layout(tmp_path, log_lines):
    seen = []
    opt = prune_opt(tmp_path, 10, seed=1)
    trained = run_evolution(opt, "cpu", lambda h, o, d, *rest: seen.append(o) or fake_epochs_train(h, o, d, *rest))
    folder = tmp_path / "exp"
    keys, values = EvolveStore(folder).read()
    rows = rung_rows(folder)
    ends = terminal(rows)
    pruned = [r for r in ends if r.state == PRUNED]
    assert trained == 10 and len(ends) == 10 and len({r.candidate for r in ends}) == 10
    assert pruned and len(values) == 10 - len(pruned)  # evolve.csv holds the completed candidates only
    assert all(o.val_epochs == [1, 3] and o.noval for o in seen)
    assert {r.epoch for r in pruned} <= {1, 3} and {r.epoch for r in ends if r.state == COMPLETED} == {9}
    completed_hyps = {tuple(r.hyp.values()) for r in ends if r.state == COMPLETED}
    assert completed_hyps == {tuple(v) for v in values[:, 7:]}
    assert_decisions_follow_the_rule(rows)
    lines = (folder / "evolve.csv").read_text().splitlines()
    assert keys == (*METRIC_KEYS, *initial_hyp()) and all(len(f) == 20 for line in lines for f in line.split(","))
    best = yaml.safe_load((folder / "hyp_evolved.yaml").read_text())
    assert tuple(best.values()) in completed_hyps
    runs = sorted(p.name for p in (folder / "hparams").iterdir())
    assert sum(name.startswith("pruned_") for name in runs) == len(pruned)
    assert hparams_epochs(folder / "hparams" / f"pruned_{pruned[0].candidate}") == pruned[0].epoch
    epochs_spent = 9 * len(values) + sum(r.epoch for r in pruned)
    assert any(f"{epochs_spent} training epochs spent, 90 without pruning" in line for line in log_lines)
    assert not list((folder / ".evolve_claims").glob("*.json"))


def test_initial_hyps_pruned_are_not_trained_again(tmp_path):
    evolution = Evolution(prune_opt(tmp_path, 3))
    hyp, first = evolution.next_candidate()
    assert hyp == initial_hyp()
    rival = evolution.store.claim(hyp)
    assert evolution.judge.report(rival, 1, results_of(0.9), hyp)
    assert not evolution.judge.report(first, 1, results_of(0.1), hyp)
    evolution.release(rival)  # its process gave up: nothing in flight, nothing in evolve.csv, the initial hyps pruned
    again, _ = evolution.next_candidate()
    assert again != initial_hyp() and set(again) == set(hyp)  # a mutation of them


def test_two_evolutions_sharing_a_folder_prune_against_each_others_rungs(tmp_path):
    first, second = Evolution(prune_opt(tmp_path, 4)), Evolution(prune_opt(tmp_path, 4))
    hyp_a, ticket_a = first.next_candidate()
    hyp_b, ticket_b = second.next_candidate()
    RungReporter(first.judge, ticket_a, hyp_a)(0, [0, 0, 0, *results_of(0.5), 0, 0, 0])
    with pytest.raises(CandidatePruned):
        RungReporter(second.judge, ticket_b, hyp_b)(0, [0, 0, 0, *results_of(0.3), 0, 0, 0])
    assert first.store.history(first.keys).started == 2  # one in flight, one pruned


def test_two_processes_prune_against_each_others_rungs(tmp_path):
    procs = [start_process(tmp_path, 12, 0.15, tmp_path / f"trained{i}", "test_evolve_prune") for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    trained = [int((tmp_path / f"trained{i}").read_text()) for i in range(2)]
    rows = rung_rows(tmp_path / "exp")
    ends = terminal(rows)
    assert sum(trained) == len(ends) == 12 and min(trained) > 0
    assert_decisions_follow_the_rule(rows)
    pid = {row.candidate: row.candidate.split("-")[-2] for row in rows}
    across = [row for i, row in enumerate(rows) if row.state == PRUNED
              and any(r.epoch == row.epoch and pid[r.candidate] != pid[row.candidate] for r in rows[:i])]
    assert across  # some candidate was pruned with the other process's rows at its rung
    assert len(EvolveStore(tmp_path / "exp").read()[1]) == sum(r.state == COMPLETED for r in ends)


def test_killed_pruned_evolution_restarted_reaches_n_without_loss_or_duplicate(tmp_path):
    generations, folder = 8, tmp_path / "exp"
    victim = start_process(tmp_path, generations, 0.3, tmp_path / "killed", "test_evolve_prune")
    deadline = time.time() + 120
    while time.time() < deadline and len(terminal(rung_rows(folder))) < 3:
        time.sleep(0.1)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = terminal(rung_rows(folder))
    assert 3 <= len(before) < generations
    trained = run_evolution(prune_opt(tmp_path, generations), "cpu", fake_epochs_train)
    rows = rung_rows(folder)
    ends = terminal(rows)
    assert trained == generations - len(before) and len(ends) == generations
    assert ends[: len(before)] == before  # nothing recorded before the kill is lost or rewritten
    assert len({r.candidate for r in ends}) == len({tuple(r.hyp.values()) for r in ends}) == generations
    orphans = {r.candidate for r in rows} - {r.candidate for r in ends}
    assert len(orphans) <= 1  # at most the candidate in flight when the process died
    _, values = EvolveStore(folder).read()
    assert len(values) == sum(r.state == COMPLETED for r in ends)
    assert not list((folder / ".evolve_claims").glob("*.json"))


@pytest.mark.parametrize("method", ["mutation", "population", "gp", "tpe", "cmaes"])
def test_every_method_evolves_with_pruning(tmp_path, method):
    if method in ("gp", "tpe", "cmaes"):
        pytest.importorskip("optuna")
    if method == "cmaes":
        pytest.importorskip("cmaes")
    opt = prune_opt(tmp_path, 2 if method == "population" else 6, evolve_method=method, evolve_population_size=3,
                    seed=0)
    assert run_evolution(opt, "cpu", fake_epochs_train) == 6
    rows = rung_rows(tmp_path / "exp")
    assert len(terminal(rows)) == 6 and any(r.state == PRUNED for r in rows)
    assert_decisions_follow_the_rule(rows)
    if method == "population":
        state = yaml.safe_load((tmp_path / "exp" / "evolve_population.yaml").read_text())
        first_generation = terminal(rows)[:3]  # one process: generation 1 starts once generation 0 has ended
        assert state["generation"] == 1 and state["start_pruned"] == sum(r.state == PRUNED for r in first_generation)


def test_without_the_flag_no_rung_file_and_no_extra_validation(tmp_path):
    seen = []
    run_evolution(make_opt(tmp_path, 2, epochs=9), "cpu", lambda h, o, d, *rest: seen.append(o) or fake_train(h, o, d))
    assert not (tmp_path / "exp" / "evolve_rungs.csv").exists()
    assert all(not hasattr(o, "val_epochs") for o in seen)


def test_a_finished_evolution_says_stop(tmp_path):
    run_evolution(prune_opt(tmp_path, 3), "cpu", fake_epochs_train)
    assert Evolution(prune_opt(tmp_path, 3)).next_candidate() == STOP


@pytest.mark.slow
def test_train_py_prunes_end_to_end(tmp_path, tiny_coco128):
    data, weights = tiny_coco128
    done = run_train_py(data, weights, "--img", 128, "--epochs", 3, "--evolve", 4, "--evolve-prune",
                        "--evolve-prune-eta", 2, "--seed", 0, "--noautoanchor", "--project", tmp_path / "runs",
                        "--name", "p", timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    folder = tmp_path / "runs/p"
    rows = EvolveStore(folder).read_rungs(EvolveStore(folder).read()[0][7:])
    ends = terminal(rows)
    assert len(ends) == 4 and {r.epoch for r in rows} <= {1, 2, 3}
    assert all(r.epoch in (1, 2) for r in rows if r.state != COMPLETED)
    assert all(r.metrics[4] > 0 for r in rows)  # validated at the rung: real val losses, not noval's zeros
    assert_decisions_follow_the_rule(rows, eta=2)
    _, values = EvolveStore(folder).read()
    assert len(values) == sum(r.state == COMPLETED for r in ends) >= 1
    assert "training epochs spent" in output and "Traceback" not in output
