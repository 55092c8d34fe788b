"""Wall time of three whole jobs as a user runs them, against Ultralytics YOLOv5's figures for the same jobs.

Each job runs through the CLI in a fresh process from the project root, the whole process timed (imports, model and
data set-up, plots and the final validation included), in two modes taking turns so that both see the same machine
load: this toolkit's defaults, and the toolkit on YOLOv5's fp32 path (--no-amp; for the evolve job also without
--cache ram, as YOLOv5's figure was taken both ways). Figures are medians over --repeats.

    ft10       python train.py --weights yolov5n.pt --data coco128.yaml --img 640 --batch 16 --epochs 10
               (validation every epoch), and its final mAP@0.5:0.95
    val        python val.py --weights yolov5n.pt --data coco128.yaml --img 640 --batch 32, and its mAP@0.5:0.95
    evolve     python train.py --weights yolov5n.pt --data coco128.yaml --img 320 --batch 16 --epochs 1 --evolve 8
               [--cache ram]: the process's wall time / 8 (start-up shared out over the 8 candidates)

YOLOv5's figures (YOLOV5_SECONDS) were measured with Ultralytics' own code on a 2-core AMD EPYC with AVX512-BF16,
one job at a time (issue 20); they are quoted, not re-measured here.

    python benchmarks/yolov5_jobs.py --repeats 3                  # every job (about 30 minutes on a quiet 2-core CPU)
    python benchmarks/yolov5_jobs.py --jobs val evolve --repeats 3
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared/weights/yolov5n.pt"
YOLOV5_SECONDS = {"ft10": 398.0, "val": 20.5, "evolve": 11.9}
MAP_LINE = re.compile(r"^\s+all\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s*$", re.M)


def commands(job, weights, data, project):
    """{mode: command} of one job: the toolkit's defaults and the toolkit on YOLOv5's fp32 path."""
    common = ["--weights", str(weights), "--data", data]
    if job == "ft10":
        base = [sys.executable, "train.py", *common, "--img", "640", "--batch", "16", "--epochs", "10",
                "--project", project, "--name", "ft10"]
        return {"defaults": base, "fp32": [*base, "--no-amp"]}
    if job == "val":
        base = [sys.executable, "val.py", *common, "--img", "640", "--batch", "32", "--project", project]
        return {"defaults": base, "fp32": [*base, "--no-amp"]}
    base = [sys.executable, "train.py", *common, "--img", "320", "--batch", "16", "--epochs", "1", "--evolve", "8",
            "--project", project]
    return {"defaults": [*base, "--cache", "ram", "--name", "cached"], "fp32": [*base, "--no-amp", "--name", "plain"],
            "defaults, no --cache": [*base, "--name", "nocache"]}


def run_once(command):
    """(wall seconds, last 'all' mAP@0.5:0.95 printed or None) of one process; exits on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    maps = MAP_LINE.findall(done.stdout + done.stderr)
    return seconds, float(maps[-1]) if maps else None


def measure(job, args):
    """{mode: [(seconds, mAP)]}, the modes taking turns within each repeat."""
    samples = {}
    with tempfile.TemporaryDirectory() as project:
        for repeat in range(args.repeats):
            for mode, command in commands(job, args.weights, args.data, f"{project}/{repeat}").items():
                seconds, map_ = run_once(command)
                if job == "evolve":
                    seconds /= 8
                samples.setdefault(mode, []).append((seconds, map_))
                print(f"  {job} {mode} run {repeat + 1}: {seconds:.1f} s" + (f", mAP@0.5:0.95 {map_}" if map_ else ""),
                      flush=True)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", nargs="+", choices=("ft10", "val", "evolve"), default=["ft10", "val", "evolve"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--data", default="coco128.yaml")
    args = parser.parse_args()
    if not Path(args.weights).exists():
        sys.exit(f"{args.weights} not found: pass --weights path/to/yolov5n.pt")
    rows = []
    for job in args.jobs:
        for mode, samples in measure(job, args).items():
            seconds = statistics.median(s for s, _ in samples)
            maps = [m for _, m in samples if m is not None]
            rows.append((job, mode, seconds, statistics.median(maps) if maps else None, len(samples)))
    print(f"\n{'job':>7} {'mode':>21} {'median s':>9} {'mAP50-95':>9} {'YOLOv5 s':>9} {'speed-up':>9} {'runs':>5}")
    for job, mode, seconds, map_, runs in rows:
        yolov5_s = YOLOV5_SECONDS[job]
        map_text = f"{map_:.3f}" if map_ is not None else "-"
        print(f"{job:>7} {mode:>21} {seconds:9.1f} {map_text:>9} {yolov5_s:9.1f} {yolov5_s / seconds:8.2f}x {runs:>5}")
    print("YOLOv5's seconds: Ultralytics' code on a 2-core AMD EPYC (AVX512-BF16), quoted from issue 20 "
          "(ft10 mAP@0.5:0.95 0.409); evolve rows are seconds per candidate")


if __name__ == "__main__":
    main()
