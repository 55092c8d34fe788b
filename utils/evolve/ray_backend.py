"""--ray: train candidates as Ray tasks, one per GPU (one per CPU when the cluster has no GPU), the driver records.

Only the driver reads and writes the evolve folder, in the same formats and under the same lock as local runs, so
Ray and plain processes can even share one evolution. With --evolve-prune a task reports each rung to a RungJudge in
an actor pinned to the driver's node, which records the rung in the folder and answers go on or stop, so the nodes
need no shared filesystem.

Faults behave as in the local loop: a task lost with its worker or node is run again by Ray (max_retries); a
candidate whose training raises is logged and skipped (its claim released) while the others go on; a user error (bad
data YAML, missing weights) stops the run at once with its message. The code reaches every node as the job's
runtime_env working_dir; the dataset and the weights are resolved on the driver to absolute paths, which every node
must reach (a shared mount). Each worker process keeps its datasets scanned and cached across its candidates, as a
local process does. Ray is optional: pip install "ray[default]".
"""

import time
from pathlib import Path

from utils.dataset_config import check_dataset
from utils.downloads import attempt_download
from utils.errors import USER_ERRORS, NonFiniteLossError
from utils.evolve.jobs import STOP, WAIT, finish_candidate, train_candidate
from utils.evolve.prune import CandidatePruned, RungJudge, RungReporter
from utils.files import ROOT
from utils.log import LOGGER, colorstr
from utils.memory import release_memory
from utils.reuse import TrainingCache

PREFIX = colorstr("evolve: ")
TASK_RETRIES = 3  # runs of a task lost with its worker or node (not of one whose training raised)
FAILURES_IN_A_ROW = 5  # candidates failing one after another: something is wrong beyond one candidate's hyps
# the checkout travels to every node; what a run writes or loads by absolute path does not
WORKING_DIR_EXCLUDES = [".git", "runs", "**/__pycache__", "*.pt", "*.onnx", "*.torchscript", "*_openvino_model",
                        "*.cache", ".venv", "*.egg-info"]
_worker_cache = None  # in a Ray worker process: the reuse.TrainingCache its candidates share


def import_ray():
    """The ray module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError('--ray needs the optional package Ray: pip install "ray[default]" '
                          "(or evolve without --ray, one process per GPU as in the README)") from e
    return ray


def _worker_training_cache():
    """This worker process's TrainingCache, made by its first candidate: its candidates scan and cache the data once."""
    global _worker_cache
    if _worker_cache is None:
        _worker_cache = TrainingCache()
    return _worker_cache


def _train_task(train_fn, hyp, opt, reporter):
    """Runs on a Ray worker: train on the GPU Ray assigned (it sets CUDA_VISIBLE_DEVICES) or on CPU.

    Returns the 7 results, or the CandidatePruned that stopped the candidate at a rung.
    """
    import ray
    import torch

    on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    opt.device = "0" if on_gpu else "cpu"
    device = torch.device("cuda:0" if on_gpu else "cpu")
    outcome = train_candidate(train_fn, hyp, opt, device, reporter, _worker_training_cache())
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
    """(Ray task options, how many tasks fit at once) for a cluster's resources: 1 GPU per task, else 1 CPU.

    A task lost with its worker or node runs again (max_retries); one whose training raised does not. GPU workers are
    kept between tasks (max_calls 0; Ray's default for GPU tasks is 1), so they keep their cached datasets.
    """
    retries = {"max_retries": TASK_RETRIES, "retry_exceptions": False}
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"num_gpus": 1, "max_calls": 0, **retries}, gpus
    return {"num_cpus": 1, **retries}, max(1, int(resources.get("CPU", 1)))


def runtime_env():
    """The job's runtime_env: this checkout as the working_dir of every worker, whichever node it runs on."""
    return {"working_dir": str(ROOT), "excludes": WORKING_DIR_EXCLUDES}


def portable_paths(opt):
    """{opt field: value} for the dataset and the weights of `opt`, resolved here, on the driver, to absolute paths.

    Workers run from a copy of the checkout (runtime_env), so names relative to it (coco128.yaml's ../datasets) would
    point into that copy; absolute paths name the shared mount every node must have.
    """
    paths = {}
    if getattr(opt, "data", None):
        paths["data"] = check_dataset(opt.data)
    if str(getattr(opt, "weights", "") or "").strip():
        paths["weights"] = str(Path(attempt_download(opt.weights)).resolve())
    return paths


def stops_the_run(error):
    """Whether a candidate's training error is the user's (bad data YAML, missing weights: every candidate would fail
    alike) rather than this candidate's own (its hyps diverged, a worker ran out of memory)."""
    return isinstance(error, USER_ERRORS) and not isinstance(error, NonFiniteLossError)


def run_on_ray(source, device=None, train_fn=None, address=None, num_cpus=None, poll_s=5.0):
    """Keep the cluster busy with the source's candidates until it says STOP; returns the candidates recorded here.

    `source` is a job source as jobs.py describes: an Evolution (generations) or a Verification (retrainings).
    `address` joins an existing cluster (--ray-address); without it a local Ray is started (num_cpus of this machine
    unless given) and shut down at the end. `device` (the driver's) is not used: each task trains on what Ray gave it.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or None, num_cpus=None if address else num_cpus, log_to_driver=True,
                 runtime_env=runtime_env())
    options, capacity = task_options(ray.cluster_resources())
    LOGGER.info(f"{PREFIX}Ray cluster: up to {capacity} candidates at once ({options})")
    remote_train = ray.remote(_train_task).options(**options)
    train_ref = ray.put(train_fn)
    judge = RemoteJudge(ray, source.judge) if source.judge else None
    in_flight = {}  # ObjectRef -> (hyp, ticket)
    recorded, failures, paths = 0, 0, None
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
                    opt = source.candidate_opt(ticket)
                    paths = paths if paths is not None else portable_paths(opt)  # every candidate shares them
                    vars(opt).update(paths)
                    in_flight[remote_train.remote(train_ref, dict(hyp), opt, reporter)] = (hyp, ticket)
                if not in_flight:
                    if step == STOP:
                        break
                    time.sleep(poll_s)  # the method waits for candidates that other processes are training
                    continue
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    hyp, ticket = in_flight.pop(ref)
                    if _collect(ray, ref, source, hyp, ticket, failures):
                        recorded, failures = recorded + 1, 0
                    else:
                        failures += 1
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


def _collect(ray, ref, source, hyp, ticket, failures=0):
    """Record a finished task's candidate (True); log and skip one whose training failed (False), releasing its claim.

    A user error ends the run with its own message; so does the FAILURES_IN_A_ROW-th failure in a row.
    """
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as e:
        source.release(ticket)
        error = getattr(e, "cause", None) or e  # RayTaskError carries the training's exception; a lost node has none
        if stops_the_run(error):
            raise error from None
        message = f"{type(error).__name__}: {(str(error).strip().splitlines() or ['no message'])[-1]}"
        if failures + 1 >= FAILURES_IN_A_ROW:
            raise RuntimeError(f"{FAILURES_IN_A_ROW} candidates failed in a row, the last with {message}: the cause is "
                               "not one candidate's hyps; see the workers' logs above") from error
        LOGGER.warning(f"{PREFIX}a candidate failed and is skipped ({message}); its hyps: {hyp}")
        return False
    except BaseException:
        source.release(ticket)
        raise
    finish_candidate(source, hyp, outcome, ticket)
    return True
