"""The study engine: task subsets, incremental subset merging, sweeps into the results store,
hyperparameter selection on validation, and the fidelity diagnostics of the claims table."""
