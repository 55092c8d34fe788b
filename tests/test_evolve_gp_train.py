"""One real end-to-end run: train.py --evolve-method gp --evolve-verify on 8 COCO128 images, yolov5n at 128 px."""


import numpy as np
import pytest
import yaml
from test_evolve_runner import run_train_py

from utils.evolve.meta import fitness
from utils.evolve.store import EvolveStore


@pytest.mark.slow
def test_gp_evolution_verified_end_to_end(tmp_path, tiny_coco128):
    pytest.importorskip("optuna")
    data, weights = tiny_coco128
    done = run_train_py(data, weights, "--img", 128, "--epochs", 1, "--evolve", 5, "--evolve-method", "gp",
                        "--evolve-verify", 1, "--seed", 0, "--project", tmp_path / "runs", "--name", "gp")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "runs/gp"
    store = EvolveStore(folder)
    keys, values = store.read()
    assert values.shape[0] == 5 and keys[:2] == ("metrics/precision", "metrics/recall")
    assert np.all((values[:, :4] >= 0) & (values[:, :4] <= 1))
    verified = store.read_verify()
    rows = verified[verified[:, 1] == 1, 0].astype(int).tolist()
    assert len(rows) == len(set(rows)) == 4 and rows[0] == 0  # the initial hyps (row 0) and the best 3 rows
    reported = verified[verified[:, 1] == 2, 0].astype(int).tolist()
    assert reported in ([], [0, rows[1]], [0, rows[2]], [0, rows[3]])  # the pick and the initial hyps, if needed
    assert set(verified[:, 1]) <= {1, 2} and set(verified[:, 2]) == {1}  # --seed 0 searched, 1 picks, 2 reports
    text = (folder / "hyp_evolved.yaml").read_text()
    assert "Verified for 1 epochs" in text.splitlines()[3] and set(yaml.safe_load(text)) == set(keys[7:])
    assert (folder / "evolve.png").exists()
    assert "gain vs initial" in done.stdout
    assert (folder / "evolve_importance.png").exists() == bool(np.ptp(fitness(values[:, :7])))
