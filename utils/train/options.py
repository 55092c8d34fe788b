"""train.py's options after parsing: 5.x flags mapped to today's, files resolved, --resume restoring a run's options."""

import argparse
import glob
import os
from pathlib import Path

import yaml

from utils.checkpoint import load_checkpoint
from utils.errors import ResumeError
from utils.files import ROOT, increment_path
from utils.log import LOGGER, colorstr

PREFIX = colorstr("options: ")
SEARCH_FOLDERS = ("data", "models", "data/hyps", "models/hub")


# YOLOv5's flags (4.0 to today) for its W&B, ClearML, Comet and NDJSON loggers, as it spells them, with their defaults:
# accepted with a notice, since this toolkit has no such logger
LOGGER_FLAGS = {"--entity": None, "--upload_dataset": False, "--bbox_interval": -1, "--artifact_alias": "latest",
                "--ndjson-console": False, "--ndjson-file": False, "--log-imgs": 16, "--log-artifacts": False}


def add_legacy_arguments(parser):
    """Flags of YOLOv5 4.x/5.x tutorials and of YOLOv5's loggers, accepted, then mapped or noted as unused by
    apply_legacy_flags (the old ones hidden from --help)."""
    hidden = argparse.SUPPRESS
    parser.add_argument("--adam", action="store_true", help=hidden)
    parser.add_argument("--linear-lr", action="store_true", help=hidden)
    parser.add_argument("--notest", action="store_true", help=hidden)
    parser.add_argument("--cache-images", action="store_true", help=hidden)
    parser.add_argument("--logdir", type=str, default=None, help=hidden)
    unused = "YOLOv5 logger flag, accepted and not used"
    parser.add_argument("--entity", default=None, help=unused)
    parser.add_argument("--upload_dataset", nargs="?", const=True, default=False, help=unused)
    parser.add_argument("--bbox_interval", type=int, default=-1, help=unused)
    parser.add_argument("--artifact_alias", type=str, default="latest", help=unused)
    parser.add_argument("--ndjson-console", action="store_true", help=unused)
    parser.add_argument("--ndjson-file", action="store_true", help=unused)
    parser.add_argument("--log-imgs", type=int, default=16, help=hidden)
    parser.add_argument("--log-artifacts", action="store_true", help=hidden)


def apply_legacy_flags(opt):
    """Map 5.x flags onto today's, each with a one-line notice naming the current flag."""
    def notice(text):
        LOGGER.info(f"{PREFIX}{text}")

    sizes = opt.imgsz if isinstance(opt.imgsz, (list, tuple)) else [opt.imgsz]
    if len(sizes) > 2:
        raise ValueError(f"--imgsz takes one size (or the 5.x form TRAIN TEST), got {len(sizes)} values: {sizes}")
    opt.imgsz = int(sizes[0])
    if len(sizes) == 2:
        opt.val_imgsz = int(sizes[1])
        notice(f"--img-size {sizes[0]} {sizes[1]} (5.x): training at {sizes[0]}, validating at {sizes[1]}; "
               f"today's flag is --imgsz {sizes[0]} (one size for both)")
    if getattr(opt, "adam", False):
        opt.optimizer = "Adam"
        notice("--adam (5.x) is now --optimizer Adam")
    if getattr(opt, "linear_lr", False):
        opt.cos_lr = False
        notice("--linear-lr (5.x): a linear LR schedule is already the default (--cos-lr selects cosine)")
    if getattr(opt, "notest", False):
        opt.noval = True
        notice("--notest (5.x) is now --noval")
    if getattr(opt, "cache_images", False):
        opt.cache = opt.cache or "ram"
        notice("--cache-images (5.x) is now --cache ram")
    if getattr(opt, "logdir", None):
        opt.project = opt.logdir
        notice(f"--logdir (5.x) is now --project {opt.logdir}")
    if getattr(opt, "bucket", ""):
        LOGGER.warning(f"{PREFIX}--bucket (gsutil sync of evolve files) is not supported: processes on one machine "
                       "share runs/evolve/<name> directly; to share across machines use --ray, or sync that folder "
                       "yourself (e.g. gsutil rsync). Continuing without a bucket.")
    given = [flag for flag, default in LOGGER_FLAGS.items() if getattr(opt, flag[2:].replace("-", "_"), default) != default]
    if given:
        notice(f"{', '.join(given)}: YOLOv5's W&B/ClearML/Comet/NDJSON logger flags are not used here (no such "
               "logger); results are written under the run folder")
    _population_flags(opt, notice)
    for key in ("adam", "linear_lr", "notest", "cache_images", "logdir"):
        if hasattr(opt, key):
            delattr(opt, key)  # mapped: keep opt.yaml in today's terms
    return opt


