"""One training run's parts, which train.py's train() puts together.

options (train.py's options after parsing, --resume), setup (run folder, seeds, dataset description, model, data
loaders), loop (one epoch: EpochRunner and its EpochSettings, early stopping), epoch_end (validating, logging and
saving after an epoch), checkpoints (last.pt / best.pt, resuming from one).
"""
