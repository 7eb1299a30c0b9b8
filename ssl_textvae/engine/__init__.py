"""The training machinery: the one training loop, its tasks (pretraining, fine-tuning),
checkpoints, divergence diagnostics, metrics, one-process and torch.distributed runs. Torch only."""
