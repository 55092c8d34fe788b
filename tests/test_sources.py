import time

import cv2
import numpy as np
import pytest

from utils.sources import LoadImages, LoadStreams, expand_source

H, W = 48, 64  # source image/video size
FRAMES = 10


def write_video(path, frames=FRAMES, fps=25, fourcc="mp4v"):
    """Flat grey frames of value 20*k, so a frame's index can be read back from its pixels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"OpenCV here cannot write {fourcc}"
    for k in range(frames):
        writer.write(np.full((H, W, 3), 20 * k, np.uint8))
    writer.release()
    return path


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = 255  # pure blue in OpenCV's BGR order
    cv2.imwrite(str(folder / "blue.png"), image)
    write_video(folder / "clip.mp4")
    return folder


@pytest.mark.parametrize("auto, shape", [(True, (3, 96, 128)), (False, (3, 128, 128))])
def test_image_file_letterboxed_rgb_chw(media, auto, shape):
    # 48x64 at 128: gain 2 -> 96x128; auto pads 96 up to a multiple of 32 (already is), else to 128x128
    (path, im, im0, cap, s), = list(LoadImages(media / "blue.png", img_size=128, stride=32, auto=auto))
    assert im.shape == shape and im.dtype == np.uint8 and im.flags["C_CONTIGUOUS"]
    top = (shape[1] - 96) // 2
    assert (im[2, top:top + 96] == 255).all() and (im[0, top:top + 96] == 0).all()  # blue is channel 2 in RGB
    assert im0.shape == (H, W, 3) and (im0[..., 0] == 255).all()  # the original stays BGR
    assert cap is None and s == f"image 1/1 {path}: "


def test_folder_images_then_video_frames(media):
    dataset = LoadImages(media, img_size=64, stride=32)
    items = list(dataset)
    assert len(dataset) == 2 and len(items) == 1 + FRAMES
    assert items[0][4].startswith("image 1/2 ") and items[0][0].endswith("blue.png")
    assert items[1][4] == f"video 2/2 (1/{FRAMES}) {media / 'clip.mp4'}: "
    assert items[-1][4].startswith(f"video 2/2 ({FRAMES}/{FRAMES})")
    assert all(item[3] is not None for item in items[1:])  # the capture is handed out with each frame
    assert items[1][1].shape == (3, 64, 64)  # gain 1; auto pads the 48 rows by 16 to a multiple of 32


@pytest.mark.parametrize("vid_stride, expected_frames", [(1, list(range(FRAMES))), (3, [2, 5, 8]), (4, [3, 7])])
def test_video_stride_reads_every_nth_frame(tmp_path, vid_stride, expected_frames):
    video = write_video(tmp_path / "clip.avi", fourcc="MJPG")
    items = list(LoadImages(video, img_size=64, vid_stride=vid_stride))
    levels = [int(round(item[2].mean() / 20)) for item in items]
    assert levels == expected_frames
    assert items[0][4].endswith(f"(1/{FRAMES // vid_stride}) {video}: ")


def test_glob_and_txt_list(media, tmp_path):
    assert expand_source(str(media / "*.png")) == [str(media / "blue.png")]
    listing = tmp_path / "list.txt"
    listing.write_text("media/blue.png\n\nmedia/clip.mp4\n")  # relative to the list's folder
    assert expand_source(listing) == [str(media / "blue.png"), str(media / "clip.mp4")]
    assert len(list(LoadImages(str(listing), img_size=64))) == 1 + FRAMES


def test_missing_and_empty_sources_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jpg does not exist"):
        LoadImages(tmp_path / "nothere.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No images or videos found"):
        LoadImages(tmp_path / "empty")


def test_corrupt_image_skipped_with_warning(media, log_records):
    (media / "broken.jpg").write_bytes(b"not a jpeg")
    items = list(LoadImages(media, img_size=64))
    assert [item[0].endswith("broken.jpg") for item in items].count(True) == 0
    assert len(items) == 1 + FRAMES
    assert any("broken.jpg" in r.getMessage() and "skipping" in r.getMessage() for r in log_records)


def test_missing_webcam_says_so():
    if cv2.VideoCapture(0).isOpened():
        pytest.skip("a camera is attached")
    with pytest.raises(ConnectionError, match="Failed to open webcam 0: no camera found"):
        LoadStreams("0", img_size=64)


def test_streams_file_batches_every_source_until_they_end(media, tmp_path):
    second = write_video(tmp_path / "second.avi", fourcc="MJPG")
    streams = tmp_path / "list.streams"
    streams.write_text(f"{media / 'clip.mp4'}\n{second}\n")
    dataset = LoadStreams(str(streams), img_size=64, stride=32)
    assert len(dataset) == 2 and dataset.rect
    start, batches = time.time(), []
    for sources, im, im0, cap, s in dataset:  # noqa: B007 (the last item is checked below)
        batches.append(im)
        assert time.time() - start < 30, "LoadStreams did not end after its sources did"
    assert len(batches) >= 1
    assert batches[0].shape == (2, 3, 64, 64) and len(im0) == 2 and sources == dataset.sources
    assert batches[-1][:, :, 8:56].mean() > 150  # the last frames (value 180; rows 8:56 unpadded) were delivered
