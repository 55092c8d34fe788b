"""Inference sources for detect.py: images, folders, globs, path lists and videos (LoadImages); cameras and
streams (LoadStreams). Each yields (path, letterboxed CHW RGB image, original BGR image, capture, log prefix)."""

import glob
import math
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from utils.augmentations import letterbox
from utils.label_cache import IMG_FORMATS
from utils.log import LOGGER

VID_FORMATS = "asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv"
STREAM_PREFIXES = "rtsp://", "rtmp://", "http://", "https://"


def _suffix(path):
    return Path(path).suffix[1:].lower()


def _resolve_listed(entry, list_dir):
    """A path from a .txt list: relative to the list's folder when it exists there, else as given (cwd)."""
    beside_list = list_dir / entry
    return str(beside_list) if not os.path.isabs(entry) and beside_list.exists() else entry


def expand_source(path):
    """File, folder, glob, `.txt` list of paths (relative to the list's folder) or a list of those -> sorted files."""
    files = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = str(Path(p).resolve()) if os.path.exists(p) else str(p)
        if p.endswith(".txt") and os.path.isfile(p):
            listed = [line.strip() for line in Path(p).read_text().splitlines() if line.strip()]
            files.extend(expand_source([_resolve_listed(x, Path(p).parent) for x in listed]))
        elif not os.path.exists(p) and any(c in p for c in "*?["):
            files.extend(sorted(glob.glob(p, recursive=True)))
        elif os.path.isdir(p):
            files.extend(sorted(glob.glob(os.path.join(glob.escape(p), "*.*"))))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist: pass an image, video, folder, glob or .txt list of paths")
    return files


def _to_model_input(im0, img_size, stride, auto, transforms):
    """BGR HWC original -> letterboxed RGB CHW uint8 array (or whatever `transforms` returns)."""
    if transforms is not None:
        return transforms(cv2.cvtColor(im0, cv2.COLOR_BGR2RGB))
    im = letterbox(im0, img_size, stride=stride, auto=auto)[0]
    return np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB


class LoadImages:
    """Iterate over the images and videos of a file, folder, glob or `.txt` list, video frames every `vid_stride`.

    A file OpenCV cannot read is reported with a warning naming it and skipped.
    """

    def __init__(self, path, img_size=640, stride=32, auto=True, transforms=None, vid_stride=1):
        files = expand_source(path)
        images = [f for f in files if _suffix(f) in IMG_FORMATS]
        videos = [f for f in files if _suffix(f) in VID_FORMATS]
        self.files = images + videos
        self.nf = len(self.files)
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.img_size, self.stride, self.auto = img_size, stride, auto
        self.transforms = transforms
        self.vid_stride = max(int(vid_stride), 1)
        self.mode = "image"
        self.cap = None
        self.frame = self.frames = self.count = 0
        if self.nf == 0:
            raise FileNotFoundError(f"No images or videos found in {path}. Supported formats are:\n"
                                    f"images: {IMG_FORMATS}\nvideos: {VID_FORMATS}")

    def __len__(self):
        return self.nf

    def __iter__(self):
        self.count = 0
        self._release()
        return self

    def __next__(self):
        while self.count < self.nf:
            path = self.files[self.count]
            if self.video_flag[self.count]:
                item = self._next_frame(path)
            else:
                self.count += 1
                item = self._read_image(path)
            if item is not None:
                return item
        self._release()
        raise StopIteration

    def _read_image(self, path):
        self.mode = "image"
        im0 = cv2.imread(path)
        if im0 is None:
            LOGGER.warning(f"WARNING ⚠️ skipping {path}: OpenCV cannot read it as an image (corrupt or not an image)")
            return None
        s = f"image {self.count}/{self.nf} {path}: "
        return path, _to_model_input(im0, self.img_size, self.stride, self.auto, self.transforms), im0, None, s

    def _next_frame(self, path):
        """The next frame of the current video, opening it first if needed; None when the video is done."""
        self.mode = "video"
        if self.cap is None:
            self._open_video(path)
            if self.cap is None:
                self.count += 1
                return None
        ok = all(self.cap.grab() for _ in range(self.vid_stride))  # a partial last stride ends the video
        ok, im0 = self.cap.retrieve() if ok else (False, None)
        if not ok:
            self._release()
            self.count += 1
            return None
        self.frame += 1
        s = f"video {self.count + 1}/{self.nf} ({self.frame}/{self.frames}) {path}: "
        return path, _to_model_input(im0, self.img_size, self.stride, self.auto, self.transforms), im0, self.cap, s

    def _open_video(self, path):
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            LOGGER.warning(f"WARNING ⚠️ skipping {path}: OpenCV cannot open this video (corrupt or unsupported codec)")
            return
        self.cap, self.frame = cap, 0
        self.frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) / self.vid_stride)

    def _release(self):
        if self.cap is not None:
            self.cap.release()
        self.cap = None


