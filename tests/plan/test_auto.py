"""The auto search on synthetic memory/throughput landscapes: it must find the known best within its probe budget,
keep full precision when it fits and take lossy strategies only when nothing exact trains."""

from __future__ import annotations

import math

import pytest

from memfit import Stack
from memfit.core.protocol import EXACT, auto_traits
from memfit.plan.auto import DEFAULT_PROBE_BUDGET, auto_search, candidate_classes, enumerate_candidates, environment
from memfit.plan.planner import PlanResult, search_max
from memfit.plan.probe import Probe

# per strategy: (activation factor, static factor, speed factor); the base costs STATIC + b * PER_SAMPLE
EFFECTS = {"gc": (0.3, 1.0, 0.7), "chunked_ce": (0.75, 1.0, 1.05), "tiled_mlp": (0.85, 1.0, 0.9),
           "compile": (0.9, 1.0, 1.6), "adam8": (1.0, 0.8, 1.0), "quant8bit": (1.0, 0.55, 0.7),
           "quant4bit": (1.0, 0.35, 0.8)}
STATIC, PER_SAMPLE, SEQ = 10.0, 1.0, 512


def landscape(budget: float):
    def numbers(stack: Stack):
        act, static, speed = PER_SAMPLE, STATIC, 1000.0
        for s in stack:
            a, st, sp = EFFECTS.get(s.name, (1.0, 1.0, 1.0))
            act, static, speed = act * a, static * st, speed * sp
        return act, static, speed

    def probe_fn(stack):
        act, static, speed = numbers(stack)
        # throughput saturates at micro-batch 8, like a GPU at full occupancy
        return lambda b: Probe(b, static + b * act <= budget, static + b * act if static + b * act <= budget else None,
                               1.0, speed * SEQ * min(b, 8) / 8)

    calls: list[str] = []

    def measure(stack: Stack) -> PlanResult:
        calls.append(stack.spec)
        best, probes = search_max(probe_fn(stack), budget=budget, limit=4096)
        return PlanResult(stack.spec, SEQ, best, 1, best, probes=[p.__dict__ for p in probes])

    def predict(stack: Stack) -> int:  # the analytic model, exact here except for rounding
        act, static, _ = numbers(stack)
        return max(0, math.floor((budget * 1.1 - static) / act))

    return measure, predict, probe_fn, calls


def brute_force_best(budget: float, target: int, probe_fn):
    """Ground truth: every candidate measured at every size up to the target; lowest lossiness, then tokens/s."""
    cands = enumerate_candidates(Stack.from_spec("lora"), candidate_classes(environment(True)))
    scored = []
    for c in cands:
        p = probe_fn(c.stack)
        fits = [p(b) for b in range(1, target + 1) if p(b).fits]
        warm = [q for q in fits if q.micro_batch > 1] or fits
        if warm:
            scored.append((c.lossiness, -max(q.tokens_per_s for q in warm), c.stack.spec))
    return min(scored)


@pytest.mark.parametrize("budget", [14.0, 10.8, 6.0, 4.5])
def test_auto_finds_the_known_best_within_its_probe_budget(budget):
    measure, predict, probe_fn, calls = landscape(budget)
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=measure, predict=predict,
                      on_cuda=True, probe_budget=DEFAULT_PROBE_BUDGET, log=lambda _: None)
    level, neg_tps, spec = brute_force_best(budget, 16, probe_fn)
    assert res.winner_row is not None and res.winner_row.tokens_per_s == -neg_tps, (res.winner, spec)
    assert res.probe_count <= DEFAULT_PROBE_BUDGET + 12  # the last stack started inside the budget may finish its search
    assert res.winner_row.effective_batch >= 16 and res.why.startswith(res.winner)


def test_full_precision_wins_when_it_fits():
    measure, predict, _, calls = landscape(14.0)  # quantised weights would allow larger micro-batches...
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=measure, predict=predict,
                      on_cuda=True, log=lambda _: None)
    assert all(auto_traits(s)["lossiness"] == EXACT for s in Stack.from_spec(res.winner))
    assert not any("quant" in c or "adam8" in c for c in calls), "lossy stacks probed although exact ones fit"


def test_lossy_only_when_nothing_exact_trains():
    measure, predict, _, calls = landscape(6.0)  # 10 units of weights: only quantised weights leave room
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=measure, predict=predict,
                      on_cuda=True, log=lambda _: None)
    assert "quant" in res.winner
    assert "quant4bit" not in res.winner  # 8-bit weights fit (0.55 * 10 < 6), and 8-bit is less lossy than 4-bit
    assert any("micro-batch 1 does not fit" in p["reason"] for p in res.pruned)


def test_nothing_fits_is_a_clear_answer():
    measure, predict, _, _ = landscape(1.0)
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=measure, predict=predict,
                      on_cuda=True, log=lambda _: None)
    assert res.winner is None and "--seq-len" in res.why
    # the analytic model rules everything out; one real probe per lossiness level checks it before giving up
    assert len(res.frontier) == 4 and all(r.max_micro_batch == 0 for r in res.frontier)


def test_candidates_respect_declared_requirements():
    on_cpu = {c.name for c in candidate_classes(frozenset())}
    assert "compile" not in on_cpu and "quant4bit" not in on_cpu and "gc" in on_cpu
    assert "lora" not in on_cpu and "ga" not in on_cpu  # not memory/speed choices


def test_a_candidate_that_raises_is_recorded_and_the_search_goes_on():
    measure, predict, _, calls = landscape(14.0)

    def breaks_with_compile(stack: Stack) -> PlanResult:  # the H200 failure: an in-place error in compiled backward
        if "compile" in stack:
            calls.append(stack.spec)
            raise RuntimeError("one of the variables needed for gradient computation has been modified by an "
                               "inplace operation\nlong traceback text")
        return measure(stack)

    lines: list[str] = []
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=breaks_with_compile, predict=predict,
                      on_cuda=True, log=lines.append)
    failed = [r for r in res.frontier if r.error]
    assert failed and all("compile" in r.stack for r in failed)
    assert failed[0].error == ("RuntimeError: one of the variables needed for gradient computation has been "
                               "modified by an inplace operation")  # one line
    assert res.winner and "compile" not in res.winner  # the best stack that does train
    assert "failed with an error" in res.why and any("failed, skipped" in line for line in lines)

    from memfit.plan.report import format_frontier

    assert f"{failed[0].stack}: error: RuntimeError" in format_frontier(res)
