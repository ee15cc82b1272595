"""The learning-rate schedule of a run, and how it continues when a resumed run is extended.

Schedule over `total` optimizer steps: warm-up for `warmup * total` steps (a fraction < 1) or `warmup` steps (>= 1),
linear from 0 to the peak `lr`; then `cosine` or `linear` decay to 0 at step `total`, or `constant`. Step s (1-based)
trains at lr(s - 1): the scheduler is stepped after each optimizer step.

Extension: a finished (or interrupted) run resumed with a larger `max_steps` or `epochs` continues on the schedule
defined over the NEW total, exactly as if the run had been planned that long from the start: step s trains at the lr
the new schedule gives step s. Warm-up is the fraction (or count) of the new total; when the resume point is already
past it there is no second warm-up, and the decay runs from the new schedule's value at the resume point down to 0 at
the new last step. The steps already trained keep the lr they were trained at (they are not re-run). Without this the
restored optimizer still held the old schedule's final lr (0 for cosine/linear), and the first new step did not move
the weights.
"""

from __future__ import annotations


def lr_scheduler(name: str, optimizer, warmup: float, total: int):
    from transformers import get_scheduler

    warm = int(round(warmup * total)) if warmup < 1 else int(warmup)
    return get_scheduler(name, optimizer, num_warmup_steps=min(warm, total), num_training_steps=total)


def continue_schedule(scheduler) -> list[float]:
    """After a resume: set the optimizer's learning rates to what this run's schedule (built over its own total) gives
    the restored step, instead of the restored optimizer's. Returns the rates. Identity for a resume of the same
    length (the restored rate already is that value)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    rates = [base * fn(inner.last_epoch) for base, fn in zip(inner.base_lrs, inner.lr_lambdas)]
    for group, rate in zip(inner.optimizer.param_groups, rates):
        group["lr"] = rate
    return rates
