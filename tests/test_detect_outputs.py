import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.detect_outputs import ImageOutputs, OutputOptions, append_csv, describe, write_labels

NAMES = {0: "circle", 1: "star", 2: "square"}


def options(**kwargs):
    flags = dict(save_img=False, view_img=False, save_txt=False, save_csv=False, save_conf=False, save_crop=False,
                 line_thickness=1, hide_labels=False, hide_conf=False)
    return OutputOptions(**{**flags, **kwargs})


@pytest.mark.parametrize("classes, expected", [
    ([0, 0, 1], "2 circles, 1 star, "),
    ([2], "1 square, "),
    ([1, 2, 1, 1], "3 stars, 1 square, "),
])
def test_describe_counts_each_class(classes, expected):
    det = torch.zeros((len(classes), 6))
    det[:, 5] = torch.tensor(classes, dtype=torch.float32)
    assert describe(det, NAMES) == expected


@pytest.mark.parametrize("save_conf, expected", [
    # box (10, 20)-(30, 60) in a 200 wide, 100 high image: centre (20, 40), size (20, 40) -> /(200, 100, 200, 100)
    (True, "2 0.1 0.4 0.1 0.4 0.5"),
    (False, "2 0.1 0.4 0.1 0.4"),
])
def test_write_labels_normalised_xywh(tmp_path, save_conf, expected):
    det = torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.5, 2.0]])
    write_labels(tmp_path / "scene", det, (100, 200, 3), save_conf)
    write_labels(tmp_path / "scene", det, (100, 200, 3), save_conf)  # appends
    assert (tmp_path / "scene.txt").read_text().splitlines() == [expected, expected]


def test_append_csv_writes_the_header_once(tmp_path):
    path = tmp_path / "predictions.csv"
    append_csv(path, [("a.jpg", "star", "0.90")])
    append_csv(path, [("b.jpg", "circle", "0.25"), ("b.jpg", "star", "0.10")])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["Image Name", "Prediction", "Confidence"], ["a.jpg", "star", "0.90"],
                                       ["b.jpg", "circle", "0.25"], ["b.jpg", "star", "0.10"]]


@pytest.mark.parametrize("frame, label_file", [(None, "scene.txt"), (3, "scene_3.txt")])
def test_image_outputs_rescale_and_name_labels_by_frame(tmp_path, frame, label_file):
    (tmp_path / "labels").mkdir()
    outputs = ImageOutputs(tmp_path, NAMES, options(save_txt=True, save_csv=True), video_slots=1)
    det = torch.tensor([[16.0, 16.0, 48.0, 32.0, 0.75, 1.0]])  # letterboxed 64x64 pixels; the image is 32x32: gain 1/2
    text = outputs.add(det, (64, 64), np.zeros((32, 32, 3), np.uint8), Path("media/scene.jpg"), frame, 0, None)
    outputs.close()
    assert text == "64x64 1 star, "
    assert det[0, :4].tolist() == [8.0, 8.0, 24.0, 16.0]  # rescaled in place, as detect.py's log and files use it
    assert (tmp_path / "labels" / label_file).read_text() == "1 0.5 0.375 0.5 0.25\n"
    assert (tmp_path / "predictions.csv").read_text().splitlines()[1] == "scene.jpg,star,0.75"
    assert not list(tmp_path.glob("*.jpg"))  # save_img off: no image written
