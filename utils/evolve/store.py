"""The evolve folder's files, shared by every process: evolve.csv, evolve_rungs.csv, hyp_evolved.yaml,
evolve_verify.csv, claims.

This is the only code that reads or writes them. Writers take an inter-process lock (fcntl.flock on .evolve.lock)
and replace files atomically, so concurrent processes never lose a row, the header is written once, and any reader
(pandas, YOLOv5's own tools, a process killed mid-write) sees only whole files with whole rows.
"""

import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from utils.evolve.claims import DEFAULT_GRACE_MIN, ClaimOwner
from utils.evolve.meta import METRIC_KEYS, fitness
from utils.evolve.rungs import RUNG_KEYS, RungRow, counted_rows, pruned_candidates
from utils.files import atomic_write_text
from utils.log import LOGGER, colorstr

CSV_NAME = "evolve.csv"
YAML_NAME = "hyp_evolved.yaml"
LOCK_NAME = ".evolve.lock"
CLAIMS_DIR = ".evolve_claims"
VERIFY_NAME = "evolve_verify.csv"
VERIFY_CLAIMS_DIR = ".evolve_verify_claims"
VERIFY_KEYS = ("row", "seed", "epochs", "fitness") + METRIC_KEYS
RUNGS_NAME = "evolve_rungs.csv"


def csv_header(keys):
    """evolve.csv's header line as YOLOv5 writes it: each key right-aligned to width 20, comma-separated."""
    return ("%20s," * len(keys) % tuple(keys)).rstrip(",") + "\n"


def csv_row(values):
    """One evolve.csv row as YOLOv5 writes it: each value as '%20.5g', comma-separated."""
    return ("%20.5g," * len(values) % tuple(values)).rstrip(",") + "\n"


def evolved_yaml_text(keys, values):
    """hyp_evolved.yaml for the best row of (n, len(keys)) `values`: YOLOv5's comment header, then the hyps."""
    values = np.asarray(values, dtype=float)
    best = int(np.argmax(fitness(values[:, : len(METRIC_KEYS)])))
    metric_count = len(METRIC_KEYS)
    hyps = {k: float(v) for k, v in zip(keys[metric_count:], values[best, metric_count:])}
    return (
        "# YOLOv5 Hyperparameter Evolution Results\n"
        f"# Best generation: {best}\n"
        f"# Last generation: {len(values) - 1}\n"
        "# " + ", ".join(f"{k:>20s}" for k in keys[:metric_count]) + "\n"
        "# " + ", ".join(f"{v:>20.5g}" for v in values[best, :metric_count]) + "\n\n"
        + yaml.safe_dump(hyps, sort_keys=False)
    )


def summary_text(keys, values, generations, prefix="evolve: "):
    """The log line after a generation: how many rows the folder holds, then this generation's keys and values."""
    return (f"{prefix}{generations} generations finished, current result:\n"
            + prefix + ", ".join(f"{k:>20s}" for k in keys) + "\n"
            + prefix + ", ".join(f"{v:20.5g}" for v in values))


@dataclass
class History:
    """Every whole row of evolve.csv, the pruned candidates and those in flight: what a method proposes from."""

    hyp_keys: tuple
    metrics: np.ndarray  # (rows, 7) in METRIC_KEYS order
    hyps: np.ndarray  # (rows, len(hyp_keys))
    claims: list = field(default_factory=list)  # hyp dicts in flight, from any process
    pruned: list = field(default_factory=list)  # PrunedCandidate, in the order they were pruned (--evolve-prune)

    def __len__(self):
        return len(self.metrics)

    @property
    def finished(self):
        """Candidates that ended: rows of evolve.csv plus pruned ones."""
        return len(self) + len(self.pruned)

    @property
    def started(self):
        """Candidates started, what --evolve N counts: finished plus in flight."""
        return self.finished + len(self.claims)

    @property
    def fitness(self):
        return fitness(self.metrics) if len(self) else np.zeros(0)

    def hyp_dict(self, index):
        return {k: float(v) for k, v in zip(self.hyp_keys, self.hyps[index])}


