"""What one --evolve generation costs in a long evolution: seconds per generation and resident memory, generation by
generation, with the datasets, the built model and the val batches reused across generations (the TrainingCache
--evolve gives its candidates) and, for comparison, everything rebuilt each time.

    python benchmarks/evolve_cost.py --data coco128.yaml --weights ../shared/weights/yolov5n.pt --img 320 --cache ram \
        --generations 20 --rebuilt-generations 5
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from utils.device import select_device  # noqa: E402
from utils.evolve.runner import run_evolution  # noqa: E402
from utils.memory import release_memory  # noqa: E402


def rss_mb():
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def evolve(args, folder, generations, reuse=True):
    """Run an evolution of `generations` into `folder`; returns [(seconds, RSS MB after it)] per generation.
    reuse: the candidates get the loop's TrainingCache (as --evolve does), else each builds everything afresh."""
    samples = []

    def timed_train(hyp, opt, device, callbacks=None, cache=None):
        start = time.perf_counter()
        results = train.quiet_train(hyp, opt, device, callbacks, cache if reuse else None)
        seconds = time.perf_counter() - start
        release_memory()  # as the loop does after every generation
        samples.append((seconds, rss_mb()))
        return results

    opt = train.parse_opt(known=True)
    for key, value in dict(data=args.data, weights=args.weights, cfg=args.cfg, imgsz=[args.img], epochs=args.epochs,
                           batch_size=args.batch, cache=args.cache, workers=args.workers, device="cpu",
                           evolve=generations, project=str(folder), name="exp", seed=0).items():
        setattr(opt, key, value)
    opt = train.check_train_options(train.apply_legacy_flags(opt))
    run_evolution(opt, select_device("cpu"), timed_train)
    return samples


def report(title, samples):
    seconds = [s for s, _ in samples]
    print(f"\n{title}")
    print(f"{'generation':>10} {'seconds':>8} {'RSS MB after':>13}")
    for i, (s, rss) in enumerate(samples, 1):
        print(f"{i:>10} {s:>8.1f} {rss:>13.0f}")
    later = seconds[1:] or seconds
    print(f"median seconds per generation after the first: {statistics.median(later):.1f} (first {seconds[0]:.1f})")
    return statistics.median(later)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="coco128.yaml")
    parser.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    parser.add_argument("--cfg", default="")
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cache", default="ram", help="ram, disk or '' (none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generations", type=int, default=20, help="generations of the main (reusing) evolution")
    parser.add_argument("--rebuilt-generations", type=int, default=5, help="generations with datasets rebuilt")
    args = parser.parse_args()
    args.cache = args.cache or None

    with tempfile.TemporaryDirectory() as scratch:
        reused = evolve(args, Path(scratch) / "reused", args.generations)
        rebuilt = []
        if args.rebuilt_generations:
            rebuilt = evolve(args, Path(scratch) / "rebuilt", args.rebuilt_generations, reuse=False)
    reused_s = report("datasets, model and val batches reused across generations (what --evolve does)", reused)
    if rebuilt:
        rebuilt_s = report("everything rebuilt every generation (YOLOv5's way)", rebuilt)
        print(f"\nseconds per generation: {rebuilt_s:.1f} rebuilt -> {reused_s:.1f} reused")
    if len(reused) >= 20:
        third, twentieth = reused[2][1], reused[19][1]
        print(f"RSS after generation 3: {third:.0f} MB, after generation 20: {twentieth:.0f} MB "
              f"({(twentieth / third - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
