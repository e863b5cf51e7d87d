"""Training: the loop (`training.train`), the global LR schedule, balancers, checkpoints and DDP helpers."""
