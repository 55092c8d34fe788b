"""Hyperparameter evolution (--evolve): search methods over a shared, lock-protected evolve folder.

meta (what is searched, fitness), ga (genetic operators), methods / population (the GAs), space / optuna_method (the
model-based methods gp, tpe, cmaes), store (the folder's files), runner (the loop, many processes), jobs (what the loops
share with their job sources), prune / rungs (--evolve-prune), verify (--evolve-verify), ray_backend (--ray), plots
(evolve.png), importance (evolve_importance.png).
"""
