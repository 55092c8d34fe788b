"""Where each validated image's results go besides the metrics: --save-txt label files, --save-json rows (with the
ground truth they are checked against), the val_batch mosaics and the caller's callbacks."""

import torch

from utils.boxes import xyxy2xywh
from utils.coco import GroundTruthJSON, save_one_json
from utils.plots import output_to_target, plot_images

PLOTTED_BATCHES = 3  # val_batch0..2_labels/pred.jpg


def save_one_txt(predn, save_conf, shape, file):
    """Append detections (n, 6) [xyxy in original pixels, conf, cls] to a YOLO label file: cls xywhn [conf]."""
    gain = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]  # (w, h, w, h) of the original image
    xywhn = (xyxy2xywh(predn[:, :4].float().cpu()) / gain).tolist()
    with open(file, "a") as f:
        for (conf, cls), box in zip(predn[:, 4:6].tolist(), xywhn):
            line = (cls, *box, conf) if save_conf else (cls, *box)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def call_hook(callbacks, name, *args):
    """Call callbacks[name](*args) when the caller registered one (callbacks: a dict of callables)."""
    if callbacks and callbacks.get(name) is not None:
        callbacks[name](*args)


def plot_batch(images, targets, predictions, paths, stem, names):
    """<stem>_labels.jpg and <stem>_pred.jpg: a batch's mosaic with its labels, and with its predictions."""
    plot_images(images, targets, paths, f"{stem}_labels.jpg", names)
    plot_images(images, output_to_target(predictions), paths, f"{stem}_pred.jpg", names)


class ImageOutputs:
    """Receives each image's labels and predictions (in the original image's pixels) and each batch as val.py runs;
    `json_rows` and `ground_truth` hold what --save-json writes at the end. drawer: a BackgroundPlots."""

    def __init__(self, save_dir, names, class_map, save_txt, save_conf, save_json, drawer, callbacks):
        self.save_dir, self.names, self.class_map = save_dir, names, class_map
        self.save_txt, self.save_conf, self.save_json = save_txt, save_conf, save_json
        self.drawer, self.callbacks = drawer, callbacks
        self.json_rows = []
        self.ground_truth = GroundTruthJSON(names, class_map) if save_json else None

    def add_labels(self, path, original_shape, labels):
        if self.ground_truth is not None:
            self.ground_truth.add(path, original_shape, labels)

    def add_predictions(self, predictions, predictions_in_original, path, original_shape, image):
        if self.save_txt:
            file = self.save_dir / "labels" / f"{path.stem}.txt"
            save_one_txt(predictions_in_original, self.save_conf, original_shape, file=file)
        if self.save_json:
            save_one_json(predictions_in_original, self.json_rows, path, self.class_map)
        call_hook(self.callbacks, "on_val_image_end", predictions, predictions_in_original, path, self.names, image)

    def end_batch(self, batch_index, images, targets, paths, shapes, predictions):
        if batch_index < PLOTTED_BATCHES:  # drawn while the next batches run
            stem = self.save_dir / f"val_batch{batch_index}"
            self.drawer.submit(plot_batch, images, targets, predictions, paths, stem, self.names)
        call_hook(self.callbacks, "on_val_batch_end", batch_index, images, targets, paths, shapes, predictions)