def _open_capture(source):
    """cv2.VideoCapture for a camera index, stream URL or file, or a ConnectionError that says what to do."""
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise ConnectionError(
                f"Failed to open webcam {source}: no camera found (is one connected, is /dev/video{source} "
                f"readable by this user?). Use --source with an image, video, folder, glob or stream URL instead.")
        return cap
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ConnectionError(f"Failed to open stream {source}: check the address/file is reachable and "
                              f"that OpenCV was built with a backend for it (FFMPEG)")
    return cap


class LoadStreams:
    """Latest frames of one or more live sources (webcam index, rtsp/http URL, or a `.streams` file listing them).

    One reader thread per source keeps the newest frame (every `vid_stride`-th); each iteration yields a batch
    of all sources' current frames. Iteration ends once every source has ended and its last frame was yielded.
    """

    def __init__(self, sources="file.streams", img_size=640, stride=32, auto=True, transforms=None, vid_stride=1):
        sources = str(sources)
        names = Path(sources).read_text().split() if os.path.isfile(sources) else [sources]
        self.sources = [str(s) for s in names]
        self.img_size, self.stride, self.transforms = img_size, stride, transforms
        self.vid_stride = max(int(vid_stride), 1)
        self.mode = "stream"
        n = len(self.sources)
        self.imgs, self.fps, self.frames, self.threads = [None] * n, [0.0] * n, [0] * n, [None] * n
        self.fresh = [False] * n  # a frame not yet yielded
        self.count = -1
        self.lock = threading.Lock()
        for i, s in enumerate(self.sources):
            cap = _open_capture(int(s) if s.isnumeric() else s)
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps[i] = fps if math.isfinite(fps) and fps > 0 else 30.0
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.frames[i] = count if count > 0 else float("inf")  # live sources report no frame count
            ok, im = cap.read()
            if not ok:
                raise ConnectionError(f"Failed to read a first frame from {s}")
            self.imgs[i], self.fresh[i] = im, True
            self.threads[i] = threading.Thread(target=self._update, args=(i, cap, s), daemon=True)
            LOGGER.info(f"{i + 1}/{n}: {s}... Success ({self.frames[i]} frames {w}x{h} at {self.fps[i]:.2f} FPS)")
            self.threads[i].start()
        shapes = {letterbox(x, img_size, stride=stride, auto=auto)[0].shape for x in self.imgs}
        self.rect = len(shapes) == 1  # minimum-padding letterbox only when every source gives one shape
        self.auto = auto and self.rect
        if not self.rect:
            LOGGER.warning("WARNING ⚠️ Stream shapes differ. For optimal performance supply similarly-shaped streams.")

    def _update(self, i, cap, source):
        """Reader thread: keep the newest frame of source i; a file source is paced at its own frame rate."""
        is_file = os.path.isfile(source)
        n = 0
        while cap.isOpened() and n < self.frames[i]:
            n += 1
            if not cap.grab():
                break
            if n % self.vid_stride == 0:
                ok, im = cap.retrieve()
                if not ok:
                    LOGGER.warning(f"WARNING ⚠️ Video stream {source} unresponsive, reconnecting")
                    im = np.zeros_like(self.imgs[i])
                    cap.open(source)
                with self.lock:
                    self.imgs[i], self.fresh[i] = im, True
            if is_file:
                time.sleep(1 / self.fps[i])
        cap.release()

    def __iter__(self):
        self.count = -1
        return self

    def __next__(self):
        with self.lock:
            if not any(self.fresh) and not any(t.is_alive() for t in self.threads):
                raise StopIteration
            im0 = [x.copy() for x in self.imgs]
            self.fresh = [False] * len(self.fresh)
        self.count += 1
        if self.transforms is not None:
            im = np.stack([self.transforms(cv2.cvtColor(x, cv2.COLOR_BGR2RGB)) for x in im0])
        else:
            im = np.stack([letterbox(x, self.img_size, stride=self.stride, auto=self.auto)[0] for x in im0])
            im = np.ascontiguousarray(im[..., ::-1].transpose((0, 3, 1, 2)))  # BHWC BGR -> BCHW RGB
        return self.sources, im, im0, None, ""

    def __len__(self):
        return len(self.sources)
