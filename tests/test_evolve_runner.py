"""The --evolve loop with a fast fake train(): files, shared folder across processes, crashes, RNG, memory."""

import argparse
import gc
import math
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from utils.evolve.meta import evolution_space
from utils.evolve.runner import evolve_folder, run_evolution
from utils.evolve.store import EvolveStore
from utils.files import ROOT
from utils.hyp import load_hyp

HYP_FILE = str(ROOT / "data/hyps/hyp.scratch-low.yaml")
TESTS = str(Path(__file__).parent)


def fake_train(hyp, opt, device, callbacks=None, cache=None):
    """A smooth fitness of a few hyps plus a hash-based jitter; reseeds every global RNG as train() does."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    jitter = zlib.crc32(repr(sorted(hyp.items())).encode()) % 1000 / 1e6
    score = (0.5 - 0.05 * math.log10(hyp["lr0"] / 0.003) ** 2 - (hyp["momentum"] - 0.9) ** 2
             - 0.1 * (hyp["scale"] - 0.3) ** 2 + jitter)
    time.sleep(getattr(opt, "fake_sleep", 0.0))
    return 0.6, 0.5, score + 0.1, score, 0.05, 0.03, 0.01


def make_opt(folder, generations, **kwargs):
    opt = argparse.Namespace(evolve=generations, hyp=HYP_FILE, project=str(folder), name="exp", noautoanchor=False,
                             seed=None, evolve_method="mutation", noval=False, nosave=False, save_dir="", epochs=1)
    vars(opt).update(kwargs)
    return opt


def evolve_in_subprocess(folder, generations, sleep_s, report):
    """Entry point for the multi-process tests: evolve, then write how many generations this process trained."""
    trained = run_evolution(make_opt(folder, generations, fake_sleep=sleep_s), "cpu", fake_train)
    Path(report).write_text(str(trained))


def start_process(folder, generations, sleep_s, report, module="test_evolve_runner"):
    """A process running `module`.evolve_in_subprocess (a test module's own entry point) on the folder."""
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {TESTS!r}]; import {module} as t; "
            f"t.evolve_in_subprocess({str(folder)!r}, {generations}, {sleep_s}, {str(report)!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def run_train_py(data, weights, *flags, timeout=900):
    """train.py as a user runs it, tiny and on CPU (batch 4, no loader workers), with `flags`: the finished process."""
    command = [sys.executable, "train.py", "--weights", str(weights), "--data", str(data), "--batch-size", "4",
               "--workers", "0", "--device", "cpu", *map(str, flags)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def rows_of(folder):
    return EvolveStore(Path(folder) / "exp").read()


def initial_hyp():
    return evolution_space(load_hyp(HYP_FILE))[0]


def test_single_process_writes_every_file(tmp_path):
    opt = make_opt(tmp_path, 4, seed=1)
    seen = []
    trained = run_evolution(opt, "cpu", lambda hyp, o, d, *rest: seen.append(o) or fake_train(hyp, o, d))
    folder = tmp_path / "exp"
    assert trained == 4 and not opt.noval and not opt.nosave and opt.save_dir == ""  # the caller's opt is untouched
    assert all(o.noval and o.nosave and Path(o.save_dir).parent == folder / "candidates" for o in seen)
    keys, values = rows_of(tmp_path)
    assert values.shape == (4, 7 + len(initial_hyp())) and keys[-1] == "anchors"
    assert dict(zip(keys[7:], values[0, 7:])) == initial_hyp()  # generation 1 trains the initial hyps
    hyps = yaml.safe_load((folder / "hyp_evolved.yaml").read_text())
    assert list(hyps) == list(keys[7:])
    assert (folder / "evolve.png").stat().st_size > 10_000
    assert len(list((folder / "hparams").iterdir())) == 4
    assert not list((folder / ".evolve_claims").glob("*.json"))


def test_draws_differ_across_generations_although_training_reseeds(tmp_path):
    run_evolution(make_opt(tmp_path, 8), "cpu", fake_train)
    _, values = rows_of(tmp_path)
    assert len({tuple(row) for row in values[:, 7:]}) == 8


def test_seed_makes_a_single_process_evolution_reproducible(tmp_path):
    for name in ("a", "b", "c"):
        run_evolution(make_opt(tmp_path / name, 5, seed=None if name == "c" else 7), "cpu", fake_train)
    a, b, c = (rows_of(tmp_path / name)[1] for name in ("a", "b", "c"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a[1:], c[1:])


def test_n_counts_the_rows_already_in_the_folder(tmp_path):
    assert run_evolution(make_opt(tmp_path, 3), "cpu", fake_train) == 3
    assert run_evolution(make_opt(tmp_path, 5), "cpu", fake_train) == 2
    assert run_evolution(make_opt(tmp_path, 5), "cpu", fake_train) == 0
    assert len(rows_of(tmp_path)[1]) == 5


def test_four_processes_share_one_evolution(tmp_path):
    generations = 16
    procs = [start_process(tmp_path, generations, 0.5, tmp_path / f"trained{i}") for i in range(4)]
    for p in procs:
        assert p.wait(timeout=240) == 0
    trained = [int((tmp_path / f"trained{i}").read_text()) for i in range(4)]
    text = (tmp_path / "exp" / "evolve.csv").read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and lines[0].count("metrics/precision") == 1 and "metrics/precision" not in text[30:]
    columns = 7 + len(initial_hyp())
    assert all(len(line.split(",")) == columns and all(len(f) == 20 for f in line.split(",")) for line in lines)
    keys, values = rows_of(tmp_path)
    assert len(values) == sum(trained) == generations  # in-flight claims stop processes exactly at N
    assert sum(t > 0 for t in trained) >= 2
    initial = tuple(initial_hyp().values())
    assert sum(tuple(row) == initial for row in values[:, 7:]) == 1  # only one process trains the initial hyps


def test_killed_process_restarted_reaches_n(tmp_path):
    generations = 6
    victim = start_process(tmp_path, generations, 2.0, tmp_path / "killed")
    deadline = time.time() + 120
    while (not (tmp_path / "exp" / "evolve.csv").exists() or len(rows_of(tmp_path)[1]) < 2) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.8)  # into the next generation's training
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    written = len(rows_of(tmp_path)[1])
    assert 2 <= written < generations
    assert list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))  # the generation in flight was lost
    trained = run_evolution(make_opt(tmp_path, generations), "cpu", fake_train)
    assert trained == generations - written and len(rows_of(tmp_path)[1]) == generations
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
def test_memory_does_not_grow_over_generations(tmp_path):
    samples = []

    def heavy_train(hyp, opt, device, callbacks=None, cache=None):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.Conv2d(64, 64, 3))
        model(torch.rand(4, 3, 64, 64)).sum().backward()
        buffer = np.ones((20, 1024, 1024), dtype=np.uint8)  # 20 MB freed after each generation
        samples.append(rss_mb())
        del buffer, model
        return fake_train(hyp, opt, device)

    run_evolution(make_opt(tmp_path, 20), "cpu", heavy_train)
    assert samples[19] == pytest.approx(samples[2], rel=0.10), samples
    assert gc.get_freeze_count() == 0  # what the loop froze after its first generation is thawed


