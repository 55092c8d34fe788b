"""Training-loader throughput (images/s, mosaic augmentation) at several image sizes, and peak resident memory.

    python benchmarks/loader_benchmark.py                      # coco128 (a temporary copy if it is only in ../shared)
    python benchmarks/loader_benchmark.py --data path/to/images --imgsz 320 640 --workers 2 --batches 40
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.dataloaders import create_dataloader  # noqa: E402

COCO128_IMAGES = Path("datasets/coco128/images/train2017")


def peak_rss_mb(pid="self"):
    """Peak resident set size (VmHWM) of a process in MB, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child_pids():
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        pids += children.read_text().split()
    return pids


def synthetic_images(folder, count=128, seed=0):
    """640x480 noisy images with a few labelled rectangles, for machines without coco128."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(count):
        im = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        rows = []
        for _ in range(5):
            w, h = rng.uniform(0.05, 0.4, 2)
            x, y = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            im[int((y - h / 2) * 480):int((y + h / 2) * 480), int((x - w / 2) * 640):int((x + w / 2) * 640)] = 40 * i % 255
            rows.append(f"{i % 5} {x:.5f} {y:.5f} {w:.5f} {h:.5f}")
        cv2.imwrite(str(folder / "images" / f"{i}.jpg"), im)
        (folder / "labels" / f"{i}.txt").write_text("\n".join(rows) + "\n")
    return folder / "images"


def pick_images(data, scratch):
    """The image folder to read: --data, else ../datasets/coco128, else a copy of ../shared's, else synthetic."""
    if data:
        return Path(data)
    local, shared = ROOT.parent / COCO128_IMAGES, ROOT.parent / "shared" / COCO128_IMAGES
    if local.is_dir():
        return local
    if shared.is_dir():  # never write caches into ../shared: work on a copy
        copy = scratch / "coco128"
        shutil.copytree(shared.parents[1], copy)
        return copy / "images" / "train2017"
    return synthetic_images(scratch / "synthetic")


def measure(images, imgsz, batch_size, workers, batches, hyp):
    loader, dataset = create_dataloader(str(images), imgsz, batch_size, 32, hyp=hyp, augment=True, workers=workers,
                                        shuffle=True, prefix="benchmark: ")
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    seen, start, done = 0, time.perf_counter(), 0
    while done < batches:
        for imgs, *_ in iterator:
            seen += len(imgs)
            done += 1
            if done == batches:
                break
        else:
            iterator = iter(loader)
    elapsed = time.perf_counter() - start
    workers_rss = max((peak_rss_mb(pid) for pid in child_pids()), default=0.0)
    return seen / elapsed, loader.num_workers, workers_rss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="", help="image folder or .txt list (labels under /labels/)")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per image size")
    parser.add_argument("--hyp", default=str(ROOT / "data" / "hyps" / "hyp.scratch-low.yaml"))
    opt = parser.parse_args()
    with open(opt.hyp) as f:
        hyp = yaml.safe_load(f)
    with tempfile.TemporaryDirectory() as scratch:
        images = pick_images(opt.data, Path(scratch))
        print(f"data: {images}  batch {opt.batch_size}, mosaic {hyp['mosaic']}, mixup {hyp['mixup']}")
        print(f"{'imgsz':>6} {'workers':>8} {'images/s':>9} {'peak RSS MB per worker':>23}")
        for imgsz in opt.imgsz:
            rate, workers, workers_rss = measure(images, imgsz, opt.batch_size, opt.workers, opt.batches, hyp)
            print(f"{imgsz:>6} {workers:>8} {rate:>9.1f} {workers_rss:>23.0f}")
    print(f"main process peak RSS: {peak_rss_mb():.0f} MB (workers are forks: much of their RSS is shared with it)")


if __name__ == "__main__":
    main()
