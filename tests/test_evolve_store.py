"""evolve.csv / hyp_evolved.yaml formats, the inter-process lock, torn files, claims."""

import multiprocessing
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from utils.evolve.meta import METRIC_KEYS
from utils.evolve.store import EvolveStore, csv_header, csv_row, evolved_yaml_text

HYP = {"lr0": 0.01, "momentum": 0.937, "anchors": 3.0}
RESULTS = (0.5, 0.4, 0.6, 0.3, 0.05, 0.03, 0.01)


def test_csv_header_and_row_formats():
    assert csv_header(["a", "metrics/mAP_0.5"]) == " " * 19 + "a," + " " * 5 + "metrics/mAP_0.5\n"
    assert csv_row([0.01, 3]) == " " * 16 + "0.01," + " " * 19 + "3\n"
    assert csv_row([0.0123456789, 1e-5]) == f"{0.012346:>20},{'1e-05':>20}\n"


def test_append_writes_header_once_and_rows_tools_can_read(tmp_path):
    store = EvolveStore(tmp_path)
    assert store.append(RESULTS, HYP) == 0
    assert store.append((0.1, 0.1, 0.9, 0.8, 0, 0, 0), {**HYP, "lr0": 0.02}) == 1
    lines = store.csv.read_text().splitlines()
    assert len(lines) == 3 and lines[0] == csv_header(METRIC_KEYS + tuple(HYP)).rstrip("\n")
    assert all(len(field) == 20 for line in lines for field in line.split(","))
    table = pd.read_csv(store.csv, skipinitialspace=True)  # how YOLOv5's tools read it
    assert [c.strip() for c in table.columns] == list(METRIC_KEYS) + list(HYP)
    assert table.values[1, 7] == 0.02
    keys, values = store.read()
    assert keys == METRIC_KEYS + tuple(HYP) and values.shape == (2, 10)


def test_hyp_evolved_yaml_is_the_best_row(tmp_path):
    store = EvolveStore(tmp_path)
    store.append((0.1, 0.1, 0.9, 0.1, 0, 0, 0), HYP)  # fitness 0.18
    store.append((0.1, 0.1, 0.5, 0.5, 0, 0, 0), {**HYP, "lr0": 0.02})  # fitness 0.5: best
    store.append((0.1, 0.1, 0.2, 0.2, 0, 0, 0), {**HYP, "lr0": 0.03})
    text = store.yaml.read_text()
    lines = text.splitlines()
    assert lines[:3] == ["# YOLOv5 Hyperparameter Evolution Results", "# Best generation: 1", "# Last generation: 2"]
    assert lines[3] == "# " + ", ".join(f"{k:>20s}" for k in METRIC_KEYS)
    assert lines[4] == "# " + ", ".join(f"{v:>20.5g}" for v in (0.1, 0.1, 0.5, 0.5, 0, 0, 0))
    assert lines[5] == ""
    assert yaml.safe_load(text) == {"lr0": 0.02, "momentum": 0.937, "anchors": 3.0}


def test_evolved_yaml_text_order_is_hyp_order():
    keys = METRIC_KEYS + ("b", "a")
    text = evolved_yaml_text(keys, np.array([[0, 0, 0, 0, 0, 0, 0, 2.0, 1.0]]))
    assert text.endswith("b: 2.0\na: 1.0\n")


def test_torn_tail_is_ignored_then_repaired(tmp_path):
    store = EvolveStore(tmp_path)
    store.append(RESULTS, HYP)
    with open(store.csv, "a") as f:
        f.write("    0.5,     0.4")  # a foreign writer killed mid-row
    assert store.row_count() == 1
    store.append(RESULTS, HYP)
    assert store.row_count() == 2 and "0.4\n" not in store.csv.read_text().split("\n", 2)[2][:16]
    assert all(len(line.split(",")) == 10 for line in store.csv.read_text().splitlines())


def test_malformed_row_names_file_and_line(tmp_path):
    store = EvolveStore(tmp_path)
    store.append(RESULTS, HYP)
    with open(store.csv, "a") as f:
        f.write("1,2,3\n")
    with pytest.raises(ValueError, match=r"evolve.csv line 3 is malformed"):
        store.read()


def test_other_hyp_columns_are_refused(tmp_path):
    store = EvolveStore(tmp_path)
    store.append(RESULTS, HYP)
    with pytest.raises(ValueError, match="--noautoanchor"):
        store.append(RESULTS, {"lr0": 0.01, "momentum": 0.9})
    with pytest.raises(ValueError, match="7 results"):
        store.append((1, 2, 3), HYP)


