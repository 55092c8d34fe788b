"""One training run's parts, which train.py's train() puts together.

options (train.py's options after parsing, --resume), setup (run folder, seeds, model, data loaders), loop (one
epoch: EpochRunner and its EpochSettings, early stopping), checkpoints (last.pt / best.pt, resuming from one).
"""
