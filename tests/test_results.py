"""results.csv: YOLOv5's format, atomic rewrites, truncation to the resumed checkpoint's epoch."""

import pandas as pd
import pytest

from utils.results import RESULT_KEYS, ResultsWriter, read_rows


def test_format_and_truncate(tmp_path):
    w = ResultsWriter(tmp_path, tensorboard=False)
    for epoch in range(4):
        w.log(epoch, [epoch + i / 100 for i in range(len(RESULT_KEYS))])
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].split(",")[0] == " " * 15 + "epoch" and len(lines[1].split(",")[1]) == 20
    df = pd.read_csv(tmp_path / "results.csv")
    assert [c.strip() for c in df.columns] == ["epoch", *RESULT_KEYS]
    assert df.iloc[:, 0].tolist() == [0, 1, 2, 3]
    assert w.truncate(1) == 2
    w.log(2, [9] * len(RESULT_KEYS))
    assert [r[0] for r in read_rows(tmp_path / "results.csv")] == [0, 1, 2]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_rewriting_an_epoch_replaces_its_row(tmp_path):
    w = ResultsWriter(tmp_path, tensorboard=False)
    w.log(0, [1] * len(RESULT_KEYS))
    w.log(0, [2] * len(RESULT_KEYS))
    assert read_rows(tmp_path / "results.csv") == [[0] + [2.0] * len(RESULT_KEYS)]


def test_bad_row_names_the_file(tmp_path):
    (tmp_path / "results.csv").write_text("epoch,a\n0,abc\n")
    with pytest.raises(ValueError, match="results.csv"):
        read_rows(tmp_path / "results.csv")


def test_tensorboard_scalars(tmp_path):
    w = ResultsWriter(tmp_path, tensorboard=True)
    w.log(0, [0.5] * len(RESULT_KEYS))
    w.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
