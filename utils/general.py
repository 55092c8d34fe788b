"""Familiar YOLOv5 import paths (`from utils.general import ...`), re-exported from the focused modules."""

from utils.boxes import (  # noqa: F401
    bbox_ioa,
    box_iou,
    clip_boxes,
    clip_segments,
    resample_segments,
    scale_boxes,
    scale_segments,
    segment2box,
    segments2boxes,
    xyn2xy,
    xywh2xyxy,
    xywhn2xyxy,
    xyxy2xywh,
    xyxy2xywhn,
)
from utils.coco import coco80_to_coco91_class  # noqa: F401
from utils.dataset_config import check_dataset, check_file, check_suffix, check_yaml, yaml_load  # noqa: F401
from utils.downloads import download, is_url, unzip_file  # noqa: F401
from utils.evolve.store import print_mutation  # noqa: F401
from utils.files import ROOT, increment_path  # noqa: F401
from utils.log import LOGGER, TQDM_BAR_FORMAT, colorstr  # noqa: F401
from utils.model_utils import check_img_size, make_divisible  # noqa: F401
from utils.nms import non_max_suppression  # noqa: F401
from utils.profiling import Profile  # noqa: F401
from utils.sampling import labels_to_class_weights, labels_to_image_weights  # noqa: F401
from utils.schedule import one_cycle  # noqa: F401
