"""CPU speed and mAP of a YOLOv5 model as .pt and as its ONNX Runtime and OpenVINO exports, through val.py.

    python benchmarks/export_benchmark.py --weights ../shared/weights/yolov5n.pt --data coco128.yaml --img 640 \
        --batch-size 32

The weights are copied into --workdir and exported there with --dynamic (so that every runtime validates the same
rectangular batches of --batch-size), and once more static for the row that follows YOLOv5's rule for exports
(batch 1, square images). Each row runs in a fresh process (CPU settings and the allocator are process-wide):

  infer ms/img  median over --repeats of one forward of a --batch-size x 3 x --img x --img batch (static: 1 image)
  val s         wall seconds of val.run over the val split (dataset, inference, NMS, metrics), after one warm-up run
  val infer     val.py's own inference ms/image in that run
  P R mAP50 mAP the metrics of that run
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import export  # noqa: E402
import val  # noqa: E402
from models.backends import DetectMultiBackend, is_pytorch_weights  # noqa: E402
from models.experimental import attempt_load  # noqa: E402
from utils.precision import select_precision  # noqa: E402

ROWS = {  # name: (weights file in the workdir, amp, row label)
    "pt": ("{stem}.pt", True, ".pt, bf16 autocast (default)"),
    "pt-fp32": ("{stem}.pt", False, ".pt, fp32 (--no-amp)"),
    "onnx": ("dynamic/{stem}.onnx", True, "ONNX Runtime, fp32"),
    "openvino": ("dynamic/{stem}_openvino_model", True, "OpenVINO, its default precision"),
    "openvino-fp32": ("dynamic/{stem}_openvino_model", False, "OpenVINO, f32 (--no-amp)"),
    "onnx-static": ("static/{stem}.onnx", True, "ONNX Runtime, static (batch 1, square)"),
}


def time_inference(weights, amp, batch_size, imgsz, repeats):
    """Median ms/image of one forward on a batch of zeros, after one warm-up forward."""
    device = torch.device("cpu")
    if is_pytorch_weights(weights):
        precision = select_precision(device, amp=amp)
        model = precision.model(attempt_load(weights, device=device, fuse=True))
        run = lambda x: precision.infer(model, precision.batch(x))  # noqa: E731  (val.py's .pt path)
    else:
        model = DetectMultiBackend(weights, device=device, amp=amp)
        batch_size = batch_size if model.dynamic else 1
        run = model
    im = torch.zeros(batch_size, 3, imgsz, imgsz)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t = time.perf_counter()
            run(im)
            times.append((time.perf_counter() - t) / batch_size * 1e3)
    return statistics.median(times[1:])


def child(opt):
    """One row, in this process: the inference timing, a warm-up val.run and a measured one; JSON on stdout."""
    weights = str(Path(opt.workdir) / ROWS[opt.child][0].format(stem=Path(opt.weights).stem))
    amp = ROWS[opt.child][1]
    infer = time_inference(weights, amp, opt.batch_size, opt.imgsz, opt.repeats)
    kwargs = dict(data=opt.data, weights=weights, batch_size=opt.batch_size, imgsz=opt.imgsz, amp=amp,
                  device="cpu", workers=opt.workers, plots=False, project=Path(opt.workdir) / "val", exist_ok=True)
    val.run(**kwargs)  # warm-up: oneDNN and OpenVINO plan their kernels for every batch shape
    t = time.perf_counter()
    results, _, speeds = val.run(**kwargs)
    wall = time.perf_counter() - t
    print(json.dumps({"infer": infer, "val_s": wall, "val_infer": speeds[1], "metrics": results[:4]}))


def prepare(opt):
    """The weights copied into the workdir, exported --dynamic (ONNX, OpenVINO) and static (ONNX)."""
    work = Path(opt.workdir)
    for sub, dynamic, include in (("dynamic", True, ["onnx", "openvino"]), ("static", False, ["onnx"])):
        (work / sub).mkdir(parents=True, exist_ok=True)
        target = work / sub / Path(opt.weights).name
        shutil.copyfile(opt.weights, target)
        export.run(weights=target, imgsz=[opt.imgsz], batch_size=1, include=include, dynamic=dynamic)
    shutil.copyfile(opt.weights, work / Path(opt.weights).name)


def main(opt):
    prepare(opt)
    rows = []
    for name in opt.rows:
        cmd = [sys.executable, __file__, "--child", name, "--weights", str(opt.weights), "--data", str(opt.data),
               "--imgsz", str(opt.imgsz), "--batch-size", str(opt.batch_size), "--workers", str(opt.workers),
               "--repeats", str(opt.repeats), "--workdir", str(opt.workdir)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"row {name} failed:\n{out.stderr[-3000:]}")
        rows.append((ROWS[name][2], json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"\nexport benchmark: {opt.weights}, {opt.data}, --img {opt.imgsz}, --batch-size {opt.batch_size}, "
          f"CPU threads {torch.get_num_threads()}")
    print(f"{'':<42}{'infer ms/img':>13}{'val s':>8}{'val infer':>11}{'P':>7}{'R':>7}{'mAP50':>7}{'mAP':>7}")
    for label, r in rows:
        p, rec, map50, map_ = r["metrics"]
        print(f"{label:<42}{r['infer']:>13.1f}{r['val_s']:>8.1f}{r['val_infer']:>11.1f}"
              f"{p:>7.3f}{rec:>7.3f}{map50:>7.3f}{map_:>7.3f}")
    return rows


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description="CPU speed and mAP of a .pt and its ONNX Runtime/OpenVINO exports")
    parser.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    parser.add_argument("--data", default=str(ROOT / "data/coco128.yaml"))
    parser.add_argument("--imgsz", "--img", type=int, default=640)
    parser.add_argument("--batch-size", "--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per row (median)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--workdir", default=str(ROOT / "runs/export_benchmark"))
    parser.add_argument("--child", choices=list(ROWS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse_opt()
    child(options) if options.child else main(options)
