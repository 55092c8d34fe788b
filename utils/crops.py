"""Cutting a detected box out of an image and saving it (detect.py --save-crop)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from utils.files import increment_path


def save_one_box(xyxy, im, file=Path("im.jpg"), gain=1.02, pad=10, square=False, BGR=False, save=True):
    """Crop box `xyxy` (pixels of `im`, HWC) grown by `gain` and `pad` pixels, clipped to the image.

    `im` is BGR (OpenCV) when BGR=True, RGB otherwise; the JPEG saved at `file` (file2.jpg, ... when taken)
    is correct either way. Returns the crop in `im`'s channel order when BGR=True, reversed otherwise (YOLOv5).
    """
    box = torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4)
    xywh = xyxy2xywh(box)
    if square:
        xywh[:, 2:] = xywh[:, 2:].max(1, keepdim=True)[0]
    xywh[:, 2:] = xywh[:, 2:] * gain + pad
    box = xywh2xyxy(xywh).long()
    clip_boxes(box, im.shape)
    x1, y1, x2, y2 = (int(v) for v in box[0])
    crop = im[y1:y2, x1:x2, :: (1 if BGR else -1)]
    if save:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        path = increment_path(file).with_suffix(".jpg")
        rgb = np.ascontiguousarray(crop[..., ::-1])
        Image.fromarray(rgb).save(path, quality=95, subsampling=0)  # PIL, not cv2: no chroma subsampling
    return crop
