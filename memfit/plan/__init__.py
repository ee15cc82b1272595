"""Capacity planning: the analytic memory model, real-OOM probes, the exact search, reports and benchmarks."""


def __getattr__(name: str):
    # Lazy, so `memfit.plan.memory` (used by telemetry) does not pull in the model loader and probes.
    if name in ("plan", "PlanResult"):
        from . import planner

        return getattr(planner, name)
    raise AttributeError(f"module 'memfit.plan' has no attribute {name!r}")


__all__ = ["PlanResult", "plan"]
