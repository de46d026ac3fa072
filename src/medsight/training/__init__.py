"""Training: a short loop plus small pieces (checkpoints, early stopping, metric log)."""
