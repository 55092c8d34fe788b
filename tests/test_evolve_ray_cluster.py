"""--ray on a real multi-node cluster (ray.cluster_utils.Cluster on this machine): lost nodes, failing candidates,
user errors, datasets kept by each worker. The driver connects by address, so the code ships as runtime_env."""

import argparse
import threading
import time

import pytest

from utils.evolve.runner import run_evolution
from utils.evolve.store import EvolveStore
from utils.files import ROOT

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
HYP_FILE = str(ROOT / "data/hyps/hyp.scratch-low.yaml")
INITIAL_LR0 = 0.01  # hyp.scratch-low's, the first candidate's


@pytest.fixture
def cluster():
    """A head without CPUs (the driver's node) and two worker nodes of one CPU each."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def make_opt(folder, generations, address, **kwargs):
    opt = argparse.Namespace(evolve=generations, hyp=HYP_FILE, project=str(folder), name="exp", noautoanchor=True,
                             seed=0, evolve_method="mutation", ray=True, ray_address=address, data="coco128.yaml",
                             weights="")
    vars(opt).update(kwargs)
    return opt


def make_train(sleep_s=0.0, fail_initial=None, log_dir=None):
    """A fake train() shipped by value: optionally raises for the initial hyps, logs (pid, dataset id) per call, the
    dataset built through the worker's TrainingCache as train() builds it."""

    def fake_train(hyp, opt, device, callbacks=None, cache=None):
        import os
        import time

        if fail_initial is not None and hyp["lr0"] == INITIAL_LR0:
            raise fail_initial
        if log_dir is not None:
            from utils.dataloaders import create_dataloader

            _, dataset = create_dataloader(opt.data["train"], 64, 2, 32, hyp=hyp, workers=0, datasets=cache.datasets)
            with open(os.path.join(log_dir, f"{os.getpid()}.txt"), "a") as f:
                f.write(f"{id(dataset)}\n")
        time.sleep(sleep_s)
        return 0.6, 0.5, 0.4 + hyp["lr0"], 0.3 + hyp["lr0"], 0.05, 0.03, 0.01

    return fake_train


def whole_rows(folder):
    keys, values = EvolveStore(folder).read()
    assert all(len(line.split(",")) == len(keys) for line in (folder / "evolve.csv").read_text().splitlines())
    return values


def test_removing_a_node_mid_run_still_ends_with_n_whole_rows(tmp_path, cluster):
    head, workers = cluster
    opt = make_opt(tmp_path, 6, head.address)

    def remove_a_node_once_running():
        deadline = time.time() + 120
        while not (tmp_path / "exp" / ".evolve_claims").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # both nodes are training a candidate now
        head.remove_node(workers[1])

    remover = threading.Thread(target=remove_a_node_once_running)
    remover.start()
    assert run_evolution(opt, "cpu", make_train(sleep_s=3.0), poll_s=0.2) == 6
    remover.join()
    assert len(whole_rows(tmp_path / "exp")) == 6
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))


def test_a_candidate_that_raises_is_logged_and_skipped(tmp_path, cluster, log_lines):
    head, _ = cluster
    opt = make_opt(tmp_path, 4, head.address)
    assert run_evolution(opt, "cpu", make_train(sleep_s=1.0, fail_initial=RuntimeError("CUDA out of memory")),
                         poll_s=0.2) == 4
    assert any("failed and is skipped" in line and "CUDA out of memory" in line for line in log_lines)
    values = whole_rows(tmp_path / "exp")
    assert len(values) == 4 and INITIAL_LR0 not in values[:, 7]  # the failed initial hyps left no row


def test_a_user_error_stops_the_run_with_its_message(tmp_path, cluster):
    head, _ = cluster
    opt = make_opt(tmp_path, 4, head.address)
    with pytest.raises(FileNotFoundError, match="weights.pt not found"):
        run_evolution(opt, "cpu", make_train(fail_initial=FileNotFoundError("weights.pt not found")), poll_s=0.2)
    assert not list((tmp_path / "exp" / ".evolve_claims").glob("*.json"))


def test_each_worker_scans_its_dataset_once(tmp_path, cluster):
    from test_dataloaders import make_dataset

    head, _ = cluster
    images = make_dataset(tmp_path / "data")
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path / 'data'}\ntrain: {images}\nval: {images}\nnames: [a, b, c]\n")
    log_dir = tmp_path / "calls"
    log_dir.mkdir()
    opt = make_opt(tmp_path, 6, head.address, data=str(data))
    assert run_evolution(opt, "cpu", make_train(log_dir=str(log_dir)), poll_s=0.2) == 6
    calls = {path.stem: path.read_text().split() for path in log_dir.glob("*.txt")}
    assert sum(len(ids) for ids in calls.values()) == 6 and len(calls) < 6  # a worker trained several candidates...
    assert all(len(set(ids)) == 1 for ids in calls.values())  # ...on the one dataset it built first
