import csv
import inspect
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
from models.experimental import attempt_load
from utils.augmentations import letterbox
from utils.boxes import scale_boxes, xyxy2xywhn
from utils.nms import non_max_suppression
from utils.precision import select_precision

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "weights" / "yolov5n.pt"
COCO_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "coco128" / "images" / "train2017"
IMGSZ = 64
RANDOM_CONF = 0.001  # an untrained model's scores sit near objectness 0.01 x class 0.2


def draw_scene(seed, h=72, w=96):
    """A small picture with a filled circle and a rectangle on a noisy background."""
    rng = np.random.default_rng(seed)
    im = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    cv2.circle(im, (int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))), 14, (40, 200, 240), -1)
    cv2.rectangle(im, (5, 5), (30, 25), (230, 60, 60), -1)
    return im


def write_video(path, frames=4, fps=10, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (96, 72))
    for k in range(frames):
        writer.write(draw_scene(100 + k))
    writer.release()
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A freshly built yolov5n (nc=4) saved as a checkpoint by the project's saver: no ../shared needed."""
    from models.yolo import DetectionModel
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel(Path(detect.ROOT) / "models" / "yolov5n.yaml", ch=3, nc=4)
    model.names = ["circle", "star", "square", "triangle"]
    path = tmp_path_factory.mktemp("weights") / "fresh.pt"
    save_checkpoint({"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None,
                     "optimizer": None, "opt": {}, "date": None}, path)
    return path


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    cv2.imwrite(str(folder / "scene.jpg"), draw_scene(0))
    write_video(folder / "clip.mp4")
    return folder


def read_labels(path):
    return sorted(tuple(float(v) for v in line.split()) for line in Path(path).read_text().splitlines())


def detect_quietly(weights, source, tmp_path, **kwargs):
    options = dict(weights=weights, source=source, imgsz=(IMGSZ, IMGSZ), conf_thres=RANDOM_CONF, max_det=5,
                   device="cpu", project=tmp_path / "runs", name="exp")
    options.update(kwargs)
    return detect.run(**options)


def test_folder_with_image_and_video(weights, media, tmp_path, log_lines):
    save_dir = detect_quietly(weights, media, tmp_path, save_txt=True, save_conf=True, save_crop=True)
    assert save_dir == tmp_path / "runs" / "exp"
    annotated = cv2.imread(str(save_dir / "scene.jpg"))
    assert annotated.shape == (72, 96, 3)
    capture = cv2.VideoCapture(str(save_dir / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and capture.read()[1].shape == (72, 96, 3)
    labels = sorted(p.name for p in (save_dir / "labels").glob("*.txt"))
    assert labels == ["clip_1.txt", "clip_2.txt", "clip_3.txt", "clip_4.txt", "scene.txt"]
    for row in read_labels(save_dir / "labels" / "scene.txt"):
        assert len(row) == 6 and row[0] in (0, 1, 2, 3) and all(0 <= v <= 1 for v in row[1:])
    assert len(list((save_dir / "crops").glob("*/*.jpg"))) >= 5

    # 72x96 at 64: gain 2/3 -> 48x64, padded to a multiple of 32 -> 64x64
    assert any(re.fullmatch(rf"image 1/2 {re.escape(str(media / 'scene.jpg'))}: 64x64 (\d+ \w+, )+\d+\.\dms", line)
               for line in log_lines)
    assert any(line.startswith(f"video 2/2 (4/4) {media / 'clip.mp4'}: 64x64 ") for line in log_lines)
    assert any(re.fullmatch(r"Speed: \d+\.\dms pre-process, \d+\.\dms inference, \d+\.\dms NMS per image at shape "
                            r"\(1, 3, 64, 64\)", line) for line in log_lines)

    assert detect_quietly(weights, media / "scene.jpg", tmp_path, nosave=True) == tmp_path / "runs" / "exp2"


def test_avi_video_written_back_as_one_mp4(weights, tmp_path):
    video = write_video(tmp_path / "walk.avi", frames=6, fourcc="MJPG")
    save_dir = detect_quietly(weights, video, tmp_path, vid_stride=2)
    capture = cv2.VideoCapture(str(save_dir / "walk.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # every 2nd of 6 frames, all in one file
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10)


def test_save_txt_equals_nms_of_same_pipeline(weights, media, tmp_path):
    conf, iou, max_det = 0.002, 0.45, 7
    save_dir = detect_quietly(weights, media / "scene.jpg", tmp_path, conf_thres=conf, iou_thres=iou,
                              max_det=max_det, save_txt=True, save_conf=True, nosave=True)
    im0 = cv2.imread(str(media / "scene.jpg"))
    im = letterbox(im0, (IMGSZ, IMGSZ), stride=32, auto=True)[0]
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)[::-1])).float()[None] / 255
    precision = select_precision("cpu", amp=False)  # fp32 in detect's memory format, as val.py without --half
    model = precision.model(attempt_load(weights, device=torch.device("cpu"), fuse=True))
    with torch.no_grad():
        (det,) = non_max_suppression(model(precision.batch(x)), conf, iou, max_det=max_det)
    assert len(det), "the test needs some boxes above the threshold"
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
    xywhn = xyxy2xywhn(det[:, :4], w=im0.shape[1], h=im0.shape[0])
    expected = sorted(zip(det[:, 5].tolist(), *xywhn.T.tolist(), det[:, 4].tolist()))
    written = read_labels(save_dir / "labels" / "scene.txt")
    assert len(written) == len(expected)
    np.testing.assert_allclose(np.array(written), np.array(expected), rtol=0, atol=2e-6)  # %g keeps 6 digits


