"""Does an evolution's pick train better than the defaults on seeds it never saw? mutation against gp, end to end.

Each method evolves for --generations with search seed 0 into its own folder (train.py --evolve), then the same command
with --evolve-verify K retrains the default hyps and the 3 best rows on the K unseen seeds 1..K (it verifies without
evolving again). Per method it prints the reported best fitness, that row's verified mean and its gain over the
defaults paired by seed, the verified pick (hyp_evolved.yaml) and the wall time of the search and of the verification.

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
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.evolve.ga import constrain  # noqa: E402
from utils.evolve.meta import evolution_space  # noqa: E402
from utils.evolve.store import EvolveStore  # noqa: E402
from utils.evolve.verify import best_verdict, pick_candidates, recorded, verdicts, verify_seeds  # noqa: E402
from utils.hyp import load_hyp  # noqa: E402

SEARCH_SEED = 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["mutation", "gp"], help="--evolve-method values to compare")
    parser.add_argument("--generations", type=int, default=100, help="generations per method (rows of evolve.csv)")
    parser.add_argument("--seeds", type=int, default=6, help="unseen seeds each pick and the defaults are retrained on")
    parser.add_argument("--imgsz", type=int, default=320, help="train and val image size")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    parser.add_argument("--data", default=str(ROOT / "data/coco128.yaml"))
    parser.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"))
    parser.add_argument("--device", default="", help="cuda device (0) or cpu")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--project", default=str(ROOT / "runs/evolve_benchmark"), help="folder of the method folders")
    return parser.parse_known_args()


def folder_name(args, method):
    return f"{method}-g{args.generations}-img{args.imgsz}-e{args.epochs}-b{args.batch_size}"


def train_command(args, method, verify, extra):
    return [sys.executable, str(ROOT / "train.py"), "--weights", args.weights, "--data", args.data, "--hyp", args.hyp,
            "--imgsz", str(args.imgsz), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--device", args.device, "--workers", str(args.workers), "--seed", str(SEARCH_SEED),
            "--evolve", str(args.generations), "--evolve-method", method, "--evolve-verify", str(verify),
            "--project", args.project, "--name", folder_name(args, method), *extra]


def timed_run(command, log_file):
    """Run `command`, its output appended to `log_file`; returns the wall time in seconds (exits on failure)."""
    start = time.time()
    with open(log_file, "a") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed with exit code {done.returncode}: see {log_file}")
    return time.time() - start


def summarise(folder, initial, seeds):
    """(reported best fitness, row verdict of the reported best, verdict of the verified pick, defaults verdict)."""
    store = EvolveStore(folder)
    history = store.history(tuple(initial))
    rows = verdicts(pick_candidates(history, initial), recorded(store.read_verify()), seeds)
    if rows is None:
        sys.exit(f"{folder} lacks verification results: rerun the benchmark to finish them")
    reported_best = max(rows, key=lambda v: -math.inf if math.isnan(v.candidate.reported) else v.candidate.reported)
    return float(history.fitness.max()), reported_best, best_verdict(rows), rows[0]


def main():
    args, extra = parse_args()
    Path(args.project).mkdir(parents=True, exist_ok=True)
    hyp, meta = evolution_space(load_hyp(args.hyp), "--noautoanchor" in extra)
    initial = constrain(hyp, meta)
    seeds = verify_seeds(SEARCH_SEED, args.seeds)
    lines = []
    for method in args.methods:
        folder = Path(args.project) / folder_name(args, method)
        log_file = Path(args.project) / f"{folder.name}.log"
        print(f"{method}: evolving {args.generations} generations into {folder} (log: {log_file})", flush=True)
        search_s = timed_run(train_command(args, method, 0, extra), log_file)
        print(f"{method}: verifying the defaults and the best 3 rows on seeds {', '.join(map(str, seeds))}", flush=True)
        verify_s = timed_run(train_command(args, method, args.seeds, extra), log_file)
        best, reported, picked, defaults = summarise(folder, initial, seeds)
        lines.append(f"{method:>10s} {best:9.5f} {reported.candidate.row:>5d} {reported.mean:9.5f} "
                     f"{reported.gain:+9.5f} {reported.gain_sd:7.5f} {picked.candidate.row:>5d} {picked.mean:9.5f} "
                     f"{picked.gain:+9.5f} {picked.gain_sd:7.5f} {defaults.mean:9.5f} {search_s:8.0f} {verify_s:8.0f}")
    print(f"\nyolov5 evolution benchmark: {args.generations} generations, {args.epochs} epoch(s) at {args.imgsz} px, "
          f"batch {args.batch_size}, search seed {SEARCH_SEED}, verified on seeds {', '.join(map(str, seeds))}")
    print("fitness = 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95; gains are over the default hyps, paired by seed (mean, sd)")
    print(f"{'method':>10s} {'reported':>9s} {'row':>5s} {'verified':>9s} {'gain':>9s} {'sd':>7s} "
          f"{'pick':>5s} {'verified':>9s} {'gain':>9s} {'sd':>7s} {'defaults':>9s} {'search s':>8s} {'verify s':>8s}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
