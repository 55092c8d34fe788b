"""Arithmetic on metric curves, shared by the metrics and the figures drawn from them: smoothing, and the area under
a precision-recall curve."""

import numpy as np


def smooth(y, f=0.05):
    """Box filter of width ~2 * f * len(y) (odd), edges padded with the end values."""
    width = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def compute_ap(recall, precision):
    """AP of one recall/precision curve: 101-point interpolation (COCO) of the precision envelope.

    Returns (ap, envelope precision, recall), both curves with the sentinels (0, 1) and (1, 0) added.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope: non-increasing in recall
    x = np.linspace(0, 1, 101)
    return np.trapezoid(np.interp(x, mrec, mpre), x), mpre, mrec
