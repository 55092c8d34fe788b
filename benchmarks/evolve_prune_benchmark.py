"""Which evolution improves the user's training most for a fixed compute budget? Searches compared at their horizon.

The user's training: --weights fine-tuned --horizon epochs (yolov5n.pt, 10 epochs on COCO128 at 320 px, batch 16,
--noautoanchor by default). Each search may spend --budget training epochs (default 150):
    gp-1epoch        gp with 1-epoch candidates: --budget candidates (today's way)
    gp-prune         gp --evolve-prune with candidates of up to --horizon epochs, stopped early at rungs
    mutation-prune   the mutation GA, the same way
each from --searches search seeds (--baseline-searches for gp-1epoch when time is short). Every search runs through
the CLI, python train.py ... --evolve N, in a subprocess. A pruned search's N is not known in advance, since a
candidate costs 1 to --horizon epochs: the search starts with budget / horizon candidates (the count if all ran to the
end), then the same command continues the same folder with a larger N, the candidates added being the epochs left
divided by --horizon (at least 1: a round cannot overspend even if every candidate it adds runs to the end), until
evolve_rungs.csv says the epochs spent reach the budget; the overshoot is at most one candidate's epochs, and the table
prints the epochs really spent. (Sizing rounds by the mean epochs per candidate so far overspent: early rounds prune
most candidates at epoch 1, later ones promote more.)
Then each search's pick (its hyp_evolved.yaml) and the default hyps are retrained for --horizon epochs through the CLI
(python train.py --hyp ... --seed s) on --verify-seeds seeds that no search used, and the gain of each pick over the
defaults is paired by seed. Per method and search it prints the candidates tried, how many reached each rung, the
training epochs spent, the wall time, and the verified gain; then per method the mean over its searches.

The full benchmark (about 2 hours on a quiet 2-core CPU, estimated: 6 searches of 150 epochs and 42 retrainings of 10
epochs, where one 10-epoch training takes about 50 s):
    python benchmarks/evolve_prune_benchmark.py --device cpu --cache ram
A smoke test of the whole path (64 px, 2-epoch horizon, a 4-epoch budget, 2 verification seeds, one search each):
    python benchmarks/evolve_prune_benchmark.py --quick --device cpu --workers 0
Other arguments are passed on to every train.py call (e.g. --cache ram). Folders left by an interrupted benchmark are
continued (searches continue to N, finished retrainings are read back); times printed then cover only the remainder.
"""

import argparse
import csv
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evolve_runs import ROOT, add_training_arguments, timed_run, train_command

sys.path.insert(0, str(ROOT))

from utils.evolve.meta import METRIC_KEYS, fitness  # noqa: E402
from utils.evolve.store import CSV_NAME, YAML_NAME, EvolveStore  # noqa: E402
from utils.results import read_rows  # noqa: E402

RUNGS_NAME = "evolve_rungs.csv"  # written beside evolve.csv by --evolve-prune: a row per (candidate, rung)
METHODS = {"gp-1epoch": ("gp", False), "gp-prune": ("gp", True), "mutation-prune": ("mutation", True)}
USER_FLAGS = ("--noautoanchor",)  # the user's training keeps the pretrained anchors
QUICK = dict(imgsz=64, horizon=2, budget=4, searches=1, verify_seeds=2, project=str(ROOT / "runs/evolve_prune_quick"))


