"""Loading a hyperparameter YAML (or dict): YOLOv5's defaults for keys older files lack, unknown keys refused; the
loss gains scaled to a model."""

from pathlib import Path

import yaml

from utils.files import ROOT
from utils.log import LOGGER, colorstr

# hyp.scratch-low.yaml's values: what YOLOv5 uses for a key an older hyp file does not have
DEFAULT_HYP = {
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005,
    "warmup_epochs": 3.0, "warmup_momentum": 0.8, "warmup_bias_lr": 0.1,
    "box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "iou_t": 0.2, "anchor_t": 4.0,
    "fl_gamma": 0.0, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1,
    "scale": 0.5, "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0,
    "mixup": 0.0, "copy_paste": 0.0,
}
OPTIONAL_KEYS = ("anchors", "label_smoothing")  # anchors per layer (overrides the cfg's), set by --label-smoothing
RENAMED_KEYS = {"giou": "box"}  # YOLOv5 3.x called the box loss gain 'giou'
HYP_FOLDER = ROOT / "data" / "hyps"


def resolve_hyp_path(path):
    """A hyp path as given, else under data/hyps/ (so --hyp hyp.scratch-low.yaml works from anywhere)."""
    path = Path(path)
    for candidate in (path, ROOT / path, HYP_FOLDER / path.name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"hyp file '{path}' not found (also looked in {HYP_FOLDER}): pass --hyp with an "
                            "existing YAML such as data/hyps/hyp.scratch-low.yaml")


def check_hyp(hyp, source="hyp"):
    """A complete hyp dict: old names renamed, missing keys filled with YOLOv5's defaults (with a warning).

    An unknown key or a non-numeric value is an error naming `source` and the key.
    """
    hyp = dict(hyp)
    for old, new in RENAMED_KEYS.items():
        if old in hyp and new not in hyp:
            hyp[new] = hyp.pop(old)
            LOGGER.warning(f"{colorstr('hyperparameters: ')}{source}: '{old}' is now called '{new}'")
    unknown = [k for k in hyp if k not in DEFAULT_HYP and k not in OPTIONAL_KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown hyperparameter key(s) {', '.join(map(repr, unknown))}; valid keys are "
                         f"{', '.join(list(DEFAULT_HYP) + list(OPTIONAL_KEYS))}. Remove or rename them.")
    bad = [k for k, v in hyp.items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        raise ValueError(f"{source}: hyperparameter(s) {', '.join(f'{k}: {hyp[k]!r}' for k in bad)} must be numbers")
    missing = [k for k in DEFAULT_HYP if k not in hyp]
    if missing:
        LOGGER.warning(f"{colorstr('hyperparameters: ')}{source} lacks {', '.join(missing)}: added YOLOv5's defaults "
                       + ", ".join(f"{k}={DEFAULT_HYP[k]}" for k in missing))
        hyp = {**hyp, **{k: DEFAULT_HYP[k] for k in missing}}
    if hyp.get("anchors") is None:
        hyp.pop("anchors", None)  # absent or empty: the model cfg's anchors are used
    return hyp


def load_hyp(hyp):
    """The checked hyp dict from a dict or a YAML path (see check_hyp)."""
    if isinstance(hyp, dict):
        return check_hyp(hyp)
    path = resolve_hyp_path(hyp)
    try:
        loaded = yaml.safe_load(path.read_text(errors="replace"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a hyp YAML (a mapping of hyperparameter names to numbers)")
    return check_hyp(loaded, source=str(path))


def scale_hyp_to_model(hyp, nl, nc, imgsz, label_smoothing=0.0):
    """YOLOv5's loss gains for this model: box *= 3/nl, cls *= nc/80 * 3/nl, obj *= (imgsz/640)^2 * 3/nl."""
    hyp = dict(hyp)
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = label_smoothing
    return hyp
