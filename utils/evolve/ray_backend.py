"""--ray: train candidates as Ray tasks, one per GPU (one per CPU when the cluster has no GPU), the driver records.

Only the driver reads and writes the evolve folder, in the same formats and under the same lock as local runs, so
Ray and plain processes can even share one evolution. With --evolve-prune a task reports each rung to a RungJudge in
an actor pinned to the driver's node, which records the rung in the folder and answers go on or stop, so the nodes
need no shared filesystem. Ray is optional: pip install "ray[default]".
"""

import os
import time

from utils.evolve.jobs import STOP, WAIT, finish_candidate, train_candidate
from utils.evolve.prune import CandidatePruned, RungJudge, RungReporter
from utils.files import ROOT
from utils.log import LOGGER, colorstr
from utils.memory import release_memory

PREFIX = colorstr("evolve: ")


def import_ray():
    """The ray module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError('--ray needs the optional package Ray: pip install "ray[default]" '
                          "(or evolve without --ray, one process per GPU as in the README)") from e
    return ray


def _train_task(train_fn, hyp, opt, reporter):
    """Runs on a Ray worker: train on the GPU Ray assigned (it sets CUDA_VISIBLE_DEVICES) or on CPU.

    Returns the 7 results, or the CandidatePruned that stopped the candidate at a rung.
    """
    import ray
    import torch

    on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    opt.device = "0" if on_gpu else "cpu"
    outcome = train_candidate(train_fn, hyp, opt, torch.device("cuda:0" if on_gpu else "cpu"), reporter)
    return outcome if isinstance(outcome, CandidatePruned) else tuple(float(x) for x in outcome[:7])


class RemoteJudge:
    """A RungJudge in a Ray actor on the driver's node, as tasks on any node see it: report() asks the actor."""

    def __init__(self, ray, judge):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        actor_class = ray.remote(RungJudge).options(num_cpus=0, max_restarts=0, scheduling_strategy=here)
        self.actor = actor_class.remote(judge.folder, judge.hyp_keys, judge.rungs, judge.eta)
        self.rungs = judge.rungs

    def report(self, candidate, epoch, results, hyp):
        import ray

        return ray.get(self.actor.report.remote(candidate, epoch, results, hyp))


def task_options(resources):
    """(Ray task options, how many tasks fit at once) for a cluster's resources: 1 GPU per task, else 1 CPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"num_gpus": 1, "max_retries": 0}, gpus
    return {"num_cpus": 1, "max_retries": 0}, max(1, int(resources.get("CPU", 1)))


def run_on_ray(source, device=None, train_fn=None, address=None, num_cpus=None, poll_s=5.0):
    """Keep the cluster busy with the source's candidates until it says STOP; returns the results recorded here.

    `source` is a job source as runner.py describes: an Evolution (generations) or a Verification (retrainings).
    `address` joins an existing cluster (--ray-address); without it a local Ray is started (num_cpus of this machine
    unless given) and shut down at the end. `device` (the driver's) is not used: each task trains on what Ray gave it.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        ray.init(address=address or None, num_cpus=None if address else num_cpus, log_to_driver=True,
                 runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    options, capacity = task_options(ray.cluster_resources())
    LOGGER.info(f"{PREFIX}Ray cluster: up to {capacity} candidates at once ({options})")
    remote_train = ray.remote(_train_task).options(**options)
    train_ref = ray.put(train_fn)
    judge = RemoteJudge(ray, source.judge) if source.judge else None
    in_flight = {}  # ObjectRef -> (hyp, ticket)
    recorded = 0
    try:
        with source.progress():
            while True:
                step = None
                while len(in_flight) < capacity:
                    step = source.next_candidate()
                    if step in (STOP, WAIT):
                        break
                    hyp, ticket = step
                    reporter = RungReporter(judge, ticket, hyp) if judge else None
                    ref = remote_train.remote(train_ref, dict(hyp), source.candidate_opt(ticket), reporter)
                    in_flight[ref] = (hyp, ticket)
                if not in_flight:
                    if step == STOP:
                        break
                    time.sleep(poll_s)  # the method waits for candidates that other processes are training
                    continue
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    hyp, ticket = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except BaseException:
                        source.release(ticket)
                        raise
                    finish_candidate(source, hyp, outcome, ticket)
                    recorded += 1
                release_memory()
    finally:
        for ref, (_, ticket) in in_flight.items():
            ray.cancel(ref, force=True)
            source.release(ticket)
        if judge is not None:
            ray.kill(judge.actor)
        if started_here:
            ray.shutdown()
    return recorded
