"""One key at a time: what a hyp whose default is 0 gains in fitness when moved, paired by seed against the defaults.

The GA multiplies, so it can never move a key whose default is 0 (degrees, shear, mixup, flipud, copy_paste in
hyp.scratch-low.yaml); gp/tpe/cmaes search such a key over the lower half of its meta range (utils/evolve/space.py).
This sweep is the measurement behind that choice and behind the README's remark "degrees 11 gave +0.011 fitness and
shear 5 gave +0.011, while degrees 45 lost 0.025": it trains the defaults and, for each key, the defaults with that key
set to each fraction of its meta upper limit (degrees 45: 2.25, 11.25, 22.5, 45), each on seeds 0..K-1, and prints
the mean and spread of the fitness gain over the defaults of the same seed.

    python benchmarks/zero_default_sweep.py --weights ../shared/weights/yolov5n.pt --data data/coco128.yaml \\
        --imgsz 320 --epochs 1 --batch-size 16 --seeds 4 --noautoanchor
(5 keys x 4 fractions + the defaults = 21 trainings per seed.) A smoke test of the whole path:
    python benchmarks/zero_default_sweep.py --keys degrees --fractions 0.25 --seeds 1 --imgsz 128 --workers 0
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from utils.evolve.meta import META  # noqa: E402
from utils.hyp import load_hyp  # noqa: E402
from utils.metrics import fitness  # noqa: E402

ZERO_KEYS = ("degrees", "shear", "mixup", "flipud", "copy_paste")
FRACTIONS = (0.05, 0.25, 0.5, 1.0)  # of each key's meta upper limit


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", nargs="+", default=list(ZERO_KEYS), choices=ZERO_KEYS, help="hyp keys to move")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS),
                        help="values tried, as fractions of each key's meta upper limit")
    parser.add_argument("--seeds", type=int, default=4, help="training seeds 0..K-1, the same for every point")
    parser.add_argument("--hyp", default="hyp.scratch-low.yaml", help="the defaults")
    parser.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    parser.add_argument("--data", default=str(ROOT / "data/coco128.yaml"))
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="")
    parser.add_argument("--noautoanchor", action="store_true", help="keep the weights' anchors (as evolve_benchmark)")
    return parser.parse_args()


def train_fitness(opt, hyp, seed, project, name):
    """Fitness of one training of `hyp` on `seed` (train.py's own path, quiet, no plots)."""
    run = train.parse_opt(True)
    for key, value in dict(weights=opt.weights, data=opt.data, imgsz=opt.imgsz, epochs=opt.epochs, hyp=hyp,
                           batch_size=opt.batch_size, workers=opt.workers, device=opt.device, seed=seed,
                           noautoanchor=opt.noautoanchor, noplots=True, project=str(project), name=name).items():
        setattr(run, key, value)
    return float(fitness(train.main(run)))


def main():
    opt = parse_args()
    defaults = load_hyp(opt.hyp)
    points = [(key, round(fraction * META[key][2], 6)) for key in opt.keys for fraction in opt.fractions]
    seeds = range(opt.seeds)
    start = time.time()
    with tempfile.TemporaryDirectory() as project:
        base = {seed: train_fitness(opt, defaults, seed, project, f"defaults-{seed}") for seed in seeds}
        gains = {(key, value): [train_fitness(opt, {**defaults, key: value}, seed, project, f"{key}-{value}-{seed}")
                                - base[seed] for seed in seeds] for key, value in points}
    print(f"\ndefaults ({opt.hyp}): fitness {statistics.mean(base.values()):.4f} on seeds 0-{opt.seeds - 1}; "
          f"{len(points) + 1} x {opt.seeds} trainings in {(time.time() - start) / 60:.1f} min")
    print(f"{'key':>12s} {'value':>8s} {'gain (paired by seed)':>24s}")
    for (key, value), deltas in gains.items():
        spread = f" ± {statistics.stdev(deltas):.3f}" if len(deltas) > 1 else ""
        print(f"{key:>12s} {value:8g} {statistics.mean(deltas):+17.3f}{spread}")


if __name__ == "__main__":
    main()
