"""Training, validation and inference speed of a YOLOv5 model on this machine, and optionally the plain path's.

    python benchmarks/speed.py --weights ../shared/weights/yolov5n.pt --data coco128.yaml --img 640 --batch 16 \
        --compare-fp32
    python benchmarks/speed.py --cfg yolov5n.yaml --data shapes.yaml --img 256 --tasks train

Modes: 'amp' is what train.py and val.py run by default (select_precision: bf16 autocast on CPUs with native bf16,
fp16 on CUDA, channels_last, the CPU runtime tuned). 'fp32' (--compare-fp32) is this toolkit on the plain path YOLOv5
runs on a CPU: fp32 NCHW with torch's and glibc's defaults, and a re-implementation of YOLOv5's NMS
(benchmarks/yolov5_nms.py); it is not Ultralytics' code. Each task of each mode runs in a fresh process
(CPU settings and allocator state are process-wide), the two modes taking turns measurement by measurement so that
both see the same machine load. Every figure is the median over --repeats, after one warm-up round per task.

  train e2e     images/s of EpochRunner (the project's loss, SGD, EMA, gradient accumulation to 64) over the
                augmenting train loader (mosaic, hyp file), loader waits included; 'data wait %' is their share
  train step    images/s of the same steps over batches already loaded
  val           val.run over the val split (rect batches, conf 0.001, NMS, metrics): images/s and wall seconds,
                and the metrics it gives ('first' is the warm-up run, which plans oneDNN kernels for every shape)
  infer         ms/image of one forward of the fused model on a --val-batch x 3 x --img x --img batch
  peak MB       the mode's process peak memory during the measurement (CPU: RSS, loader workers not included;
                CUDA: allocated)
"""

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import val  # noqa: E402
from benchmarks.yolov5_nms import yolov5_non_max_suppression  # noqa: E402
from models.experimental import attempt_load  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.cpu_threads import STARTUP_THREADS  # noqa: E402
from utils.dataloaders import create_dataloader  # noqa: E402
from utils.dataset_config import check_dataset  # noqa: E402
from utils.device import select_device  # noqa: E402
from utils.ema import ModelEMA  # noqa: E402
from utils.hyp import load_hyp, scale_hyp_to_model  # noqa: E402
from utils.log import LOGGER  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402
from utils.memory import retain_freed_memory  # noqa: E402
from utils.model_utils import check_img_size  # noqa: E402
from utils.optim import smart_optimizer  # noqa: E402
from utils.precision import Precision, select_precision  # noqa: E402
from utils.schedule import scaled_weight_decay  # noqa: E402
from utils.train.loop import EpochRunner, EpochSettings  # noqa: E402
from utils.train.setup import build_model, compiled_forward  # noqa: E402

MODES = ("amp", "fp32")
TASKS = ("train", "val", "infer")


def mode_precision(mode, device):
    """'amp': the project's default precision for the device; 'fp32': fp32 NCHW, CPU runtime left to its defaults."""
    return select_precision(device) if mode == "amp" else Precision(device.type)


@contextlib.contextmanager
def peak_memory(device, out):
    """Set out['peak MB'] to the process's peak memory inside the block: CUDA allocated bytes; on the CPU the peak
    RSS (VmHWM, first reset to the current RSS through /proc/self/clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield
        out["peak MB"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    yield
    out["peak MB"] = _status_kib("VmHWM") / 1024 or float("nan")


def _status_kib(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Stream:
    """Endless batches from a loader, adding up the seconds spent waiting for them."""

    def __init__(self, loader):
        self.iterator = itertools.chain.from_iterable(itertools.repeat(loader))
        self.wait = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        batch = next(self.iterator)
        self.wait += time.perf_counter() - start
        return batch


class Steps:
    """`n` batches from an endless iterator: one 'epoch' for EpochRunner.run."""

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __len__(self):
        return self.n

    def __iter__(self):
        return itertools.islice(self.source, self.n)


class Trainer:
    """One mode's model, optimizer, EMA and EpochRunner, built as train.py builds them (no LR warmup: the steps
    measured are those after it, with gradients accumulated to a nominal batch of 64)."""

    def __init__(self, precision, opt, data, hyp, device, stride):
        torch.manual_seed(0)
        nc = int(data["nc"])
        model, _ = build_model(Namespace(weights=opt.weights, cfg=opt.cfg), hyp, nc, device)
        precision.model(model)
        optimizer = smart_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"],
                                    scaled_weight_decay(hyp["weight_decay"], opt.batch))
        model.nc, model.names = nc, data["names"]
        model.hyp = scale_hyp_to_model(hyp, model.model[-1].nl, nc, opt.img)
        forward = compiled_forward(model, opt.compile and precision.enabled)
        settings = EpochSettings.from_options(Namespace(quad=False, multi_scale=False), model.hyp, epochs=1,
                                              batch_size=opt.batch, imgsz=opt.img, stride=stride, warmup_iters=-1,
                                              verbose=False)
        self.runner = EpochRunner(forward, model, optimizer, ModelEMA(model), ComputeLoss(model), precision, settings,
                                  lr_lambda=lambda epoch: 1.0, device=device,
                                  on_batch_end=lambda *args: self.ends.append(time.perf_counter()))
        self.model, self.epoch, self.ends = model, 0, []

    def run(self, batches, n, timed):
        """Run n steps over `batches` (an iterator); seconds taken by the last `timed` of them."""
        self.model.train()
        self.ends = [time.perf_counter()]
        self.runner.run(Steps(batches, n), self.epoch)  # every run has the same n: iterations keep counting up
        self.epoch += 1
        return self.ends[-1] - self.ends[-1 - timed]


@contextlib.contextmanager
def plain_val():
    """val.run as YOLOv5 runs on a CPU: fp32 NCHW with torch's and glibc's defaults, and YOLOv5's NMS."""
    saved = val.select_precision, val.non_max_suppression
    val.select_precision = lambda device, amp=True, channels_last=None: Precision(torch.device(device).type)
    val.non_max_suppression = yolov5_non_max_suppression
    try:
        yield
    finally:
        val.select_precision, val.non_max_suppression = saved