def test_ensemble_of_same_checkpoint_twice_equals_single(weights, media, tmp_path):
    single = detect_quietly(weights, media / "scene.jpg", tmp_path, name="single", save_txt=True, save_conf=True)
    double = detect_quietly([weights, weights], media / "scene.jpg", tmp_path, name="double", save_txt=True,
                            save_conf=True)
    assert read_labels(single / "labels" / "scene.txt") == read_labels(double / "labels" / "scene.txt")


def test_filters_and_hidden_labels(weights, media, tmp_path):
    save_dir = detect_quietly(weights, media / "scene.jpg", tmp_path, classes=[2], agnostic_nms=True,
                              hide_labels=True, hide_conf=True, line_thickness=1, save_txt=True)
    rows = read_labels(save_dir / "labels" / "scene.txt") if (save_dir / "labels" / "scene.txt").exists() else []
    assert all(len(row) == 5 and row[0] == 2 for row in rows)
    assert (save_dir / "scene.jpg").exists()


def test_half_runs_in_reduced_precision_on_cpu(weights, media, tmp_path):
    save_dir = detect_quietly(weights, media / "scene.jpg", tmp_path, half=True, save_txt=True, save_conf=True)
    rows = read_labels(save_dir / "labels" / "scene.txt")
    assert rows and all(len(row) == 6 for row in rows)


def test_view_img_without_display_is_a_notice(weights, media, tmp_path, log_lines):
    if detect.display_available():
        pytest.skip("this machine has a display")
    save_dir = detect_quietly(weights, media / "scene.jpg", tmp_path, view_img=True)
    assert any("--view-img needs a display" in line for line in log_lines)
    assert (save_dir / "scene.jpg").exists()


