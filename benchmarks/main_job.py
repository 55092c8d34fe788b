"""The README's main job, run exactly as written, timed: wall time, seconds per epoch and the final mAPs.

The README's first command after `pip install` is
    python train.py --data shapes.yaml --cfg yolov5n.yaml --weights '' --hyp hyp.shapes.yaml --img 256 --batch 16 --epochs 40
This script runs it as a separate process from the project root (so it writes runs/train/expN as a user's run would),
notes when each row of its results.csv appears, and prints:
- wall time: from the command's start to its exit (dataset generation on first use, the final best.pt validation and
  plots included, as a user waits for them),
- seconds per epoch: the median time between consecutive results.csv rows (an epoch's training and validation),
- the final mAP@0.5 and mAP@0.5:0.95: the last results.csv row (the last epoch's validation).

    python benchmarks/main_job.py               # the README's figures (about 8 minutes on a quiet 2-core CPU)
    python benchmarks/main_job.py --epochs 2    # a check of the script: the same command with --epochs 2
Other arguments are passed on to train.py after the README's (e.g. --device 0, --project /tmp/runs).
"""

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.results import RESULT_KEYS, read_rows  # noqa: E402

README_JOB = ["train.py", "--data", "shapes.yaml", "--cfg", "yolov5n.yaml", "--weights", "", "--hyp", "hyp.shapes.yaml",
              "--img", "256", "--batch", "16", "--epochs", "40"]
MAP50, MAP = 1 + RESULT_KEYS.index("metrics/mAP_0.5"), 1 + RESULT_KEYS.index("metrics/mAP_0.5:0.95")  # after epoch
SAVE_DIR = re.compile(r"Logging results to (?:\x1b\[[0-9;]*m)*(.+?)(?:\x1b\[[0-9;]*m)*$")
POLL_SECONDS = 0.5


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs (the README's job: 40)")
    return parser.parse_known_args()


def job_command(epochs, extra):
    """The README's command for this interpreter, with --epochs replaced and any extra train.py arguments appended."""
    command = list(README_JOB)
    command[command.index("--epochs") + 1] = str(epochs)
    return [sys.executable, *command, *extra]


def watch_rows(path, start, stop, times):
    """Until `stop` is set, poll results.csv and append the time (since `start`) at which each new row appeared."""
    seen = 0
    while not stop.is_set():
        rows = len(read_rows(path)) if path.exists() else 0
        times += [time.perf_counter() - start] * max(0, rows - seen)
        seen = max(seen, rows)
        stop.wait(POLL_SECONDS)


def run_and_watch(command):
    """Run the job from the project root, echoing its output; returns (exit code, wall seconds, save_dir, row times).

    Row times are when each results.csv row was first seen (polled every POLL_SECONDS, so the gaps between them are
    exact to about a second).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    save_dir, row_times, stop, watcher = None, [], threading.Event(), None
    for line in process.stdout:
        sys.stdout.write(line)
        match = save_dir is None and SAVE_DIR.search(line.rstrip())
        if match:
            save_dir = ROOT / match.group(1)  # an absolute path stays as it is
            watcher = threading.Thread(target=watch_rows, args=(save_dir / "results.csv", start, stop, row_times))
            watcher.start()
    code = process.wait()
    wall = time.perf_counter() - start
    stop.set()
    if watcher is not None:
        watcher.join()
    return code, wall, save_dir, row_times


def main():
    opt, extra = parse_args()
    command = job_command(opt.epochs, extra)
    print("running:", " ".join(repr(x) if x == "" else x for x in command[1:]), flush=True)
    code, wall, save_dir, row_times = run_and_watch(command)
    if code:
        sys.exit(f"train.py exited with status {code}")
    if save_dir is None:
        sys.exit("train.py never printed 'Logging results to ...': cannot find its results.csv")
    rows = read_rows(save_dir / "results.csv")
    gaps = [b - a for a, b in zip(row_times, row_times[1:])]
    per_epoch = f"{statistics.median(gaps):.1f} s" if gaps else "n/a (one epoch)"
    print(f"\nmain job ({opt.epochs} epochs, {save_dir}): wall time {wall / 60:.1f} min ({wall:.0f} s), "
          f"{per_epoch} per epoch (validation included), final mAP@0.5 {rows[-1][MAP50]:.3f}, "
          f"mAP@0.5:0.95 {rows[-1][MAP]:.3f}")


if __name__ == "__main__":
    main()
