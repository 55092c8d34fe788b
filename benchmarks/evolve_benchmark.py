"""Does an evolution's pick train better than the defaults on seeds it never saw? mutation against gp, end to end.

Each method evolves for --generations with search seed 0 into its own folder (train.py --evolve), then the same command
with --evolve-verify K retrains the default hyps and the 3 best rows on the K unseen pick seeds 1..K and the pick and
the defaults on the K report seeds K+1..2K (it verifies without evolving again). Per method it prints the reported best
fitness, that row's gain over the defaults on the pick seeds, the pick, its gain on the pick seeds and on the report
seeds (paired by seed), what hyp_evolved.yaml keeps, and the wall time of the search and of the verification.

The full benchmark (about 25 minutes on a quiet 2-core CPU). --noautoanchor keeps yolov5n.pt's anchors, which AutoAnchor
would otherwise replace at 320 px (BPR 0.957); with them kept the defaults score 0.296, as YOLOv5's own run did (0.297):
    python benchmarks/evolve_benchmark.py --weights ../shared/weights/yolov5n.pt --data data/coco128.yaml \\
        --imgsz 320 --epochs 1 --batch-size 16 --generations 100 --seeds 6 --noautoanchor
A smoke test of the whole path:
    python benchmarks/evolve_benchmark.py --generations 3 --seeds 2 --imgsz 128 --device cpu --workers 0
Other arguments are passed on to train.py (e.g. --cache ram). A folder left by an interrupted benchmark is continued:
train.py counts the rows already there, and the times printed then cover only the remainder.
"""

import argparse
import math
import sys
from pathlib import Path

from evolve_runs import ROOT, add_training_arguments, timed_run
from evolve_runs import train_command as cli_command

sys.path.insert(0, str(ROOT))

from utils.evolve.ga import constrain  # noqa: E402
from utils.evolve.meta import evolution_space  # noqa: E402
from utils.evolve.store import EvolveStore  # noqa: E402
from utils.evolve.verify import judge, pick_candidates, recorded, verify_seeds  # noqa: E402
from utils.hyp import load_hyp  # noqa: E402

SEARCH_SEED = 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["mutation", "gp"], help="--evolve-method values to compare")
    parser.add_argument("--generations", type=int, default=100, help="generations per method (rows of evolve.csv)")
    parser.add_argument("--seeds", type=int, default=6, help="K: unseen seeds to pick on, and K more to report on")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training")
    add_training_arguments(parser)
    parser.add_argument("--project", default=str(ROOT / "runs/evolve_benchmark"), help="folder of the method folders")
    return parser.parse_known_args()


def folder_name(args, method):
    return f"{method}-g{args.generations}-img{args.imgsz}-e{args.epochs}-b{args.batch_size}"


def train_command(args, method, verify, extra):
    return cli_command(args, "--hyp", args.hyp, "--epochs", args.epochs, "--seed", SEARCH_SEED,
                       "--evolve", args.generations, "--evolve-method", method, "--evolve-verify", verify,
                       "--project", args.project, "--name", folder_name(args, method), *extra)


def summarise(folder, initial, epochs, pick_seeds, report_seeds):
    """(reported best fitness, the reported best row's verdict on the pick seeds, the whole Verdict)."""
    store = EvolveStore(folder)
    history = store.history(tuple(initial))
    verdict = judge(pick_candidates(history, initial), recorded(store.read_verify(), epochs), pick_seeds, report_seeds)
    if verdict is None:
        sys.exit(f"{folder} lacks verification results: rerun the benchmark to finish them")
    reported_best = max(verdict.picking,
                        key=lambda v: -math.inf if math.isnan(v.candidate.reported) else v.candidate.reported)
    return float(history.fitness.max()), reported_best, verdict


def main():
    args, extra = parse_args()
    Path(args.project).mkdir(parents=True, exist_ok=True)
    hyp, meta = evolution_space(load_hyp(args.hyp), "--noautoanchor" in extra)
    initial = constrain(hyp, meta)
    pick_seeds, report_seeds = verify_seeds(SEARCH_SEED, args.seeds)
    lines = []
    for method in args.methods:
        folder = Path(args.project) / folder_name(args, method)
        log_file = Path(args.project) / f"{folder.name}.log"
        print(f"{method}: evolving {args.generations} generations into {folder} (log: {log_file})", flush=True)
        search_s = timed_run(train_command(args, method, 0, extra), log_file)
        print(f"{method}: verifying the defaults and the best 3 rows", flush=True)
        verify_s = timed_run(train_command(args, method, args.seeds, extra), log_file)
        best, reported, verdict = summarise(folder, initial, args.epochs, pick_seeds, report_seeds)
        report = verdict.report
        report_text = f"{report.gain:+9.5f} {report.gain_sd:7.5f}" if report else f"{'-':>9s} {'-':>7s}"
        kept = "initial" if verdict.kept is verdict.picking[0].candidate else str(verdict.kept.row)
        lines.append(f"{method:>10s} {best:9.5f} {reported.candidate.row:>5d} {reported.gain:+9.5f} "
                     f"{verdict.pick.candidate.row:>5d} {verdict.pick.gain:+9.5f} {report_text} {kept:>8s} "
                     f"{verdict.picking[0].mean:9.5f} {search_s:8.0f} {verify_s:8.0f}")
    print(f"\nyolov5 evolution benchmark: {args.generations} generations, {args.epochs} epoch(s) at {args.imgsz} px, "
          f"batch {args.batch_size}, search seed {SEARCH_SEED}, picked on seeds {', '.join(map(str, pick_seeds))}, "
          f"reported on seeds {', '.join(map(str, report_seeds))}")
    print("fitness = 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95; gains are over the default hyps, paired by seed (mean, sd)")
    print(f"{'method':>10s} {'reported':>9s} {'row':>5s} {'gain':>9s} {'pick':>5s} {'gain':>9s} {'report':>9s} "
          f"{'sd':>7s} {'kept':>8s} {'defaults':>9s} {'search s':>8s} {'verify s':>8s}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