class Bench:
    """One mode's measurements, in its own process: each task's model and data are built at its first request."""

    def __init__(self, mode, opt):
        LOGGER.setLevel(logging.WARNING)
        self.mode, self.opt = mode, opt
        self.device = select_device(opt.device)
        self.precision = mode_precision(mode, self.device)
        self.data = check_dataset(opt.data)
        self.state = {}

    def measure(self, task, warmup):
        if task not in self.state:
            self.state[task] = getattr(self, f"_build_{task}")()
        return getattr(self, f"_{task}")(self.state[task], warmup)

    def _inference_model(self):
        opt = self.opt
        if opt.weights:
            return attempt_load(opt.weights, device=self.device, fuse=True)
        return Model(opt.cfg, nc=int(self.data["nc"]), verbose=False).to(self.device).fuse().eval()

    def _build_train(self):
        opt, hyp = self.opt, load_hyp(self.opt.hyp)
        loader, _ = create_dataloader(self.data["train"], opt.img, opt.batch, 32, hyp=hyp, augment=True,
                                      cache=opt.cache, workers=opt.workers, shuffle=True, prefix="train: ",
                                      nc=int(self.data["nc"]))
        queued = loader.num_workers * 2  # DataLoader's prefetch_factor
        n = queued + opt.steps
        stream = Stream(loader)
        trainer = Trainer(self.precision, opt, self.data, hyp, self.device, 32)
        return Namespace(stream=stream, trainer=trainer, queued=queued, n=n,
                         loaded=[next(stream) for _ in range(n)])

    def _train(self, s, warmup):
        """Each e2e run starts with `queued` untimed steps: they use up the batches the workers prefetched while the
        other mode ran, so that the timed steps see the loader's steady pace."""
        if warmup:  # oneDNN planning; the ThreadTuner's first round
            for _ in range(math.ceil(self.opt.warmup / s.n)):
                s.trainer.run(s.stream, s.n, self.opt.steps)
            return {}
        images, out = self.opt.steps * self.opt.batch, {}
        with peak_memory(self.device, out):
            waited = [s.stream.wait]  # then the stream's total wait after each batch it hands this run
            seconds = s.trainer.run((waited.append(s.stream.wait) or batch for batch in s.stream), s.n, self.opt.steps)
            step_seconds = s.trainer.run(iter(s.loaded), s.n, self.opt.steps)
        tuner = s.trainer.runner.threads
        return {"train e2e img/s": images / seconds,
                "train data wait %": 100 * (waited[-1] - waited[s.queued]) / seconds,
                "train step img/s": images / step_seconds,
                "train peak MB": out["peak MB"],
                "train threads": str(torch.get_num_threads() if tuner is None else tuner.current),
                "train precision": s.trainer.runner.precision.name}  # fp32 after a NaN fallback

    def _build_val(self):
        opt = self.opt
        loader = create_dataloader(self.data["val"], opt.img, opt.val_batch, 32, pad=0.5, rect=True,
                                   workers=opt.workers, prefix="val: ", nc=int(self.data["nc"]))[0]
        return Namespace(loader=loader, model=self._inference_model(), save_dir=tempfile.mkdtemp())

    def _val(self, s, warmup):
        out, plain = {}, self.mode == "fp32"
        with plain_val() if plain else contextlib.nullcontext(), peak_memory(self.device, out):
            start = time.perf_counter()
            metrics, _, _ = val.run(self.data, batch_size=self.opt.val_batch, imgsz=self.opt.img, model=s.model,
                                    dataloader=s.loader, save_dir=Path(s.save_dir), plots=False, amp=not plain)
            seconds = time.perf_counter() - start
        if warmup:
            return {"val first s": seconds, "val P R mAP50 mAP50-95": " ".join(f"{x:.4f}" for x in metrics[:4])}
        return {"val s": seconds, "val img/s": len(s.loader.dataset) / seconds, "val peak MB": out["peak MB"]}

    def _build_infer(self):
        model = self.precision.model(self._inference_model())
        x = torch.rand(self.opt.val_batch, 3, self.opt.img, self.opt.img, device=self.device)
        return Namespace(model=model, x=self.precision.batch(x).to(self.precision.input_dtype))

    def _infer(self, s, warmup):
        if self.precision.tune_cpu:
            retain_freed_memory()  # as val.run does
        out = {}
        with torch.inference_mode(), peak_memory(self.device, out):
            start = time.perf_counter()
            self.precision.infer(s.model, s.x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
        return {} if warmup else {"infer ms/img": seconds * 1e3 / len(s.x), "infer peak MB": out["peak MB"]}


def serve(opt):
    """Child process: answer JSON requests {task, warmup} on stdin with JSON figures on stdout (logs go to stderr)."""
    sys.stdout.flush()
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed, by Python or C code, goes to stderr
    bench = Bench(opt.serve, opt)
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(bench.measure(request["task"], request["warmup"])) + "\n")
        answers.flush()


