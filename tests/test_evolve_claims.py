"""Claims kept alive by heartbeats: stale after the grace period or when the owner died, never another's live one."""

import argparse
import json
import subprocess
import sys
import time

import pytest

from utils.evolve.claims import OWNERS_DIR, ClaimOwner
from utils.evolve.runner import run_evolution
from utils.evolve.store import CLAIMS_DIR, EvolveStore
from utils.files import ROOT

HYP = {"lr0": 0.01, "momentum": 0.937}


def claim_file(store):
    return next((store.folder / CLAIMS_DIR).glob("*.json"))


def rewrite(path, **changes):
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


@pytest.mark.parametrize("grace_s, heartbeat_s", [(300.0, 5.0), (30.0, 3.0), (0.6, 0.06)])
def test_heartbeat_is_a_tenth_of_the_grace_period_at_most_5_s(tmp_path, grace_s, heartbeat_s):
    assert ClaimOwner(tmp_path, EvolveStore(tmp_path).locked, grace_s).heartbeat_s == pytest.approx(heartbeat_s)


def test_grace_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--evolve-claim-grace"):
        EvolveStore(tmp_path, claim_grace_s=0)


def test_a_live_owner_keeps_its_claim_by_heartbeat(tmp_path):
    owner = EvolveStore(tmp_path, claim_grace_s=0.6)
    other = EvolveStore(tmp_path, claim_grace_s=0.6)
    owner.claim(HYP)
    first = json.loads(claim_file(owner).read_text())["heartbeat"]
    time.sleep(1.0)  # longer than the grace period: only the heartbeats keep it
    assert other.claims() == [HYP]
    assert json.loads(claim_file(owner).read_text())["heartbeat"] > first
    owner.close()


def test_a_claim_whose_heartbeat_stopped_is_stale_after_the_grace_period(tmp_path):
    """A hung host: its owner lock still held (as NFS may keep it), but no heartbeat."""
    owner = EvolveStore(tmp_path, claim_grace_s=0.5)
    owner.claim(HYP)
    owner.owner._stop.set()  # the heartbeat thread ends; the lock stays held
    other = EvolveStore(tmp_path, claim_grace_s=0.5)
    assert other.claims() == [HYP]  # within the grace period
    time.sleep(0.7)
    assert other.claims() == [] and not list((tmp_path / CLAIMS_DIR).glob("*.json"))


def test_same_host_name_and_pid_never_delete_each_others_live_claims(tmp_path):
    """Two containers with one host name and separate pid namespaces: the recorded pid means nothing to the other."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    first, second = EvolveStore(tmp_path), EvolveStore(tmp_path)
    first.claim(HYP)
    second.claim({"lr0": 0.02, "momentum": 0.9})
    for path in (tmp_path / CLAIMS_DIR).glob("*.json"):
        rewrite(path, host="same-name", pid=int(dead.stdout))  # a pid that does not exist in this namespace
    assert len(first.claims()) == len(second.claims()) == 2
    first.close()
    second.close()


def test_a_dead_owners_claim_is_stale_at_once(tmp_path):
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from utils.evolve.store import EvolveStore; "
            "EvolveStore(sys.argv[2]).claim({'lr0': 0.5}); os._exit(0)")  # dies holding the claim
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path)], check=True)
    assert len(list((tmp_path / CLAIMS_DIR).glob("*.json"))) == 1
    assert EvolveStore(tmp_path).claims() == []
    assert not list((tmp_path / OWNERS_DIR).glob("*.lock"))


def test_an_old_claim_without_token_expires_by_its_time(tmp_path):
    store = EvolveStore(tmp_path, claim_grace_s=60)
    (tmp_path / CLAIMS_DIR).mkdir()
    path = tmp_path / CLAIMS_DIR / "host-1-abcd.json"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": time.time(), "item": HYP}))
    assert store.claims() == [HYP]
    rewrite(path, time=time.time() - 61)
    assert store.claims() == []


def fake_train(hyp, opt, device, callbacks=None, cache=None):
    return 0.6, 0.5, 0.4 + hyp["lr0"], 0.3 + hyp["lr0"], 0.05, 0.03, 0.01


def test_evolution_takes_over_a_lost_hosts_claim_and_reaches_n(tmp_path):
    """N-1 rows and one claim left by a host that died (no lock file here, heartbeat stopped): taken over, not stuck."""
    opt = argparse.Namespace(evolve=3, hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), project=str(tmp_path),
                             name="exp", noautoanchor=False, seed=0, evolve_method="mutation", noval=False,
                             nosave=False, save_dir="", evolve_claim_grace=1.5 / 60)
    assert run_evolution(opt, "cpu", fake_train) == 3
    folder = tmp_path / "exp"
    lines = (folder / "evolve.csv").read_text().splitlines()
    (folder / "evolve.csv").write_text("\n".join(lines[:-1]) + "\n")  # the third generation never finished...
    (folder / CLAIMS_DIR).mkdir(exist_ok=True)
    lost = {"token": "f" * 32, "host": "dead-host", "pid": 7, "time": time.time(), "heartbeat": time.time(),
            "item": {"lr0": 0.02}}
    (folder / CLAIMS_DIR / f"{'f' * 32}-00000000.json").write_text(json.dumps(lost))  # ...its host died with it
    start = time.time()
    assert run_evolution(opt, "cpu", fake_train, poll_s=0.2) == 1
    assert time.time() - start >= 1.0  # it waited for the grace period, then took the slot over
    assert len((folder / "evolve.csv").read_text().splitlines()) == 4  # header + N rows, none twice
    assert not list((folder / CLAIMS_DIR).glob("*.json"))
