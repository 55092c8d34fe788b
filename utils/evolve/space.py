"""The search space of the model-based methods (gp, tpe, cmaes): which hyps move, over which range, on which scale.

The space is the GA's reach read from the meta table. A key with a zero gain (or no limits) stays at its initial value.
A key whose initial value d is above 0 spans d/3 to 3d on a log scale, cut to its meta limits: the factors one
mutation can apply. A key whose initial value is 0 (mixup, copy_paste, degrees, shear, flipud in hyp.scratch-low) is one
the GA can never move, since it multiplies; here it spans the lower ZERO_DEFAULT_SPAN of its meta range on a linear
scale, so 0 stays reachable. Measured on yolov5n, COCO128, 1 epoch at 320 px, one key at a time, fitness gain over the
defaults paired on 4 seeds: degrees +0.007 at 2.25, +0.011 at 11.25, +0.004 at 22.5, -0.025 at 45; shear +0.005 at 2.5,
+0.011 at 5, +0.013 at 10; mixup -0.002 at 0.5, -0.006 at 1; flipud -0.005 at 0.5, -0.009 at 1; copy_paste does
nothing on box-only labels. Half the range keeps every gain seen (all but the last 0.002 of shear) and leaves out the
largest losses (degrees 45, mixup and flipud at 1).
`anchors` (anchors per level) is held fixed when training starts from weights: any count other than the checkpoint's
rebuilds the detection head from scratch: every row whose anchors rounded to another count than 3 scored 0.000 against
about 0.2 (6 of 20 rows of a mutation run, 10 of 20 of a gp run searching anchors in [2, 9]; yolov5n, COCO128, 1 epoch
at 320 px). From scratch (--weights '') it is searched like any other key. The GA methods (mutation, population) hold
it the same way, through held_meta: about 28% of mutation generations changed the anchor count.
"""

from dataclasses import dataclass

from utils.log import LOGGER, colorstr

REACH = 3.0  # a mutation multiplies a key by at most 3 and at least 1/3 (ga.FACTOR_LIMITS)
ZERO_DEFAULT_SPAN = 0.5  # fraction of the meta range searched for a key whose initial value is 0


@dataclass(frozen=True)
class Range:
    """Where one hyp is searched: low..high, on a log scale when `log`."""

    low: float
    high: float
    log: bool

    def clip(self, value):
        return min(max(float(value), self.low), self.high)


def fixed_by_training(opt):
    """Keys held fixed whatever their gain: `anchors` when training starts from weights (see the module's note)."""
    return ("anchors",) if str(getattr(opt, "weights", "") or "").strip() else ()


def held_meta(meta, opt):
    """(meta with gain 0 for the keys fixed_by_training holds, those keys), logging a one-line notice when it holds any.

    A gain of 0 is how the GA freezes a key, so mutation and population never move a held key.
    """
    held = tuple(k for k in fixed_by_training(opt) if k in meta)
    if held:
        LOGGER.info(f"{colorstr('evolve: ')}{', '.join(held)} held at the initial value while training from --weights "
                    "(another anchor count rebuilds the pretrained head); evolve from scratch (--weights '') to "
                    "search it")
    return {k: (0, *v[1:]) if k in held else v for k, v in meta.items()}, held


def search_space(initial, meta, zero_span=ZERO_DEFAULT_SPAN, fixed=()):
    """{key: Range} of the keys a model-based method searches, in hyp order; the other keys keep `initial`'s value.

    initial: the constrained initial hyps; meta: {key: (gain, low, high)} for exactly its keys; fixed: keys to hold.
    """
    if not 0 < zero_span <= 1:
        raise ValueError(f"zero_span must be in (0, 1], got {zero_span}")
    space = {}
    for key, value in initial.items():
        gain, low, high = meta[key]
        if not gain or low is None or high <= low or key in fixed:
            continue
        if value > 0:
            bounds, log = (max(low, value / REACH), min(high, value * REACH)), True
        else:
            bounds, log = (low, low + zero_span * (high - low)), False
        if bounds[1] > bounds[0]:
            space[key] = Range(float(bounds[0]), float(bounds[1]), log)
    return space


def describe_space(space, initial):
    """One line per searched key: its initial value and range, as the log shows at the start of a search."""
    return "\n".join(f"{key:>16s}: {initial[key]:<10.5g} searched in [{r.low:.5g}, {r.high:.5g}]"
                     f"{' (log)' if r.log else ''}" for key, r in space.items())
