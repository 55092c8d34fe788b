"""train.py end to end on a tiny generated dataset: files, resume after SIGKILL, NaN stop, DDP on 2 CPU processes."""

import os
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
import yaml

import train
from utils.files import ROOT
from utils.results import read_rows
from utils.train.loop import NonFiniteLossError

TINY = dict(cfg="yolov5n.yaml", weights="", imgsz=64, batch_size=8, workers=0, device="cpu", noplots=True,
            hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """24 images of 64x64 px with 1-3 filled rectangles (class 0) or circles (class 1), YOLO labels, one YAML."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("val", 8)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            img = np.full((64, 64, 3), 40, np.uint8)
            rows = []
            for _ in range(rng.integers(1, 4)):
                cls, w, h = int(rng.integers(0, 2)), int(rng.integers(12, 28)), int(rng.integers(12, 28))
                x, y = int(rng.integers(0, 64 - w)), int(rng.integers(0, 64 - h))
                if cls == 0:
                    cv2.rectangle(img, (x, y), (x + w, y + h), (0, 200, 255), -1)
                else:
                    cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (255, 120, 0), -1)
                rows.append(f"{cls} {(x + w / 2) / 64:.6f} {(y + h / 2) / 64:.6f} {w / 64:.6f} {h / 64:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.jpg"), img)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    data = root / "tiny.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": {0: "box", 1: "ball"}}))
    return data


def run_args(data, project, **kw):
    return {**TINY, "data": str(data), "project": str(project), "name": "exp", **kw}


def cli(args):
    return [x for k, v in args.items() if v not in (False, None, "") or k == "weights"
            for x in ((f"--{k.replace('_', '-')}",) if v is True else (f"--{k.replace('_', '-')}", str(v)))]


def test_parse_opt_accepts_yolov5_and_project_flags(monkeypatch):
    argv = ["train.py", "--img", "320", "--evolve", "--cache", "--no-amp", "--adam", "--notest", "--cache-images",
            "--freeze", "10", "--evolve-method", "gp", "--local-rank", "0", "--resume-evolve", "f.yaml"]
    monkeypatch.setattr(sys, "argv", argv)
    opt = train.parse_opt()
    assert opt.imgsz == [320] and opt.evolve == 300 and opt.cache == "ram" and opt.amp is False
    assert opt.adam and opt.notest and opt.freeze == [10] and opt.evolve_method == "gp" and opt.local_rank == 0
    monkeypatch.setattr(sys, "argv", ["train.py", "--img-size", "320", "256", "--resume"])
    opt = train.parse_opt()
    assert opt.imgsz == [320, 256] and opt.resume is True and opt.amp is True and opt.evolve is None


@pytest.mark.slow
def test_two_epochs_write_the_run_files(tiny_data, tmp_path):
    opt = train.run(**run_args(tiny_data, tmp_path, epochs=2, noplots=False))
    run = tmp_path / "exp"
    assert opt.save_dir == str(run)
    for name in ("weights/last.pt", "weights/best.pt", "hyp.yaml", "opt.yaml", "results.csv", "labels.jpg",
                 "train_batch0.jpg", "results.png"):
        assert (run / name).is_file(), name
    rows = read_rows(run / "results.csv")
    assert [r[0] for r in rows] == [0, 1] and all(len(r) == 14 for r in rows)
    assert all(np.isfinite(r).all() for r in rows)
    from utils.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run / "weights/last.pt")
    assert ckpt["optimizer"] is None and ckpt["epoch"] == -1  # stripped at the end
    assert not list(run.glob("**/.*.tmp"))


@pytest.mark.slow
def test_autobatch_trains_on_cpu_with_16_and_the_notice(tiny_data, tmp_path):
    import logging

    from utils.log import LOGGER

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        opt = train.run(**run_args(tiny_data, tmp_path, epochs=1, batch_size=-1, noval=True))
    finally:
        LOGGER.removeHandler(handler)
    assert opt.batch_size == 16
    assert any("CUDA not detected, using default CPU batch-size 16" in line for line in lines)
    assert len(read_rows(tmp_path / "exp" / "results.csv")) == 1


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(tiny_data, tmp_path):
    args = run_args(tiny_data, tmp_path, epochs=3, noval=False)
    killer = textwrap.dedent(f"""
        import os, signal, train
        def hook(epoch, i):
            if (epoch, i) == (1, 1):
                os.kill(os.getpid(), signal.SIGKILL)
        opt = train.parse_opt(True)
        for k, v in {args!r}.items():
            setattr(opt, k, v)
        train.main(opt, callbacks={{"on_train_batch_end": hook}})
    """)
    proc = subprocess.run([sys.executable, "-c", killer], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp_path / "exp"
    assert [r[0] for r in read_rows(run / "results.csv")] == [0]

    proc = subprocess.run([sys.executable, "train.py", "--resume", str(run / "weights/last.pt")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "from epoch 1 to 3 total epochs" in proc.stdout + proc.stderr
    assert [r[0] for r in read_rows(run / "results.csv")] == [0, 1, 2]
    assert not (tmp_path / "exp2").exists()

    proc = subprocess.run([sys.executable, "train.py", "--resume", str(run / "weights/last.pt")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "nothing to resume" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    real = train.ComputeLoss

    class NanAfterFirstEpoch(real):
        calls = 0

        def __call__(self, p, targets):
            loss, items = super().__call__(p, targets)
            NanAfterFirstEpoch.calls += torch.is_grad_enabled()  # count training batches, not validation ones
            return (loss * float("nan") if NanAfterFirstEpoch.calls > 3 else loss), items

    monkeypatch.setattr(train, "ComputeLoss", NanAfterFirstEpoch)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 0.*last\.pt"):
        train.run(**run_args(tiny_data, tmp_path, epochs=3, amp=False))
    from utils.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "exp/weights/last.pt")
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None
    assert all(torch.isfinite(v).all() for v in ckpt["model"].float().state_dict().values())


@pytest.mark.slow
def test_ddp_two_gloo_processes_rank0_writes(tiny_data, tmp_path):
    args = run_args(tiny_data, tmp_path, epochs=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "train.py", *cli(args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # one run folder: rank 0's
    run = tmp_path / "exp"
    assert [r[0] for r in read_rows(run / "results.csv")] == [0]
    assert (run / "weights/last.pt").is_file() and len(list(run.glob("events.out.tfevents.*"))) == 1