def test_lock_is_reentrant_and_excludes_other_processes(tmp_path):
    store = EvolveStore(tmp_path)
    code = ("import sys, time; sys.path.insert(0, '.'); from utils.evolve.store import EvolveStore; "
            f"s = EvolveStore({str(tmp_path)!r}); print('ready', flush=True); t = time.time()\n"
            "with s.locked(): print(time.time() - t)")
    with store.locked(), store.locked():
        other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert other.stdout.readline().strip() == "ready"  # imports done, however loaded the machine is
        time.sleep(1.0)
        assert other.poll() is None  # still waiting for the lock
    out, _ = other.communicate(timeout=60)
    assert float(out) >= 0.9


def _append_many(folder, worker, count):
    store = EvolveStore(folder)
    for i in range(count):
        store.append(RESULTS, {**HYP, "lr0": worker + i / 100})


def test_concurrent_appends_lose_nothing(tmp_path):
    workers, count = 4, 15
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    text = (tmp_path / "evolve.csv").read_text()
    assert text.count("metrics/precision") == 1
    _, values = EvolveStore(tmp_path).read()
    assert len(values) == workers * count
    assert sorted(values[:, 7]) == pytest.approx(sorted(w + i / 100 for w in range(workers) for i in range(count)))


def test_claims_visible_and_released(tmp_path):
    store = EvolveStore(tmp_path)
    claim_id = store.claim(HYP)
    assert store.claims() == [HYP]
    store.release(claim_id)
    assert store.claims() == []
    store.close()


def test_append_drops_its_claim(tmp_path):
    store = EvolveStore(tmp_path)
    claim_id = store.claim(HYP)
    store.append(RESULTS, HYP, claim_id)
    assert store.claims() == []
    history = store.history(tuple(HYP))
    assert len(history) == 1 and history.hyp_dict(0) == HYP
    assert history.fitness == pytest.approx([0.1 * 0.6 + 0.9 * 0.3])


def test_print_mutation_keeps_yolov5s_call(tmp_path):
    from utils.general import print_mutation

    keys = tuple(f"  {k}" for k in METRIC_KEYS)  # YOLOv5 callers may pass padded names
    assert print_mutation(keys, RESULTS, HYP, tmp_path, "") == 0
    assert print_mutation(keys, RESULTS, HYP, tmp_path) == 1
    assert EvolveStore(tmp_path).row_count() == 2
    with pytest.raises(ValueError, match="bucket"):
        print_mutation(keys, RESULTS, HYP, tmp_path, "my-bucket")


# evolve_rungs.csv ----------------------------------------------------------------------------------------------------
def test_rung_rows_round_trip_with_yolov5s_number_format(tmp_path):
    store = EvolveStore(tmp_path)
    store.append_rung("host-12-abcdef01", 3, "pruned", RESULTS, HYP)
    lines = store.rungs_csv.read_text().splitlines()
    assert [k.strip() for k in lines[0].split(",")] == ["candidate", "epoch", "state", "fitness", *METRIC_KEYS, *HYP]
    assert lines[1].split(",")[1:4] == [f"{3:20d}", f"{'pruned':>20s}", f"{0.1 * 0.6 + 0.9 * 0.3:20.5g}"]
    (row,) = store.read_rungs(tuple(HYP))
    assert (row.candidate, row.epoch, row.state, row.metrics, row.hyp) == ("host-12-abcdef01", 3, "pruned",
                                                                          tuple(RESULTS), HYP)


def test_rung_file_torn_tail_dropped_and_bad_files_explained(tmp_path):
    store = EvolveStore(tmp_path)
    store.append_rung("a", 1, "promoted", RESULTS, HYP)
    with open(store.rungs_csv, "a") as f:
        f.write("b,   1,  pro")  # a writer killed mid-row
    assert len(store.read_rungs(tuple(HYP))) == 1
    store.append_rung("c", 1, "pruned", RESULTS, HYP)
    assert [r.candidate for r in store.read_rungs(tuple(HYP))] == ["a", "c"]
    with pytest.raises(ValueError, match="--noautoanchor"):
        store.read_rungs(("lr0",))
    with open(store.rungs_csv, "a") as f:
        f.write("d,1,pruned,x\n")
    with pytest.raises(ValueError, match="evolve_rungs.csv line 4 is malformed"):
        store.read_rungs(tuple(HYP))


def test_live_claims_are_keyed_by_their_token(tmp_path):
    store = EvolveStore(tmp_path)
    first, second = store.claim(HYP), store.claim({"lr0": 0.02})
    assert store.live_claims() == {first: HYP, second: {"lr0": 0.02}}
