"""Training on one machine: the step core every trainer uses, run folders and checkpoints, the single / DDP driver."""
