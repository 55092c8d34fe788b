"""Hyperparameter evolution (--evolve): search methods over a shared, lock-protected evolve folder.

meta (what is searched, fitness), ga (genetic operators), methods / population (proposing candidates), store (the
folder's files), runner (the loop, many processes), ray_backend (--ray), plots (evolve.png).
"""
