"""Callbacks, one concern per module: stop (signals, exact-resume stops and their record),
history (history.csv), figures (TensorBoard pictures), hydra (Hydra run and multirun hooks),
averaging (EMA and SWA of the weights, BatchNorm statistics recomputed), cadence (the last epoch
is always validated)."""