def test_population_method_through_the_runner(tmp_path):
    opt = make_opt(tmp_path, 2, evolve_method="population", evolve_population_size=3)
    assert run_evolution(opt, "cpu", fake_train) == 6
    state = yaml.safe_load((tmp_path / "exp" / "evolve_population.yaml").read_text())
    assert state["generation"] == 1 and state["start_row"] == 3 and len(state["individuals"]) == 3


@pytest.mark.parametrize("change, error, match", [
    ({"hyp": "missing/hyp.yaml"}, FileNotFoundError, "'missing/hyp.yaml' not found"),
    ({"evolve": 0}, ValueError, "positive number"),
    ({"evolve_method": "bayes"}, ValueError, "cmaes, gp, mutation, population, tpe"),
])
def test_bad_settings_are_explained(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        run_evolution(make_opt(tmp_path, 2, **change), "cpu", fake_train)


def test_noautoanchor_folder_refuses_anchor_hyps(tmp_path):
    run_evolution(make_opt(tmp_path, 1, noautoanchor=True), "cpu", fake_train)
    assert "anchors" not in rows_of(tmp_path)[0]
    with pytest.raises(ValueError, match="--noautoanchor"):
        run_evolution(make_opt(tmp_path, 2), "cpu", fake_train)


def test_default_project_is_runs_evolve_and_not_incremented(tmp_path):
    assert evolve_folder(argparse.Namespace(project=str(ROOT / "runs/train"), name="exp")) == ROOT / "runs/evolve/exp"
    assert evolve_folder(argparse.Namespace(project=str(tmp_path), name="x")) == tmp_path / "x"


@pytest.mark.slow
def test_train_py_evolves_two_generations_end_to_end(tmp_path, tiny_coco128):
    data, weights = tiny_coco128
    done = run_train_py(data, weights, "--img", 64, "--epochs", 1, "--evolve", 2, "--seed", 0,
                        "--project", tmp_path / "runs", "--name", "e")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "runs/e"
    keys, values = EvolveStore(folder).read()
    assert values.shape[0] == 2 and keys[:2] == ("metrics/precision", "metrics/recall")
    assert np.all((values[:, :4] >= 0) & (values[:, :4] <= 1))
    assert dict(zip(keys[7:], values[0, 7:])) == initial_hyp()
    assert set(yaml.safe_load((folder / "hyp_evolved.yaml").read_text())) == set(keys[7:])
    assert (folder / "evolve.png").exists()
    assert "hyp_evolved.yaml" in done.stdout + done.stderr
