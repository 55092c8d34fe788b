"""Per-epoch results: results.csv (YOLOv5's columns and format, rewritten atomically) and TensorBoard scalars."""

import csv
import io
from pathlib import Path

from utils.files import atomic_write_text
from utils.log import LOGGER, colorstr

# The 7 numbers val.run and train() return, in order; evolve.csv starts with these columns
METRIC_KEYS = (
    "metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
    "val/box_loss", "val/obj_loss", "val/cls_loss",
)
# results.csv's columns after 'epoch': the mean training losses, METRIC_KEYS, the learning rate of each param group
RESULT_KEYS = ("train/box_loss", "train/obj_loss", "train/cls_loss") + METRIC_KEYS + ("x/lr0", "x/lr1", "x/lr2")


def format_row(values):
    """One line as YOLOv5 writes it: every value right-aligned in 20 characters, '%.5g'."""
    return ",".join(f"{v:20.5g}" for v in values)


def read_rows(path):
    """The numeric rows of a results.csv (header skipped), as lists of floats; [] when the file is absent."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, row in enumerate(csv.reader(io.StringIO(path.read_text()))):
        if i == 0 or not row:
            continue
        try:
            rows.append([float(x) for x in row])
        except ValueError as e:
            raise ValueError(f"{path}: line {i + 1} is not a row of numbers ({e}); delete or fix the line") from e
    return rows


class ResultsWriter:
    """Writes results.csv (epoch, then RESULT_KEYS) and TensorBoard scalars into a run folder.

    Each row is added by rewriting the whole file atomically, so a killed process leaves the previous complete
    file. On resume, `truncate(last_epoch)` drops rows after the checkpoint's epoch: a run killed after writing
    a row but before saving that epoch's checkpoint never repeats an epoch in the file.
    """

    def __init__(self, save_dir, keys=RESULT_KEYS, tensorboard=True):
        self.save_dir = Path(save_dir)
        self.csv = self.save_dir / "results.csv"
        self.keys = tuple(keys)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.save_dir))
                LOGGER.info(f"{colorstr('TensorBoard: ')}Start with 'tensorboard --logdir {self.save_dir.parent}', "
                            "view at http://localhost:6006/")
            except ImportError as e:  # optional: results.csv carries the same numbers
                LOGGER.warning(f"{colorstr('TensorBoard: ')}not logging ({e}); pip install tensorboard")

    def header(self):
        return ",".join(f"{k:>20s}" for k in ("epoch",) + self.keys)

    def truncate(self, last_epoch):
        """Keep only the rows of epochs <= last_epoch (the epoch of the checkpoint being resumed)."""
        rows = [r for r in read_rows(self.csv) if r[0] <= last_epoch]
        self._write(rows)
        return len(rows)

    def log(self, epoch, values):
        """Append the row for `epoch` (values in the order of keys) and write the TensorBoard scalars."""
        values = [float(v) for v in values]
        if len(values) != len(self.keys):
            raise ValueError(f"results row has {len(values)} values for {len(self.keys)} columns")
        rows = [r for r in read_rows(self.csv) if r[0] < epoch]  # a rewritten epoch replaces its old row
        self._write(rows + [[epoch] + values])
        if self.tb:
            for key, value in zip(self.keys, values):
                self.tb.add_scalar(key, value, epoch)
            self.tb.flush()

    def _write(self, rows):
        lines = [self.header()] + [format_row([int(r[0])] + list(r[1:])) for r in rows]
        atomic_write_text(self.csv, "\n".join(lines) + "\n")

    def close(self):
        if self.tb:
            self.tb.close()
            self.tb = None