def test_missing_webcam_and_url_are_clear_errors(weights, tmp_path):
    if not cv2.VideoCapture(0).isOpened():
        with pytest.raises(ConnectionError, match="no camera found"):
            detect_quietly(weights, "0", tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded here"):
        detect_quietly(weights, "https://ultralytics.com/images/zidane.jpg", tmp_path)


@pytest.mark.parametrize("source, kind", [
    ("0", (True, False)), ("cams.streams", (True, False)), ("rtsp://host/live", (True, False)),
    ("https://host/bus.jpg", (False, True)), ("data/images", (False, False)), ("clip.mp4", (False, False)),
])
def test_classify_source(source, kind):
    assert detect.classify_source(source) == kind


def test_cli_names_and_aliases():
    opt = detect.parse_opt(["--weights", "a.pt", "b.pt", "--img", "96", "--conf", "0.3", "--iou", "0.5",
                            "--classes", "0", "2", "--save-txt", "--vid-stride", "2"])
    assert opt.weights == ["a.pt", "b.pt"] and opt.imgsz == [96, 96]
    assert (opt.conf_thres, opt.iou_thres, opt.classes, opt.save_txt, opt.vid_stride) == (0.3, 0.5, [0, 2], True, 2)
    assert detect.parse_opt(["--img-size", "64", "96"]).imgsz == [64, 96]
    assert set(vars(opt)) == set(inspect.signature(detect.run).parameters)  # every flag reaches run()


@pytest.mark.skipif(not OFFICIAL.exists() or not COCO_IMAGES.exists(), reason="needs ../shared weights and coco128")
def test_official_weights_find_people(tmp_path, log_lines):
    image = COCO_IMAGES / "000000000036.jpg"  # a woman with an umbrella
    save_dir = detect_quietly(OFFICIAL, image, tmp_path, imgsz=(320, 320), conf_thres=0.25, max_det=1000,
                              save_txt=True, save_conf=True)
    rows = read_labels(save_dir / "labels" / "000000000036.txt")
    best = max(rows, key=lambda row: row[5])
    assert best[0] == 0 and best[5] > 0.5  # the most confident box is a person
    assert any(re.search(r": 320x256 (.*, )?\d+ persons?, ", line) for line in log_lines)  # 640x481 -> 320x240.5 -> 256 wide


EXPORTS = ["yolov5n.torchscript", "yolov5n.onnx", "yolov5n_openvino_model"]


@pytest.mark.skipif(not COCO_IMAGES.exists(), reason="needs ../shared coco128")
@pytest.mark.parametrize("export_name", EXPORTS)
def test_each_export_detects_as_the_pt(exports, tmp_path, export_name):
    """A --dynamic export finds the .pt's boxes on the same rectangular image; a static one runs square at its size."""
    image, size = COCO_IMAGES / "000000000009.jpg", (exports.size, exports.size)
    options = dict(imgsz=size, conf_thres=0.25, max_det=1000, save_txt=True, save_conf=True)
    reference = read_labels(detect_quietly(exports.pt, image, tmp_path, name="pt", **options) / "labels/000000000009.txt")
    rows = read_labels(detect_quietly(exports.dynamic / export_name, image, tmp_path, name="dyn", **options)
                       / "labels/000000000009.txt")
    assert len(rows) == len(reference) >= 2 and np.allclose(rows, reference, atol=1e-4)
    static_dir = detect_quietly(exports.static / export_name, image, tmp_path, name="static", **options)
    assert read_labels(static_dir / "labels/000000000009.txt")
    assert cv2.imread(str(static_dir / "000000000009.jpg")).shape == cv2.imread(str(image)).shape


def test_dnn_runs_onnx_with_opencv(exports, media, tmp_path, log_lines):
    save_dir = detect_quietly(exports.static / "yolov5n.onnx", media / "scene.jpg", tmp_path, dnn=True,
                              imgsz=(exports.size, exports.size), save_txt=True)
    assert any("for OpenCV DNN inference" in line for line in log_lines)
    assert any(f"scene.jpg: {exports.size}x{exports.size} " in line for line in log_lines)  # square, as YOLOv5
    assert (save_dir / "scene.jpg").exists()


def test_save_csv_writes_yolov5s_predictions_csv(weights, media, tmp_path):
    save_dir = detect_quietly(weights, media / "scene.jpg", tmp_path, save_csv=True, save_txt=True, save_conf=True)
    with open(save_dir / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    labels = read_labels(save_dir / "labels/scene.txt")
    assert rows[0] == ["Image Name", "Prediction", "Confidence"] and len(rows) == 1 + len(labels) > 1
    names = ["circle", "star", "square", "triangle"]
    assert sorted((r[1], r[2]) for r in rows[1:]) == sorted((names[int(x[0])], f"{x[5]:.2f}") for x in labels)
    assert all(r[0] == "scene.jpg" for r in rows[1:])


def test_update_strips_the_optimizer(weights, media, tmp_path):
    from utils.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(weights)
    ckpt.update(optimizer={"state": {}, "param_groups": []}, epoch=3, ema=ckpt["model"])
    trained = tmp_path / "last.pt"
    save_checkpoint(ckpt, trained)
    detect_quietly(trained, media / "scene.jpg", tmp_path, update=True, nosave=True)
    stripped = load_checkpoint(trained)
    assert stripped["optimizer"] is None and stripped["ema"] is None and stripped["epoch"] == -1
    assert next(stripped["model"].parameters()).dtype == torch.float16


def test_cli_accepts_save_csv_dnn_and_update():
    opt = detect.parse_opt(["--weights", "m.onnx", "--save-csv", "--dnn", "--update"])
    assert (opt.save_csv, opt.dnn, opt.update) == (True, True, True)