class Child:
    """A `serve` process for one mode."""

    def __init__(self, mode, argv):
        env = dict(os.environ, TQDM_DISABLE="1")
        self.process = subprocess.Popen([sys.executable, __file__, *argv, "--serve", mode], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, task, warmup=False):
        self.process.stdin.write(json.dumps({"task": task, "warmup": warmup}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark process for {task} stopped (exit code {self.process.wait()})")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def report(results, modes):
    """The median of every figure per mode (and amp's speed-up over fp32), then the per-mode notes."""
    keys = list(dict.fromkeys(k for m in modes for k in results[m]))
    figures = [k for k in keys if all(k in results[m] and isinstance(results[m][k][0], float) for m in modes)]
    width = max(len(k) for k in keys) + 2
    print("\n" + f"{'':{width}}" + "".join(f"{m:>12}" for m in modes) + ("   amp / fp32" if len(modes) > 1 else ""))
    for key in figures:
        cells = [statistics.median(results[m][key]) for m in modes]
        row = f"{key:{width}}" + "".join(f"{c:>12.3g}" for c in cells)
        if len(modes) > 1 and not key.endswith(("MB", "%")):
            lower_is_better = key.endswith(" s") or "ms/" in key
            row += f"{(cells[1] / cells[0] if lower_is_better else cells[0] / cells[1]):>12.2f}x"
        print(row)
    for key in (k for k in keys if k not in figures):
        print(f"{key:{width}}" + "; ".join(f"{m}: {results[m][key][-1]}" for m in modes if key in results[m]))


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="", help="model .pt (for train: initial weights)")
    parser.add_argument("--cfg", default="", help="model YAML, when no --weights")
    parser.add_argument("--data", default="coco128.yaml", help="dataset YAML (train and val splits)")
    parser.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="train hyps")
    parser.add_argument("--img", type=int, default=640, help="image size (pixels)")
    parser.add_argument("--batch", type=int, default=16, help="train batch size")
    parser.add_argument("--val-batch", type=int, default=32, help="val and inference batch size")
    parser.add_argument("--steps", type=int, default=8, help="timed train steps per measurement")
    parser.add_argument("--warmup", type=int, default=16, help="train steps per mode before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (the median is printed)")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers, as train.py")
    parser.add_argument("--cache", nargs="?", const="ram", help="train images cached: ram or disk, as train.py")
    parser.add_argument("--device", default="", help="cpu, or a CUDA index")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--compare-fp32", action="store_true", help="also run the plain fp32 NCHW path")
    parser.add_argument("--compile", action="store_true", help="torch.compile the amp mode's training forward")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)  # the child process of one mode
    opt = parser.parse_args(argv)
    if not (opt.weights or opt.cfg):
        parser.error("give --weights or --cfg")
    opt.img = check_img_size(opt.img, 32)
    return opt, [a for a in (sys.argv[1:] if argv is None else argv) if a != "--compare-fp32"]


def main(opt, argv):
    """Run the measurements in one child process per mode, taking turns; print and return the figures."""
    modes = MODES if opt.compare_fp32 else MODES[:1]
    precision = select_precision(select_device(opt.device, newline=False))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {STARTUP_THREADS} threads, {os.cpu_count()} CPUs; amp mode: {precision.name}"
          f"{', channels_last' if precision.channels_last else ''}; load average {load:.2f}", flush=True)
    results = {mode: defaultdict(list) for mode in modes}
    for task in opt.tasks:  # fresh processes per task: one task's allocations must not speed up or slow the next
        children = {mode: Child(mode, argv) for mode in modes}
        try:
            for warmup in [True] + [False] * opt.repeats:
                for mode, child in children.items():
                    for key, value in child.ask(task, warmup).items():
                        results[mode][key].append(value)
        finally:
            for child in children.values():
                child.close()
    report(results, modes)
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.2f} at start, {end_load:.2f} at end")
    return results


if __name__ == "__main__":
    options, arguments = parse_opt()
    serve(options) if options.serve else main(options, arguments)
