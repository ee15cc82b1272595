"""The auto search on synthetic memory/throughput landscapes: it must find the known best within its probe budget,
keep full precision when it fits and take lossy strategies only when nothing exact trains."""

from __future__ import annotations

import math

import pytest

from memfit import Stack
from memfit.core.protocol import EXACT, auto_traits
from memfit.plan.auto import DEFAULT_PROBE_BUDGET, auto_search, candidate_classes, enumerate_candidates, environment
from memfit.plan.planner import PlanResult, search_max, training_size
from memfit.plan.probe import Probe, time_steps

# per strategy: (activation factor, static factor, speed factor); the base costs STATIC + b * PER_SAMPLE
EFFECTS = {"gc": (0.3, 1.0, 0.7), "chunked_ce": (0.75, 1.0, 1.05), "tiled_mlp": (0.85, 1.0, 0.9),
           "compile": (0.9, 1.0, 1.6), "adam8": (1.0, 0.8, 1.0), "quant8bit": (1.0, 0.55, 0.7),
           "quant4bit": (1.0, 0.35, 0.8)}
STATIC, PER_SAMPLE, SEQ = 10.0, 1.0, 512


COMPILE_FIRST_STEP = 20.0  # compiled stacks: the first step at a new shape is mostly compilation (the H200 frontier)


def landscape(budget: float, target: int = 16):
    def numbers(stack: Stack):
        act, static, speed = PER_SAMPLE, STATIC, 1000.0
        for s in stack:
            a, st, sp = EFFECTS.get(s.name, (1.0, 1.0, 1.0))
            act, static, speed = act * a, static * st, speed * sp
        return act, static, speed

    def probe_fn(stack):
        act, static, speed = numbers(stack)
        shapes: set[int] = set()

        def probe(b: int) -> Probe:
            fits = static + b * act <= budget
            slow = COMPILE_FIRST_STEP if "compile" in stack and b not in shapes else 1.0
            shapes.add(b)
            # throughput saturates at micro-batch 8, like a GPU at full occupancy
            return Probe(b, fits, static + b * act if fits else None, 1.0, speed * SEQ * min(b, 8) / 8 / slow)
        return probe

    calls: list[str] = []

    def measure(stack: Stack) -> PlanResult:  # as memfit.plan.choose's: the search, then timing the training size
        calls.append(stack.spec)
        probe = probe_fn(stack)
        best, probes = search_max(probe, budget=budget, limit=4096)
        micro, k = training_size(stack, best, 1, target)
        res = PlanResult(stack.spec, SEQ, best, k, micro * k, micro_batch=micro, probes=[p.__dict__ for p in probes])
        if micro:
            timing = time_steps(lambda: probe(micro), micro)
            res.timed_tokens_per_s, res.timing_steps = timing.tokens_per_s, timing.steps
        return res

    def predict(stack: Stack) -> int:  # the analytic model, exact here except for rounding
        act, static, _ = numbers(stack)
        return max(0, math.floor((budget * 1.1 - static) / act))

    return measure, predict, probe_fn, calls


def brute_force_best(budget: float, target: int, probe_fn):
    """Ground truth: every candidate's true max, its training size for the target, the steady speed there (the
    second step of that shape); lowest lossiness, then tokens/s."""
    cands = enumerate_candidates(Stack.from_spec("lora"), candidate_classes(environment(True)))
    scored = []
    for c in cands:
        p = probe_fn(c.stack)
        best = max((b for b in range(1, 200) if p(b).fits), default=0)
        micro, _ = training_size(c.stack, best, 1, target)
        if micro:
            p(micro)
            scored.append((c.lossiness, -p(micro).tokens_per_s, c.stack.spec))
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


def test_a_compiled_stack_with_slow_first_steps_wins_on_its_steady_speed():
    """Every new shape recompiles: a search probe of a compiled stack runs at 1/20 of its steady speed. The winner
    is ranked by the timed steps at its training size, which hit the compile caches."""
    measure, predict, probe_fn, _ = landscape(14.0)
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=measure, predict=predict,
                      on_cuda=True, log=lambda _: None)
    win = res.winner_row
    assert "compile" in res.winner and win.timing_steps == 5 and "steady over 5 steps" in res.why
    assert win.tokens_per_s == pytest.approx(1000.0 * SEQ * math.prod(  # steady, at micro-batch 16 >= 8
        EFFECTS[s.name][2] for s in Stack.from_spec(res.winner) if s.name in EFFECTS))
    # ranked by its search probes (all first steps of their shape) it would have lost to an uncompiled stack
    probed = max(p["tokens_per_s"] for p in measure(Stack.from_spec(res.winner)).probes if p["fits"])
    assert probed < max(r.tokens_per_s for r in res.frontier if "compile" not in r.stack and r.tokens_per_s)
    assert res.timing_steps == sum(r.timing_steps for r in res.frontier)
    assert res.probe_count == sum(r.probes for r in res.frontier)  # timing steps are not probes


@pytest.mark.parametrize("budget,max_micro,micro,accum", [(10.0 + 59.5 * 0.9 * 0.75 * 0.85, 59, 32, 2),
                                                          (10.0 + 157.5 * 0.9 * 0.75 * 0.85, 157, 64, 1)])
