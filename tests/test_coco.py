"""COCO interop: which datasets count as COCO val2017 (YOLOv5's test on the val path), and the 80 -> 91 class map."""

import pytest

from utils.coco import coco80_to_coco91_class, validates_on_coco


@pytest.mark.parametrize("val, expected", [
    ("../datasets/coco/val2017.txt", True),
    ("..\\datasets\\coco\\val2017.txt", True),  # a Windows path
    ("../datasets/coco128/images/train2017", False),
    (["../datasets/coco/val2017.txt"], False),  # a list of splits is not COCO's val list
    (None, False),
])
def test_validates_on_coco(val, expected):
    assert validates_on_coco({"val": val}) is expected


def test_coco80_to_coco91_class():
    ids = coco80_to_coco91_class()
    assert len(ids) == 80 and ids[:11] == list(range(1, 12)) and ids[11] == 13 and ids[-1] == 90
