"""Familiar YOLOv5 import paths (`from utils.general import ...`), re-exported from the focused modules."""

from utils.boxes import (  # noqa: F401
    bbox_ioa, box_iou, clip_boxes, clip_segments, resample_segments, scale_boxes, scale_segments,
    segment2box, segments2boxes, xyn2xy, xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn,
)
from utils.files import ROOT, increment_path  # noqa: F401
from utils.log import LOGGER, colorstr  # noqa: F401
