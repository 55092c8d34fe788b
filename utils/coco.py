"""COCO interop for val.py: 80 -> 91 class ids, results JSON, a ground-truth JSON, and pycocotools evaluation."""

import json
from pathlib import Path

from utils.boxes import xyxy2xywh
from utils.log import LOGGER

COCO91_MISSING = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)  # ids 1-90 that the 80 COCO detection classes skip
PYCOCOTOOLS_HINT = "pip install pycocotools"


def validates_on_coco(data):
    """Whether a dataset dict validates on COCO val2017 (YOLOv5's test: its val path ends in coco/val2017.txt)."""
    val = data.get("val")
    return isinstance(val, str) and val.replace("\\", "/").endswith("coco/val2017.txt")


def coco80_to_coco91_class():
    """Index i of the 80 YOLO COCO classes -> its COCO category id (1-90, with gaps)."""
    return [i for i in range(1, 91) if i not in COCO91_MISSING]


def image_id(path):
    """COCO image id of a file: int of a numeric stem (000000000139.jpg -> 139), else the stem itself."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def _xywh_top_left(xyxy):
    box = xyxy2xywh(xyxy.clone())
    box[:, :2] -= box[:, 2:] / 2  # centre -> top-left corner, COCO's bbox convention
    return box


def save_one_json(predn, jdict, path, class_map):
    """Append one image's detections (n, 6) [xyxy in original pixels, conf, cls] to jdict as COCO results."""
    img_id = image_id(path)
    for p, b in zip(predn.tolist(), _xywh_top_left(predn[:, :4]).tolist()):
        jdict.append({"image_id": img_id, "category_id": class_map[int(p[5])],
                      "bbox": [round(x, 3) for x in b], "score": round(p[4], 5)})


class GroundTruthJSON:
    """A COCO-format ground-truth file built from the labels val.py sees, for datasets without one."""

    def __init__(self, names, class_map):
        self.class_map = class_map
        self.categories = [{"id": class_map[i], "name": str(n)} for i, n in names.items()]
        self.images, self.annotations = [], []

    def add(self, path, shape, labelsn):
        """One image of shape (h, w) with labels (m, 5) [cls, xyxy in original pixels]."""
        img_id = image_id(path)
        self.images.append({"id": img_id, "file_name": Path(path).name, "height": int(shape[0]),
                            "width": int(shape[1])})
        for (cls, *_), b in zip(labelsn.tolist(), _xywh_top_left(labelsn[:, 1:5]).tolist()):
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": img_id,
                                     "category_id": self.class_map[int(cls)], "bbox": [round(x, 3) for x in b],
                                     "area": b[2] * b[3], "iscrowd": 0})

    def save(self, file):
        with open(file, "w") as f:
            json.dump({"info": {}, "licenses": [], "images": self.images, "annotations": self.annotations,
                       "categories": self.categories}, f)


def evaluate(anno_json, pred_json, img_ids=None):
    """COCO mAP (mAP@0.5:0.95, mAP@0.5) of pred_json against anno_json with pycocotools; None if unavailable.

    img_ids restricts the evaluation to those images (e.g. the validation subset of a full COCO file).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        LOGGER.warning(f"WARNING ⚠️ pycocotools is not installed, so the COCO JSON {pred_json} was written but not "
                       f"evaluated. It is optional: '{PYCOCOTOOLS_HINT}' to get COCO mAP from val.py --save-json")
        return None
    if not Path(anno_json).exists():
        raise FileNotFoundError(f"COCO annotations {anno_json} not found; download them (for COCO: "
                                "annotations_trainval2017.zip) or drop --save-json")
    anno = COCO(str(anno_json))
    pred = anno.loadRes(str(pred_json))
    coco_eval = COCOeval(anno, pred, "bbox")
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return float(coco_eval.stats[0]), float(coco_eval.stats[1])


def evaluate_results(json_rows, weights, data, save_dir, ground_truth, is_coco, dataloader):
    """Write val.py's COCO results JSON (<weights stem>_predictions.json) and evaluate it with pycocotools against
    COCO's annotations when the dataset is COCO and has them, else against the labels val.py used (ground_truth, a
    GroundTruthJSON). Returns (mAP@0.5:0.95, mAP@0.5) or None."""
    stem = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem if weights else "model"
    pred_json = Path(save_dir) / f"{stem}_predictions.json"
    pred_json.parent.mkdir(parents=True, exist_ok=True)  # train.py's folder exists; a caller's may not yet
    LOGGER.info(f"\nWriting {pred_json}...")
    with open(pred_json, "w") as f:
        json.dump(json_rows, f)
    coco_annotations = Path(data.get("path", "../coco")) / "annotations/instances_val2017.json"
    if is_coco and coco_annotations.exists():
        anno_json = coco_annotations
        img_ids = [int(Path(x).stem) for x in dataloader.dataset.im_files]
    else:  # no official annotation file: evaluate against the labels val.py itself used
        anno_json = Path(save_dir) / "annotations.json"
        ground_truth.save(anno_json)
        img_ids = None
    LOGGER.info(f"Evaluating pycocotools mAP with {anno_json}...")
    try:
        return evaluate(anno_json, pred_json, img_ids)
    except Exception as e:  # the validation figures stand; only the COCO cross-check failed
        LOGGER.warning(f"WARNING ⚠️ pycocotools unable to evaluate {pred_json}: {e}")
        return None
