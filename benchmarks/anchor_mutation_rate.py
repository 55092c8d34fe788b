"""How often YOLOv5's mutation changes the anchor count when `anchors` is not held: the share of children of the initial
hyps whose round(anchors) (what the model builds with) differs from the parent's 3.

Training from --weights, such a child rebuilds the pretrained detection head from scratch and scores about 0, which is
why mutation and population hold `anchors` fixed from --weights. No training: the GA's own mutate() drawn many times.

    python benchmarks/anchor_mutation_rate.py --draws 100000
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.evolve.ga import mutate  # noqa: E402
from utils.evolve.meta import evolution_space  # noqa: E402
from utils.hyp import load_hyp  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"))
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hyp, meta = evolution_space(load_hyp(args.hyp))
    rng = np.random.default_rng(args.seed)
    counts = np.array([round(mutate(hyp, meta, rng)["anchors"]) for _ in range(args.draws)])
    changed = counts != round(hyp["anchors"])
    print(f"{Path(args.hyp).name}: {changed.mean():.1%} of {args.draws} mutated children change the anchor count "
          f"from {round(hyp['anchors'])} (to {', '.join(f'{c}: {(counts == c).mean():.1%}' for c in np.unique(counts))})")


if __name__ == "__main__":
    main()
