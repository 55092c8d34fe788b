"""Where each image's detections go in detect.py: the counts in its log line, --save-txt labels, --save-csv rows,
--save-crop crops, and the boxes drawn on the image that is shown (--view-img) and saved (an image, or a video frame)."""

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from utils.boxes import scale_boxes, xyxy2xywh
from utils.crops import save_one_box
from utils.plots import Annotator, colors

VIDEO_FOURCC = "mp4v"  # writes .mp4 with opencv-python-headless's bundled FFmpeg (H.264 encoders are absent)


def write_labels(txt_path, det, im0_shape, save_conf):
    """Append one `class x y w h [conf]` line per box (xywh normalised to the original image)."""
    gain = torch.tensor(im0_shape)[[1, 0, 1, 0]]  # w, h, w, h
    with open(f"{txt_path}.txt", "a") as f:
        for *xyxy, conf, cls in reversed(det):
            xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gain).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def append_csv(csv_path, rows):
    """Append rows (image name, class name, confidence) to YOLOv5's predictions.csv, its header first."""
    new = not csv_path.is_file()
    with open(csv_path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(("Image Name", "Prediction", "Confidence"))
        writer.writerows(rows)


def describe(det, names):
    """'2 circles, 1 star, ' for the log line."""
    counts = ""
    for c in det[:, 5].unique():
        n = int((det[:, 5] == c).sum())
        counts += f"{n} {names[int(c)]}{'s' * (n > 1)}, "
    return counts


class VideoSinks:
    """One cv2.VideoWriter per batch slot, reopened when that slot's video path changes."""

    def __init__(self, slots):
        self.paths, self.writers = [None] * slots, [None] * slots

    def write(self, slot, save_path, frame, capture):
        """Append `frame` to the video for `save_path` (saved with an .mp4 suffix)."""
        if self.paths[slot] != save_path:
            self.release(slot)
            fps = capture.get(cv2.CAP_PROP_FPS) if capture is not None else 30.0
            fps = fps if fps and fps > 0 else 30.0
            height, width = frame.shape[:2]
            mp4_path = str(Path(save_path).with_suffix(".mp4"))
            writer = cv2.VideoWriter(mp4_path, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (width, height))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write video {mp4_path} with codec {VIDEO_FOURCC}; "
                                   f"use --nosave, or install an OpenCV build with FFmpeg")
            self.paths[slot], self.writers[slot] = save_path, writer
        self.writers[slot].write(frame)

    def release(self, slot=None):
        for i in range(len(self.writers)) if slot is None else [slot]:
            if self.writers[i] is not None:
                self.writers[i].release()
                self.writers[i] = None


@dataclass
class OutputOptions:
    """detect.run's flags for what each image leaves behind."""

    save_img: bool  # annotated images and videos (not --nosave)
    view_img: bool  # show each annotated image in a window
    save_txt: bool
    save_csv: bool
    save_conf: bool
    save_crop: bool
    line_thickness: int
    hide_labels: bool
    hide_conf: bool


class ImageOutputs:
    """Receives each image's detections as detect.py runs and writes what `options` asks for under `save_dir`.
    video_slots: how many videos are written at once (one per stream of a LoadStreams batch). close() when done."""

    def __init__(self, save_dir, names, options, video_slots):
        self.save_dir, self.names, self.options = save_dir, names, options
        self.videos = VideoSinks(video_slots)
        self.windows = []  # the --view-img windows opened so far, by image path

    def add(self, det, letterboxed_shape, image, path, frame, slot, capture):
        """One image: det (n, 6) NMS output in letterboxed pixels (rescaled in place to `image`'s pixels), image the
        original (drawn on), frame None for a still image else the video or stream frame number. Returns the log text.
        """
        text = "%gx%g " % letterboxed_shape
        image = self._draw_and_save_boxes(det, letterboxed_shape, image, path, frame)
        if len(det):
            text += describe(det, self.names)
        if self.options.view_img:
            self._show(str(path), image)
        if self.options.save_img:
            save_path = str(self.save_dir / path.name)
            if frame is None:
                cv2.imwrite(save_path, image)
            else:
                self.videos.write(slot, save_path, image, capture)
        return text

    def _draw_and_save_boxes(self, det, letterboxed_shape, image, path, frame):
        """The image with its boxes drawn; --save-txt, --save-csv and --save-crop written on the way."""
        options, names = self.options, self.names
        unannotated = image.copy() if options.save_crop else image
        annotator = Annotator(image, line_width=options.line_thickness, example=str(names))
        if len(det):
            det[:, :4] = scale_boxes(letterboxed_shape, det[:, :4], image.shape).round()
            if options.save_txt:
                txt_path = str(self.save_dir / "labels" / path.stem) + ("" if frame is None else f"_{frame}")
                write_labels(txt_path, det, image.shape, options.save_conf)
            if options.save_csv:
                append_csv(self.save_dir / "predictions.csv",
                           [(path.name, names[int(c)], f"{float(conf):.2f}") for *_, conf, c in reversed(det)])
            for *xyxy, conf, cls in reversed(det):
                c = int(cls)
                if options.save_img or options.save_crop or options.view_img:
                    label = None if options.hide_labels else (names[c] if options.hide_conf else f"{names[c]} {conf:.2f}")
                    annotator.box_label(xyxy, label, color=colors(c, True))
                if options.save_crop:
                    crop_file = self.save_dir / "crops" / names[c] / f"{path.stem}.jpg"
                    save_one_box(xyxy, unannotated, file=crop_file, BGR=True)
        return annotator.result()

    def _show(self, window, image):
        if window not in self.windows:
            self.windows.append(window)
            cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.resizeWindow(window, image.shape[1], image.shape[0])
        cv2.imshow(window, image)
        cv2.waitKey(1)

    def close(self):
        """Finish the videos being written."""
        self.videos.release()
