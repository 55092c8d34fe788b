"""--ray: candidates as Ray tasks on a local 2-CPU cluster; the driver alone writes the folder."""

import argparse
import math
import sys

import pytest

from utils.evolve.ray_backend import import_ray, task_options
from utils.evolve.runner import run_evolution
from utils.evolve.store import EvolveStore
from utils.files import ROOT


def make_fake_train():
    """A fake train() built in a closure so Ray ships it by value (workers need not import this test module)."""

    def fake_train(hyp, opt, device, callbacks=None, cache=None):
        import os
        import time

        time.sleep(0.2)
        score = 0.5 - 0.05 * math.log10(hyp["lr0"] / 0.003) ** 2 - (hyp["momentum"] - 0.9) ** 2
        return 0.6, 0.5, score + 0.1, score, 0.05, 0.03, float(os.getpid())  # cls loss column: the worker's pid

    return fake_train


RETRIES = {"max_retries": 3, "retry_exceptions": False}  # a task lost with its node runs again; a raising one not


@pytest.mark.parametrize("resources, options, capacity", [
    ({"CPU": 2.0}, {"num_cpus": 1, **RETRIES}, 2),
    ({"CPU": 16.0, "GPU": 4.0}, {"num_gpus": 1, "max_calls": 0, **RETRIES}, 4),
    ({}, {"num_cpus": 1, **RETRIES}, 1),
])
def test_one_task_per_gpu_else_per_cpu(resources, options, capacity):
    assert task_options(resources) == (options, capacity)


def test_missing_ray_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "ray\[default\]"'):
        import_ray()


def test_ray_run_with_two_local_workers(tmp_path, local_ray):
    opt = argparse.Namespace(evolve=6, hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), project=str(tmp_path),
                             name="exp", noautoanchor=False, seed=3, evolve_method="mutation", ray=True,
                             ray_address=None)
    assert run_evolution(opt, "cpu", make_fake_train()) == 6
    keys, values = EvolveStore(tmp_path / "exp").read()
    assert values.shape[0] == 6 and keys[0] == "metrics/precision"
    assert len({tuple(row) for row in values[:, 7:]}) == 6
    assert len(set(values[:, 6])) == 2  # both workers trained
    assert (tmp_path / "exp" / "hyp_evolved.yaml").exists() and (tmp_path / "exp" / "evolve.png").exists()
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))


def make_fake_epochs_train():
    """A fake train() of opt.epochs epochs that reports to train()'s on_fit_epoch_end callback (shipped by value)."""

    def fake_epochs_train(hyp, opt, device, callbacks=None, cache=None):
        import os

        score = 0.5 - 0.05 * math.log10(hyp["lr0"] / 0.003) ** 2 - (hyp["momentum"] - 0.9) ** 2
        results = (0.0,) * 7
        for epoch in range(opt.epochs):
            if epoch + 1 in opt.val_epochs or epoch + 1 == opt.epochs:
                share = (epoch + 1) / opt.epochs
                results = (0.6, 0.5, (score + 0.1) * share, score * share, 0.05, 0.03, float(os.getpid()))
            callbacks["on_fit_epoch_end"](epoch, [0.1, 0.1, 0.1, *results, 0.01, 0.01, 0.01])
        return results

    return fake_epochs_train


def test_ray_run_prunes_through_the_drivers_judge(tmp_path, local_ray):
    opt = argparse.Namespace(evolve=8, hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), project=str(tmp_path),
                             name="exp", noautoanchor=True, seed=3, evolve_method="mutation", ray=True,
                             ray_address=None, epochs=9, evolve_prune=True, evolve_prune_min_epochs=1,
                             evolve_prune_eta=3)
    assert run_evolution(opt, "cpu", make_fake_epochs_train()) == 8
    store = EvolveStore(tmp_path / "exp")
    keys, values = store.read()
    rows = store.read_rungs(keys[7:])
    ends = [r for r in rows if r.state != "promoted"]
    pruned = [r for r in ends if r.state == "pruned"]
    assert len(ends) == 8 and pruned and len(values) == 8 - len(pruned)
    assert {r.epoch for r in pruned} <= {1, 3} and len({r.metrics[6] for r in rows}) == 2  # both workers reported
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))
