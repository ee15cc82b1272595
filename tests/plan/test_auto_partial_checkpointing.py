"""`stack: auto` with 4-bit weights pinned (base lora+q4): the search also tries checkpointing part of the layers, and
on a synthetic landscape where full checkpointing fits the target but recomputes more than it needs to, it finds the
partial stack an exhaustive search finds (the landscape style of tests/plan/test_auto.py)."""

from __future__ import annotations

import math

from memfit import Stack
from memfit.plan.auto import (DEFAULT_PROBE_BUDGET, auto_search, candidate_classes, enumerate_candidates, environment,
                              with_partial_checkpointing)
from memfit.plan.planner import PlanResult, search_max, training_size
from memfit.plan.probe import Probe, time_steps

N_LAYERS, SEQ, TARGET = 28, 512, 16
# per strategy: (activation factor, static factor, speed factor); checkpointing scales with its share of the layers
EFFECTS = {"chunked_ce": (0.75, 1.0, 1.05), "tiled_mlp": (0.85, 1.0, 0.9), "compile": (0.9, 1.0, 1.6),
           "adam8": (1.0, 0.8, 1.0), "quant4bit": (1.0, 0.35, 0.8), "quant4bit_fused": (1.0, 1.0, 1.1)}
STATIC = 10.0


def numbers(stack: Stack) -> tuple[float, float, float]:
    act, static, speed = 1.0, STATIC, 1000.0
    for s in stack:
        if s.name == "gc":
            share = (s.layers if s.layers is not None else N_LAYERS) / N_LAYERS
            a, st, sp = 1 - 0.7 * share, 1.0, 1 - 0.3 * share
        else:
            a, st, sp = EFFECTS.get(s.name, (1.0, 1.0, 1.0))
        act, static, speed = act * a, static * st, speed * sp
    return act, static, speed


def probe_fn(stack: Stack, budget: float):
    act, static, speed = numbers(stack)
    # throughput saturates at micro-batch 16 here: fitting the target in one micro-step is what checkpointing buys
    return lambda b: Probe(b, static + b * act <= budget, static + b * act, 1.0, speed * SEQ * min(b, 16) / 16)


def landscape(budget: float):
    calls: list[str] = []

    def measure(stack: Stack) -> PlanResult:  # the search, then the steady speed at the training size
        calls.append(stack.spec)
        probe = probe_fn(stack, budget)
        best, probes = search_max(probe, budget=budget, limit=4096)
        micro, k = training_size(stack, best, 1, TARGET)
        timing = time_steps(lambda: probe(micro), micro) if micro else None
        return PlanResult(stack.spec, SEQ, best, k, micro * k, micro_batch=micro, probes=[p.__dict__ for p in probes],
                          timed_tokens_per_s=timing.tokens_per_s if timing else None,
                          timing_steps=timing.steps if timing else 0)

    def predict(stack: Stack) -> int:
        act, static, _ = numbers(stack)
        return max(0, math.floor((budget * 1.1 - static) / act))

    return measure, predict, calls


def candidates(base: str):
    b = Stack.from_spec(base)
    return with_partial_checkpointing(b, enumerate_candidates(b, candidate_classes(environment(True))), N_LAYERS)


def test_partial_checkpointing_is_offered_only_when_4bit_is_pinned():
    pinned = {c.stack.spec for c in candidates("lora+q4")}
    assert {f"quant4bit+lora+gc{k}" for k in ("", ":layers=7", ":layers=14", ":layers=21")} <= pinned
    assert not any(s.get("gc") is not None and s.get("gc").layers for s in (c.stack for c in candidates("lora")))
    half = next(c for c in candidates("lora+q4") if c.stack.spec == "quant4bit+lora+gc:layers=14")
    full = next(c for c in candidates("lora+q4") if c.stack.spec == "quant4bit+lora+gc")
    assert half.prior_cost < full.prior_cost  # half the recompute declared


def test_auto_with_q4_pinned_finds_the_partial_checkpointing_an_exhaustive_search_finds():
    budget = 9.5  # without checkpointing nothing fits 16; all layers checkpointed fits, but so does half of them
    measure, predict, calls = landscape(budget)
    res = auto_search("lora+q4", seq_len=SEQ, target_effective_batch=TARGET, measure=measure, predict=predict,
                      on_cuda=True, n_layers=N_LAYERS, log=lambda _: None)
    truth = []
    for c in candidates("lora+q4"):
        probe = probe_fn(c.stack, budget)
        best = max((b for b in range(1, 200) if probe(b).fits), default=0)
        micro, _ = training_size(c.stack, best, 1, TARGET)
        if micro:
            truth.append((probe(micro).tokens_per_s, c.stack.spec))
    speed, spec = max(truth)
    assert res.winner_row is not None and res.winner_row.tokens_per_s == speed, (res.winner, spec)
    gc = Stack.from_spec(res.winner).get("gc")
    assert gc is not None and 0 < gc.layers < N_LAYERS  # partial, not every layer
    assert res.probe_count <= DEFAULT_PROBE_BUDGET + 12
    assert "quant4bit" in res.winner
