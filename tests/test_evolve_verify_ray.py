"""--ray with --evolve-verify: verification jobs run as Ray tasks too, the driver alone records them."""

import argparse

from test_evolve_ray import make_fake_train
from test_evolve_verify import expected_jobs

from utils.evolve.runner import run_evolution
from utils.evolve.store import EvolveStore
from utils.files import ROOT


def test_ray_evolves_then_verifies_on_two_workers(tmp_path, local_ray):
    opt = argparse.Namespace(evolve=4, hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), project=str(tmp_path),
                             name="exp", noautoanchor=False, seed=0, evolve_method="mutation", ray=True,
                             ray_address=None, evolve_verify=2, epochs=1)
    assert run_evolution(opt, "cpu", make_fake_train(), poll_s=0.2) == 4
    store = EvolveStore(tmp_path / "exp")
    jobs = [(int(r), int(s)) for r, s in store.read_verify()[:, :2]]
    assert len(jobs) == len(set(jobs)) == expected_jobs(tmp_path / "exp", 2)
    assert {s for _, s in jobs} <= {1, 2, 3, 4} and {1, 2} <= {s for _, s in jobs}
    assert "Verified for 1 epochs: " in store.yaml.read_text()
    assert not list((tmp_path / "exp" / ".evolve_verify_claims").glob("*.json"))
