"""What evolution searches: YOLOv5's meta table (gain, low, high); its score is utils.metrics.fitness."""

from utils.metrics import fitness  # noqa: F401 (imported from here by the evolve modules)
from utils.results import METRIC_KEYS  # noqa: F401 (evolve.csv starts with these columns)

# (mutation gain, lower limit, upper limit) per hyp key, YOLOv5's values; a gain of 0 freezes the key
META = {
    "lr0": (1, 1e-5, 1e-1),
    "lrf": (1, 0.01, 1.0),
    "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0),
    "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4.0),
    "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0),
    "iou_t": (0, 0.1, 0.7),
    "anchor_t": (1, 2.0, 8.0),
    "anchors": (2, 2.0, 10.0),
    "fl_gamma": (0, 0.0, 2.0),
    "hsv_h": (1, 0.0, 0.1),
    "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0),
    "translate": (1, 0.0, 0.9),
    "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001),
    "flipud": (1, 0.0, 1.0),
    "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0),
    "copy_paste": (1, 0.0, 1.0),
}

FROZEN = (0, None, None)  # a hyp key YOLOv5's table does not know: kept as given, never mutated


def evolution_space(hyp, noautoanchor=False):
    """(hyp, meta) as evolution uses them: `anchors` added as 3 when missing, both without it under --noautoanchor.

    Returns a new hyp dict (floats, same key order) and the meta entries for exactly its keys; keys YOLOv5's table
    does not list are frozen.
    """
    bad = [k for k, v in hyp.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"hyp values must be numbers, got {', '.join(f'{k}: {hyp[k]!r}' for k in bad)}")
    hyp = {k: float(v) for k, v in hyp.items()}
    if noautoanchor:
        hyp.pop("anchors", None)
    elif "anchors" not in hyp:
        hyp["anchors"] = 3.0
    meta = {k: META.get(k, FROZEN) for k in hyp}
    return hyp, meta


def unknown_keys(hyp):
    """Hyp keys that the meta table does not list (they stay fixed during evolution)."""
    return [k for k in hyp if k not in META]
