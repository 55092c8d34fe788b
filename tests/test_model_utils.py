"""Network helpers: sizes that fit the stride."""

import pytest

from utils.model_utils import check_img_size, make_divisible


@pytest.mark.parametrize("imgsz, stride, floor, expected", [(640, 32, 0, 640), (100, 32, 0, 128), (30, 32, 64, 64)])
def test_check_img_size(imgsz, stride, floor, expected):
    assert check_img_size(imgsz, stride, floor) == expected


@pytest.mark.parametrize("x, divisor, expected", [(64, 8, 64), (65, 8, 72), (1, 32, 32)])
def test_make_divisible(x, divisor, expected):
    assert make_divisible(x, divisor) == expected
