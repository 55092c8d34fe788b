"""Sampling by class: YOLOv5's class weights and the per-image weights that --image-weights draws epochs with."""

import random

import numpy as np
import torch


def labels_to_class_weights(labels, nc=80):
    """Inverse class frequency over a dataset's labels, normalised to sum 1 (a class with no label counts as 1)."""
    if not len(labels) or labels[0] is None:
        return torch.Tensor()
    classes = np.concatenate(labels, 0)[:, 0].astype(int)
    counts = np.bincount(classes, minlength=nc).astype(float)
    counts[counts == 0] = 1
    weights = 1 / counts
    return torch.from_numpy(weights / weights.sum()).float()


def labels_to_image_weights(labels, nc=80, class_weights=None):
    """Per-image sampling weight: the sum of its labels' class weights (--image-weights)."""
    class_weights = np.ones(nc) if class_weights is None else np.asarray(class_weights)
    counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc) for x in labels])
    return (class_weights.reshape(1, nc) * counts).sum(1)



def resample_image_weights(dataset, class_weights, maps, nc):
    """--image-weights: redraw the epoch's image indices, favouring images of classes with low mAP."""
    weights = class_weights.cpu().numpy() * (1 - maps) ** 2 / nc
    image_weights = labels_to_image_weights(dataset.labels, nc=nc, class_weights=weights)
    dataset.indices = random.choices(range(dataset.n), weights=image_weights, k=dataset.n)