class EvolveStore:
    """evolve.csv, hyp_evolved.yaml and claims in one folder; methods that write take the inter-process lock."""

    def __init__(self, folder, claim_grace_s=DEFAULT_GRACE_MIN * 60):
        self.folder = Path(folder)
        self.csv = self.folder / CSV_NAME
        self.yaml = self.folder / YAML_NAME
        self.lock_file = self.folder / LOCK_NAME
        self.claims_dir = self.folder / CLAIMS_DIR
        self.verify_csv = self.folder / VERIFY_NAME
        self.rungs_csv = self.folder / RUNGS_NAME
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd = None
        self.owner = ClaimOwner(self.folder, self.locked, grace_s=claim_grace_s)

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (re-entrant within this object; blocks while another process holds it)."""
        with self._thread_lock:
            if self._depth == 0:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # evolve.csv -------------------------------------------------------------------------------------------------
    def _whole_lines(self):
        """evolve.csv's complete lines (a trailing line without newline, torn by a foreign writer, is left out)."""
        if not self.csv.exists():
            return []
        text = self.csv.read_text()
        return text.split("\n")[:-1] if text else []

    def read(self):
        """(keys, values): the header's keys and an (n, len(keys)) float array of the whole rows, or ((), empty)."""
        lines = self._whole_lines()
        if not lines:
            return (), np.zeros((0, 0))
        keys = tuple(k.strip() for k in lines[0].split(","))
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split(",")
            try:
                if len(fields) != len(keys):
                    raise ValueError(f"{len(fields)} fields, the header has {len(keys)}")
                rows.append([float(x) for x in fields])
            except ValueError as e:
                raise ValueError(f"{self.csv} line {number} is malformed ({e}): fix or delete that line, "
                                 "or evolve into a new folder with another --name") from e
        return keys, np.asarray(rows, dtype=float).reshape(len(rows), len(keys))

    def row_count(self):
        return len(self.read()[1])

    def check_keys(self, hyp_keys):
        """Refuse a folder whose evolve.csv has other hyp columns than this evolution's (another hyp file, anchors)."""
        keys, _ = self.read()
        expected = tuple(METRIC_KEYS) + tuple(hyp_keys)
        if keys and keys != expected:
            missing, extra = set(expected) - set(keys), set(keys) - set(expected)
            raise ValueError(
                f"{self.csv} has columns that do not match this evolution's hyps (missing {sorted(missing)}, extra "
                f"{sorted(extra)}, or another order): use the same --hyp and --noautoanchor as the run that started "
                "it, or evolve into a new folder with another --name")

    def history(self, hyp_keys):
        """The rows (metrics and hyps in `hyp_keys` order), pruned candidates and live claims, for a method."""
        with self.locked():
            keys, values = self.read()
            pruned = pruned_candidates(self.read_rungs(hyp_keys))
            claims = self.claims()
        metric_count = len(METRIC_KEYS)
        if not keys:
            values = np.zeros((0, metric_count + len(hyp_keys)))
        else:
            self.check_keys(hyp_keys)
        return History(tuple(hyp_keys), values[:, :metric_count], values[:, metric_count:], claims, pruned)

    def append(self, results, hyp, claim_id=None):
        """Add one generation (7 results, hyp dict) to evolve.csv, rewrite hyp_evolved.yaml, drop its claim.

        Returns the new row's 0-based index.
        """
        results = tuple(float(x) for x in results)[: len(METRIC_KEYS)]
        if len(results) != len(METRIC_KEYS):
            raise ValueError(f"train() must return {len(METRIC_KEYS)} results {METRIC_KEYS}, got {len(results)}")
        keys = tuple(METRIC_KEYS) + tuple(hyp)
        with self.locked():
            lines = self._whole_lines()
            if lines:
                self.check_keys(tuple(hyp))
                text = "\n".join(lines) + "\n"
            else:
                text = csv_header(keys)
            text += csv_row(results + tuple(hyp.values()))
            atomic_write_text(self.csv, text)
            _, values = self.read()
            atomic_write_text(self.yaml, evolved_yaml_text(keys, values))
            if claim_id is not None:
                self.release(claim_id)
            return len(values) - 1

    def replace_yaml(self, text):
        """Rewrite hyp_evolved.yaml with `text` (the verdict of --evolve-verify), under the lock."""
        with self.locked():
            atomic_write_text(self.yaml, text)

    # evolve_rungs.csv -------------------------------------------------------------------------------------------
    def read_rungs(self, hyp_keys):
        """evolve_rungs.csv's whole rows as RungRow, in file order (empty without the file)."""
        if not self.rungs_csv.exists():
            return []
        lines = self.rungs_csv.read_text().split("\n")[:-1]
        expected = RUNG_KEYS + tuple(hyp_keys)
        if lines and tuple(k.strip() for k in lines[0].split(",")) != expected:
            raise ValueError(f"{self.rungs_csv} has other columns than this evolution's: use the same --hyp and "
                             "--noautoanchor as the run that started it, or evolve into a new folder with --name")
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            fields = [f.strip() for f in line.split(",")]
            try:
                if len(fields) != len(expected):
                    raise ValueError(f"{len(fields)} fields, the header has {len(expected)}")
                numbers = [float(x) for x in fields[3:]]
            except ValueError as e:
                raise ValueError(f"{self.rungs_csv} line {number} is malformed ({e}): fix or delete that line") from e
            rows.append(RungRow(fields[0], int(fields[1]), fields[2], numbers[0], tuple(numbers[1:8]),
                                dict(zip(hyp_keys, numbers[8:]))))
        return rows

    def counted_rungs(self, hyp_keys):
        """The rung rows of candidates that ended or are in flight (counted_rows), read under the lock."""
        with self.locked():
            return counted_rows(self.read_rungs(hyp_keys), self.live_claims())

    def append_rung(self, candidate, epoch, state, results, hyp):
        """Add one row (a candidate at a rung: its state and 7 results there) to evolve_rungs.csv, under the lock."""
        results = tuple(float(x) for x in results)[: len(METRIC_KEYS)]
        line = (f"{candidate:>20s},{int(epoch):20d},{state:>20s},"
                + csv_row((float(fitness(results)),) + results + tuple(hyp.values())))
        with self.locked():
            text = self.rungs_csv.read_text() if self.rungs_csv.exists() else ""
            text = text[: text.rfind("\n") + 1] or csv_header(RUNG_KEYS + tuple(hyp))  # a torn tail is dropped
            atomic_write_text(self.rungs_csv, text + line)

    # evolve_verify.csv ------------------------------------------------------------------------------------------
    def read_verify(self):
        """evolve_verify.csv's whole rows as an (n, len(VERIFY_KEYS)) array (row, seed, epochs, fitness, 7 metrics)."""
        if not self.verify_csv.exists():
            return np.zeros((0, len(VERIFY_KEYS)))
        lines = self.verify_csv.read_text().split("\n")
        header = tuple(k.strip() for k in lines[0].split(","))
        if header != VERIFY_KEYS:
            raise ValueError(f"{self.verify_csv} does not have the columns {', '.join(VERIFY_KEYS)} (a file from "
                             "before verification recorded its epochs lacks 'epochs'): move it aside and run the "
                             "command again to retrain the verification")
        rows = []
        for number, line in enumerate(lines[1:-1], start=2):
            try:
                rows.append([float(x) for x in line.split(",")])
                if len(rows[-1]) != len(VERIFY_KEYS):
                    raise ValueError(f"{len(rows[-1])} fields, expected {len(VERIFY_KEYS)}")
            except ValueError as e:
                raise ValueError(f"{self.verify_csv} line {number} is malformed ({e}): fix or delete that line") from e
        return np.asarray(rows, dtype=float).reshape(len(rows), len(VERIFY_KEYS))

    def append_verify(self, row, seed, epochs, results, claim_id=None):
        """Add one verification training (evolve.csv row, seed, its epochs, 7 results) to evolve_verify.csv and drop
        its claim."""
        results = tuple(float(x) for x in tuple(results)[: len(METRIC_KEYS)])
        if len(results) != len(METRIC_KEYS):
            raise ValueError(f"train() must return {len(METRIC_KEYS)} results {METRIC_KEYS}, got {len(results)}")
        line = f"{int(row):20d},{int(seed):20d},{int(epochs):20d}," + csv_row((float(fitness(results)),) + results)
        with self.locked():
            text = self.verify_csv.read_text() if self.verify_csv.exists() else ""
            if text:
                self.read_verify()  # refuses a file of another layout before a row is added to it
            text = text[: text.rfind("\n") + 1] or csv_header(VERIFY_KEYS)  # a torn tail is dropped
            atomic_write_text(self.verify_csv, text + line)
            if claim_id is not None:
                self.release(claim_id, VERIFY_CLAIMS_DIR)

    # claims -----------------------------------------------------------------------------------------------------
    def claim(self, item, pool=CLAIMS_DIR):
        """Mark `item` (a hyp dict, or a verification job) as in training by this process, visible to every other.

        `pool` is the claims folder: CLAIMS_DIR for generations, VERIFY_CLAIMS_DIR for verification jobs. Returns the
        claim's id. The claim stays live while this store's heartbeat runs (claims.py).
        """
        return self.owner.claim(item, pool)

    def release(self, claim_id, pool=CLAIMS_DIR):
        self.owner.release(claim_id, pool)

    def claims(self, pool=CLAIMS_DIR):
        """Items of the live claims in `pool`; stale claims (owner dead, heartbeat lost) are deleted."""
        return list(self.live_claims(pool).values())

    def live_claims(self, pool=CLAIMS_DIR):
        """{claim id: item} of the live claims in `pool`, in id order; stale claims are deleted."""
        return self.owner.live_items(pool)

    def close(self):
        """Stop this store's heartbeat (its claims turn stale once the grace period passes)."""
        self.owner.close()


def print_mutation(keys, results, hyp, save_dir, bucket="", prefix=colorstr("evolve: ")):
    """YOLOv5's utils.general.print_mutation: append one generation to save_dir/evolve.csv (locked, atomic), rewrite
    hyp_evolved.yaml and log the row. `keys` are the 7 metric names; cloud buckets are not supported.
    """
    if bucket:
        raise ValueError(f"evolve buckets (gs://{bucket}) are not supported: copy evolve.csv to and from the bucket by "
                         "hand, or share one folder between processes as the README shows")
    if tuple(k.strip() for k in keys) != METRIC_KEYS:
        raise ValueError(f"print_mutation keys must be {METRIC_KEYS}, got {tuple(keys)}")
    index = EvolveStore(save_dir).append(results, hyp)
    values = tuple(float(x) for x in results) + tuple(hyp.values())
    LOGGER.info(summary_text(METRIC_KEYS + tuple(hyp), values, index + 1, prefix))
    return index
