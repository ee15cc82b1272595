"""The hand-written accelerate training loop (named `training` because `memfit.train` is the public train function): loop, OOM back-off, checkpoints, telemetry."""
