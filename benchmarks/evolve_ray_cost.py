"""Seconds per --evolve candidate under --ray against the local loop, both through train.py's CLI on this machine.

The local loop trains one candidate after another in one process; --ray starts a local Ray (one task per CPU, or per
GPU) whose workers train candidates side by side and keep their datasets between candidates. Each row is the command's
whole wall time (start-up, Ray's included) divided by the candidates it trained.

    python benchmarks/evolve_ray_cost.py --imgsz 320 --epochs 1 --candidates 8
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evolve_runs import add_training_arguments, timed_run, train_command  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per candidate")
    parser.add_argument("--candidates", type=int, default=8, help="candidates per evolution (--evolve N)")
    parser.add_argument("--project", default="", help="where the evolve folders go (default: a temporary folder)")
    args = parser.parse_args()
    project = Path(args.project or tempfile.mkdtemp(prefix="evolve_ray_cost_"))
    rows = []
    for name, extra in (("local loop", []), ("--ray", ["--ray"])):
        command = train_command(args, "--epochs", args.epochs, "--evolve", args.candidates, "--noautoanchor",
                                "--cache", "ram", "--project", project, "--name", name.strip("-").replace(" ", "_"),
                                *extra)
        seconds = timed_run(command, project / "log.txt")
        rows.append((name, seconds))
        print(f"{name}: {seconds:.1f} s for {args.candidates} candidates", flush=True)
    print(f"\n{args.candidates} candidates of {args.epochs} epoch(s), {Path(args.weights).name} on "
          f"{Path(args.data).name} at {args.imgsz} px, batch {args.batch_size}")
    print(f"{'':>12} {'wall s':>8} {'s/candidate':>12}")
    for name, seconds in rows:
        print(f"{name:>12} {seconds:8.1f} {seconds / args.candidates:12.2f}")


if __name__ == "__main__":
    main()
