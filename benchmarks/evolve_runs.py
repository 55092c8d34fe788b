"""What the evolution benchmarks share: the user's training flags, and train.py run through the CLI in a subprocess."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_training_arguments(parser, imgsz=320):
    """The flags of the user's training that every search and retraining of a benchmark shares."""
    parser.add_argument("--imgsz", type=int, default=imgsz, help="train and val image size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    parser.add_argument("--data", default=str(ROOT / "data/coco128.yaml"))
    parser.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"))
    parser.add_argument("--device", default="", help="cuda device (0) or cpu")
    parser.add_argument("--workers", type=int, default=8)


def train_command(args, *flags):
    """python train.py with the shared training flags of `args`, then `flags`."""
    return [sys.executable, str(ROOT / "train.py"), "--weights", args.weights, "--data", args.data,
            "--imgsz", str(args.imgsz), "--batch-size", str(args.batch_size), "--device", args.device,
            "--workers", str(args.workers), *map(str, flags)]


def timed_run(command, log_file):
    """Run `command`, its output appended to `log_file`; returns the wall time in seconds (exits on failure)."""
    start = time.time()
    with open(log_file, "a") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed with exit code {done.returncode}: see {log_file}")
    return time.time() - start