def test_the_training_size_reaches_the_target_without_overshooting(budget, max_micro, micro, accum):
    measure, _, _, _ = landscape(budget, target=64)
    c = next(c for c in enumerate_candidates(Stack.from_spec("lora"), candidate_classes(environment(True)))
             if c.added == {"compile", "chunked_ce", "tiled_mlp"})
    res = auto_search("lora", seq_len=SEQ, target_effective_batch=64, measure=lambda s: measure(c.stack),
                      predict=lambda s: 100 if s.spec == c.stack.spec else 0, on_cuda=True, log=lambda _: None)
    row = next(r for r in res.frontier if r.max_micro_batch)
    assert (row.max_micro_batch, row.micro_batch, row.grad_accum, row.effective_batch) == (max_micro, micro, accum, 64)


def test_the_probing_order_does_not_penalise_a_micro_batch_that_needs_accumulation():
    """The H200 sweep (seq 512, target 64): bf16+lora+compile at 32 x 2 ran 34.8k tok/s, faster than every stack
    fitting 64 x 1, yet the old order (share of the needed micro-batch / declared cost) never probed it."""
    from memfit.plan.auto import Candidate, prior_speed

    half = Candidate(Stack.from_spec("lora+compile"), frozenset({"compile"}), EXACT, 0.8, predicted_max=40)
    full = Candidate(Stack.from_spec("lora+cce+compile"), frozenset({"compile", "chunked_ce"}), EXACT, 0.85,
                     predicted_max=70)
    assert prior_speed(half, 512, 64, 1) > prior_speed(full, 512, 64, 1)  # 32 x 2 fills the device like 64 x 1
    tiny = Candidate(Stack.from_spec("lora"), frozenset(), EXACT, 0.8, predicted_max=1)
    assert prior_speed(tiny, 512, 64, 1) < prior_speed(half, 512, 64, 1)  # micro-batch 1 does not fill it
    assert prior_speed(Candidate(tiny.stack, frozenset(), EXACT, 0.8, predicted_max=0), 512, 64, 1) == 0.0


def test_a_search_stopped_at_the_target_shows_at_least_in_the_frontier():
    from memfit.plan.report import format_frontier

    measure, predict, _, _ = landscape(1000.0)  # everything fits far beyond the target of 16

    def limited(stack):
        res = measure(stack)
        res.max_micro_batch = min(res.max_micro_batch, 16)  # as choose's plan(limit=target) answers
        return res

    res = auto_search("lora", seq_len=SEQ, target_effective_batch=16, measure=limited, predict=predict,
                      on_cuda=True, search_limit=16, log=lambda _: None)
    assert all(r.searched_to == 16 for r in res.frontier if r.max_micro_batch)
    assert ">=16" in format_frontier(res)


def test_a_plan_searched_to_a_limit_is_cached_apart_from_a_full_one(tmp_path):
    from _models import tiny_model
    from memfit.plan.planner import plan
    from memfit.plan.probe import SimulatedMeter

    common = dict(seq_len=16, cache_dir=tmp_path, meter=SimulatedMeter(40e6), target_effective_batch=4)
    short = plan(tiny_model(), "none", limit=4, **common)
    full = plan(tiny_model(), "none", **common)
    assert short.max_micro_batch == 4 < full.max_micro_batch and not full.cache_hit
    assert short.cache_path != full.cache_path


def test_with_the_h200_predictions_the_sweeps_fastest_stacks_are_probed_first():
    """Predicted maxes and sweep speeds of benchmarks/results/h200-2026-12-02b (seq 512, target 64, 79.19 GiB): the
    old order probed cce+compile, tiled_mlp+cce+compile, gc+compile, gc+cce+compile, ... and ran out of time before
    the fastest (lora+compile 34.8k, tiled_mlp+liger 33.1k, liger 32.9k tok/s)."""
    from memfit.plan.auto import prior_speed

    predicted = {"compile": 40, "chunked_ce+compile": 60, "chunked_ce+compile+tiled_mlp": 82, "liger_kernels": 33,
                 "compile+tiled_mlp": 48, "liger_kernels+tiled_mlp": 44, "compile+gc": 98, "chunked_ce+compile+gc": 550,
                 "chunked_ce+tiled_mlp": 70, "gc+liger_kernels": 95, "": 33, "chunked_ce": 46}
    cands = [c for c in enumerate_candidates(Stack.from_spec("lora+bf16"), candidate_classes(frozenset({"cuda"})))
             if c.lossiness == EXACT]
    for c in cands:
        c.predicted_max = predicted.get("+".join(sorted(c.added)), 0)
    order = [c.stack.spec for c in sorted(cands, key=lambda c: (-prior_speed(c, 512, 64, 1), len(c.added)))]
    assert order[0] == "bf16+lora+compile"
    assert {"bf16+lora+liger", "bf16+lora+tiled_mlp+liger"} <= set(order[:6])
    assert order.index("bf16+lora+gc+compile") > 6  # 64 x 1 buys nothing over 32 x 2 once the device is full