@dataclass
class Search:
    method: str
    seed: int
    folder: Path
    tried: int = 0  # candidates started
    rungs: dict = field(default_factory=dict)  # {epoch: candidates that reached it}, pruned searches only
    spent: int = 0  # training epochs
    wall_s: float = 0.0
    gains: tuple = ()  # verified fitness gain over the defaults, per verification seed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    parser.add_argument("--budget", type=int, default=150, help="training epochs each search may spend")
    parser.add_argument("--horizon", type=int, default=10, help="epochs of the user's training")
    parser.add_argument("--searches", type=int, default=2, help="searches per method (search seeds)")
    parser.add_argument("--baseline-searches", type=int, default=None, help="searches of gp-1epoch (default --searches)")
    parser.add_argument("--search-seed", type=int, default=0, help="the first search's --seed; the next add 1")
    parser.add_argument("--verify-seeds", type=int, default=6, help="seeds each pick and the defaults are retrained on")
    parser.add_argument("--verify-seed", type=int, default=100, help="the first verification seed")
    parser.add_argument("--prune-min-epochs", type=int, default=1, help="--evolve-prune-min-epochs of pruned searches")
    parser.add_argument("--prune-eta", type=int, default=3, help="--evolve-prune-eta of pruned searches")
    parser.add_argument("--quick", action="store_true", help="a smoke test: " + ", ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items() if k != "project") + " unless given")
    add_training_arguments(parser)
    parser.add_argument("--project", default=str(ROOT / "runs/evolve_prune_benchmark"), help="benchmark folder")
    args, extra = parser.parse_known_args()
    if args.quick:
        parser.set_defaults(**QUICK)
        args, extra = parser.parse_known_args()
    search_seeds = range(args.search_seed, args.search_seed + max(args.searches, args.baseline_searches or 0))
    verify_seeds = range(args.verify_seed, args.verify_seed + args.verify_seeds)
    if set(search_seeds) & set(verify_seeds):
        parser.error(f"search seeds {list(search_seeds)} and verification seeds {list(verify_seeds)} overlap: "
                     "move --verify-seed past them")
    return args, extra


def read_rungs(folder):
    """(candidates tried, {rung epoch: candidates that reached it}, training epochs spent) from evolve_rungs.csv."""
    path = Path(folder) / RUNGS_NAME
    if not path.exists():
        sys.exit(f"{path} not found after a pruned search: this train.py does not write it (--evolve-prune missing?)")
    with open(path, newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    reached = {(row["candidate"], int(float(row["epoch"]))) for row in rows}
    last_epoch = {}
    for candidate, epoch in reached:
        last_epoch[candidate] = max(epoch, last_epoch.get(candidate, 0))
    counts = Counter(epoch for _, epoch in reached)
    return len(last_epoch), dict(sorted(counts.items())), sum(last_epoch.values())


def run_search(args, extra, method, seed):
    """Run one search to its budget through the CLI; returns its Search with the epochs and wall time it spent."""
    evolve_method, pruned = METHODS[method]
    name = f"{method}-s{seed}-budget{args.budget}-h{args.horizon}-img{args.imgsz}"
    search = Search(method, seed, Path(args.project) / "searches" / name)
    log_file = search.folder.parent / f"{name}.log"
    search.folder.parent.mkdir(parents=True, exist_ok=True)
    flags = ["--hyp", args.hyp, "--seed", seed, "--evolve-method", evolve_method, "--project", search.folder.parent,
             "--name", name, *USER_FLAGS, *extra]
    if not pruned:  # 1-epoch candidates: the budget is the candidate count
        search.wall_s = timed_run(train_command(args, *flags, "--epochs", 1, "--evolve", args.budget), log_file)
        search.tried = search.spent = len(EvolveStore(search.folder).read()[1])
        return search
    flags += ["--epochs", args.horizon, "--evolve-prune", "--evolve-prune-min-epochs", args.prune_min_epochs,
              "--evolve-prune-eta", args.prune_eta]
    count = max(1, args.budget // args.horizon)  # as many as fit if every candidate ran to the end
    while True:
        print(f"{method} seed {seed}: --evolve {count} in {search.folder} (log: {log_file})", flush=True)
        search.wall_s += timed_run(train_command(args, *flags, "--evolve", count), log_file)
        tried, search.rungs, spent = read_rungs(search.folder)
        if spent >= args.budget or (tried, spent) == (search.tried, search.spent):
            break  # spent, or the command added nothing (it would not the next time either)
        search.tried, search.spent = tried, spent
        count = max(count, tried) + max(1, (args.budget - spent) // args.horizon)
    search.tried, search.spent = tried, spent
    return search


def retrain(args, extra, label, hyp_file, seed, log_file):
    """Fitness of `hyp_file` trained for --horizon epochs with --seed `seed`, through the CLI (read back when done)."""
    name = f"{label}-seed{seed}"
    results = Path(args.project) / "verify" / name / "results.csv"
    if len(read_rows(results)) < args.horizon:
        timed_run(train_command(args, "--hyp", hyp_file, "--epochs", args.horizon, "--seed", seed, "--noval",
                                "--nosave", "--noplots", "--project", results.parent.parent, "--name", name,
                                "--exist-ok", *USER_FLAGS, *extra), log_file)
    metrics = read_rows(results)[-1][4:4 + len(METRIC_KEYS)]  # after epoch and the 3 train losses
    return float(fitness(metrics))


def verify(args, extra, searches):
    """Each search's pick and the defaults retrained on the verification seeds: fills Search.gains; the defaults'."""
    seeds = range(args.verify_seed, args.verify_seed + args.verify_seeds)
    log_file = Path(args.project) / "verify.log"
    print(f"retraining the defaults and {len(searches)} picks for {args.horizon} epochs on seeds "
          f"{seeds.start}-{seeds.stop - 1} (log: {log_file})", flush=True)
    label = f"defaults-h{args.horizon}-img{args.imgsz}"
    defaults = [retrain(args, extra, label, args.hyp, seed, log_file) for seed in seeds]
    for search in searches:
        picks = [retrain(args, extra, search.folder.name, search.folder / YAML_NAME, seed, log_file) for seed in seeds]
        search.gains = tuple(p - d for p, d in zip(picks, defaults))
    return defaults


def mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(args, searches, defaults):
    """The table: per method and search, then per method the mean over its searches."""
    seeds = f"{args.verify_seed}-{args.verify_seed + args.verify_seeds - 1}"
    print(f"\nevolve prune benchmark: the user's training is {Path(args.weights).name} fine-tuned {args.horizon} "
          f"epochs at {args.imgsz} px, batch {args.batch_size}, --noautoanchor; budget {args.budget} training epochs "
          f"per search; rungs from {args.prune_min_epochs} epoch(s), eta {args.prune_eta}")
    print(f"verified: each pick (hyp_evolved.yaml) and the defaults retrained {args.horizon} epochs on seeds {seeds}, "
          "no search used them; gain = fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) minus the defaults', paired by seed")
    print(f"defaults at {args.horizon} epochs: {mean_sd(defaults)[0]:.5f} (sd {mean_sd(defaults)[1]:.5f})")
    print(f"{'method':>15s} {'seed':>5s} {'tried':>6s} {'reached rung (epoch:candidates)':>34s} {'epochs':>7s} "
          f"{'wall s':>7s} {'gain':>9s} {'sd':>8s} {'better':>7s}")
    for s in searches:
        rungs = " ".join(f"{e}:{n}" for e, n in s.rungs.items()) or "-"
        gain, sd = mean_sd(s.gains)
        print(f"{s.method:>15s} {s.seed:>5d} {s.tried:>6d} {rungs:>34s} {s.spent:>7d} {s.wall_s:>7.0f} {gain:+9.5f} "
              f"{sd:8.5f} {sum(g > 0 for g in s.gains):>3d}/{len(s.gains)}")
    print(f"\nper method, mean over its searches (gain at {args.horizon} epochs over the defaults):")
    for method in dict.fromkeys(s.method for s in searches):
        mine = [s for s in searches if s.method == method]
        gains = [mean_sd(s.gains)[0] for s in mine]
        note = " (--baseline-searches: fewer searches, time was short)" if (
            method == "gp-1epoch" and len(mine) < args.searches) else ""
        print(f"{method:>15s} {len(mine)} search(es){note}: gain {statistics.mean(gains):+.5f} (per search "
              f"{', '.join(f'{g:+.5f}' for g in gains)}), epochs {statistics.mean(s.spent for s in mine):.0f}, "
              f"wall {statistics.mean(s.wall_s for s in mine):.0f} s")


def main():
    args, extra = parse_args()
    Path(args.project).mkdir(parents=True, exist_ok=True)
    searches = []
    for method in args.methods:
        count = args.baseline_searches if method == "gp-1epoch" and args.baseline_searches else args.searches
        for seed in range(args.search_seed, args.search_seed + count):
            print(f"{method}: search seed {seed}, budget {args.budget} epochs", flush=True)
            searches.append(run_search(args, extra, method, seed))
            if not (searches[-1].folder / CSV_NAME).exists():
                sys.exit(f"{searches[-1].folder} holds no evolve.csv: no candidate ran to the end, so there is no pick")
    defaults = verify(args, extra, searches)
    report(args, searches, defaults)


if __name__ == "__main__":
    main()