def _population_flags(opt, notice):
    """--evolve_population / --resume_evolve belong to YOLOv5's population GA: they select --evolve-method population
    when no other method was asked for."""
    flags = [f"--{key}" for key in ("evolve_population", "resume_evolve") if getattr(opt, key, None)]
    method = getattr(opt, "evolve_method", "mutation")
    if not flags or method == "population":
        return
    if method == "mutation":  # the default: these flags only mean something to the population method
        opt.evolve_method = "population"
        notice(f"{' and '.join(flags)}: YOLOv5's population GA, run as --evolve-method population")
    else:
        LOGGER.warning(f"{PREFIX}{' and '.join(flags)} only apply to --evolve-method population, not {method}: "
                       "ignored")


def find_file(name, kind="file"):
    """A path as given, else relative to the project root or in data/, models/, data/hyps/ ('' stays '')."""
    if not name or Path(name).is_file():
        return str(name)
    for folder in ("",) + SEARCH_FOLDERS:
        candidate = ROOT / folder / name
        if candidate.is_file():
            return str(candidate)
    searched = ", ".join(str(ROOT / f) for f in SEARCH_FOLDERS)
    raise FileNotFoundError(f"{kind} '{name}' not found (searched the current folder, {ROOT} and {searched})")


def get_latest_run(search_dirs=None):
    """The most recently written last*.pt under runs/ (the current folder's and the project's), or ''."""
    search_dirs = search_dirs or {Path("runs").resolve(), (ROOT / "runs").resolve()}
    found = [f for d in search_dirs for f in glob.glob(f"{d}/**/last*.pt", recursive=True)]
    return max(found, key=os.path.getmtime) if found else ""


def restore_resume_options(opt):
    """--resume [PATH]: the options of the run that wrote PATH (or the latest last.pt), pointed at that checkpoint."""
    last = opt.resume if isinstance(opt.resume, str) else get_latest_run()
    if not last:
        raise ResumeError("--resume found no last.pt under runs/: pass the checkpoint, "
                          "e.g. --resume runs/train/exp/weights/last.pt")
    last = Path(last)
    if not last.is_file():
        raise ResumeError(f"--resume {last}: no such checkpoint")
    opt_yaml = last.parent.parent / "opt.yaml"
    if opt_yaml.is_file():
        stored = yaml.safe_load(opt_yaml.read_text(errors="ignore"))
    else:
        stored = (load_checkpoint(last) or {}).get("opt")
        if not stored:
            raise ResumeError(f"--resume {last}: neither {opt_yaml} nor the checkpoint holds the run's options")
    restored = argparse.Namespace(**{**vars(opt), **stored})
    restored.cfg, restored.weights, restored.resume = "", str(last), True
    restored.save_dir = str(last.parent.parent)  # where the run lives now, even if its folder was moved
    LOGGER.info(f"{PREFIX}resuming training from {last}")
    return restored


def check_train_options(opt):
    """Resolve files and the run folder. Returns opt (a new Namespace when resuming)."""
    if opt.resume and not opt.evolve:
        return restore_resume_options(opt)
    opt.cfg = find_file(opt.cfg, "model cfg")
    opt.hyp = find_file(opt.hyp, "hyp file") if isinstance(opt.hyp, (str, Path)) else opt.hyp
    if isinstance(opt.data, (str, Path)) and str(opt.data).endswith((".yaml", ".yml")):
        try:
            opt.data = find_file(opt.data, "dataset YAML")
        except FileNotFoundError:
            pass  # check_dataset reports a missing dataset YAML with its own fix
    opt.weights, opt.project = str(opt.weights or ""), str(opt.project)
    if not (opt.cfg or opt.weights):
        raise ValueError("either --cfg or --weights must be given (e.g. --cfg yolov5n.yaml --weights '')")
    if opt.evolve:
        if Path(opt.project).resolve() == (ROOT / "runs/train").resolve():
            opt.project = str(ROOT / "runs/evolve")
        opt.exist_ok, opt.resume = opt.resume, False
    if opt.name == "cfg":
        opt.name = Path(opt.cfg).stem
    if not getattr(opt, "save_dir", None):
        opt.save_dir = str(increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok))
    return opt
