"""The capacity search against a simulated memory limit: exact, cheap, leak-free, cached, agreed across ranks."""

from __future__ import annotations

import json

import pytest
import torch

from memfit import Stack
from memfit.plan.planner import plan, retry_boundary, search_max
from memfit.plan.probe import Probe, SimulatedMeter, run_probe
from _models import tiny_model

SEQ, BUDGET = 64, 3.0e6


def _linear_probe(boundary: int, static: float = 1e9, per_sample: float = 1e7):
    def probe(b: int) -> Probe:
        fits = b <= boundary
        return Probe(b, fits, static + b * per_sample if fits else None)
    return probe


@pytest.mark.parametrize("boundary", [0, 1, 2, 3, 17, 64, 65, 399, 800, 1023])
@pytest.mark.parametrize("predicted", [None, 1, 50, 800, 5000])
def test_search_is_exact_for_any_boundary_and_any_prediction(boundary, predicted):
    budget = 1e9 + boundary * 1e7 + 5e6  # the boundary sits half a sample below the budget
    best, probes = search_max(_linear_probe(boundary), predicted=predicted, budget=budget, limit=4096)
    assert best == boundary
    fits = {p.micro_batch: p.fits for p in probes}
    assert boundary == 0 or fits[boundary] is True
    assert fits.get(boundary + 1, False) is False or boundary + 1 > 4096


def test_search_is_exact_without_memory_readings():
    """Even with no peaks to interpolate (only fits / OOM), geometric growth + bisection lands exactly."""
    for boundary in (5, 100, 777):
        probe = lambda b, t=boundary: Probe(b, b <= t)  # noqa: E731
        assert search_max(probe, limit=4096)[0] == boundary


@pytest.mark.parametrize("limit", [1, 2, 33, 63, 64, 100])
@pytest.mark.parametrize("predicted", [None, 5, 50, 5000])
def test_search_never_probes_or_reports_past_its_limit(limit, predicted):
    """Everything fits (the position limit of a model, or --max-micro-batch, binds before memory): the answer is the
    limit itself, never more; the doubling once reported 2x a fitting size past it (a 64-position model planned 69)."""
    best, probes = search_max(lambda b: Probe(b, True, 1e6 + b), predicted=predicted, budget=1e12, limit=limit)
    assert best == limit and max(p.micro_batch for p in probes) <= limit


def test_search_uses_few_probes_when_memory_is_linear():
    from memfit.plan.planner import ALLOCATOR_SLACK

    # the allocator's real limit sits ~1% under the budget (measured on an H100: see benchmarks/results)
    budget = (1e9 + 800.5e7) / (1 - ALLOCATOR_SLACK)
    best, probes = search_max(_linear_probe(800), predicted=700, budget=budget, limit=8192)
    assert best == 800 and len(probes) <= 5
    best, probes = search_max(_linear_probe(800), predicted=1200, budget=budget * 1.01, limit=8192)
    assert best == 800 and len(probes) <= 8


def _model(spec="lora:dropout=0+gc"):
    stack = Stack.from_spec(spec)
    return stack, stack.apply_model(tiny_model(), stack.context("cpu"))


def _exact_by_brute_force(stack, model, around: int) -> int:
    """Each size probed from scratch (fresh meter, optimizer state allocated first): the ground truth."""
    opt = stack.make_optimizer(model, stack.context("cpu"), lr=0.0)
    best = 0
    for b in range(max(1, around - 3), around + 4):
        meter = SimulatedMeter(BUDGET)
        run_probe(model, opt, stack, stack.context("cpu"), meter, 1, SEQ)
        if run_probe(model, opt, stack, stack.context("cpu"), SimulatedMeter(BUDGET), b, SEQ).fits:
            best = b
    return best


def test_planner_finds_the_exact_boundary_of_real_steps(tmp_path):
    stack, model = _model()
    res = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert res.max_micro_batch == _exact_by_brute_force(stack, model, res.max_micro_batch)
    sizes = {p["micro_batch"]: p["fits"] for p in res.probes}
    assert sizes[res.max_micro_batch] and sizes[res.max_micro_batch + 1] is False
    assert res.probe_count <= 12 and res.peak_gib is not None


def test_planning_does_not_change_the_weights(tmp_path):
    stack, model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_a_leaking_probe_would_change_the_answer(tmp_path, monkeypatch):
    """Guards the exactness test: if probes leaked their graphs, the planner would report less."""
    stack, model = _model()
    clean = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path / "a").max_micro_batch
    leaked = []
    original = stack.compute_loss

    def leaky(model, batch, ctx):
        nll, n = original(model, batch, ctx)
        act = torch.ones(batch["input_ids"].numel() * 64, requires_grad=True)
        leaked.append(act)  # an activation saved for backward that outlives the probe, as a sloppy cleanup would
        return nll + 0.0 * (act * act).sum(), n

    monkeypatch.setattr(stack, "compute_loss", leaky)
    dirty = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path / "b").max_micro_batch
    assert dirty < clean


def test_margin_accumulation_and_effective_batch(tmp_path):
    stack, model = _model("lora:dropout=0+gc+ga:effective_batch=100")
    res = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    b = res.max_micro_batch
    assert res.grad_accum == -(-100 // b) and res.effective_batch == b * res.grad_accum >= 100
    smaller = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET * 0.8), cache_dir=tmp_path)
    assert smaller.max_micro_batch < b


def test_results_are_cached_and_fresh_reprobes(tmp_path):
    stack, model = _model()
    first = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    again = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert again.cache_hit and not first.cache_hit and again.max_micro_batch == first.max_micro_batch
    assert not plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path, fresh=True).cache_hit
    other_seq = plan(model, stack, seq_len=32, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert not other_seq.cache_hit and other_seq.max_micro_batch > first.max_micro_batch
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert {"max_micro_batch", "grad_accum", "effective_batch", "probes", "versions", "device"} <= saved.keys()


def test_cpu_without_a_simulated_meter_is_a_clear_error(tmp_path):
    stack, model = _model()
    with pytest.raises(ValueError, match="SimulatedMeter"):
        plan(model, stack, seq_len=SEQ, cache_dir=tmp_path)


@pytest.mark.slow
def test_two_ranks_agree_on_the_smaller_device(tmp_path):
    from _multiproc import launch_two_cpu_processes
    from _planner_worker import plan_on_each_rank

    launch_two_cpu_processes(plan_on_each_rank, (str(tmp_path),), tmp_path / "rendezvous")
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["max_micro_batch"] == r1["max_micro_batch"] > 0
    assert r0["num_processes"] == 2 and r0["effective_batch"] == r0["micro_batch"] * r0["grad_accum"] * 2 == 64
    assert r0["micro_batch"] <= r0["max_micro_batch"]
    stack, model = _model()
    alone = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(2.2e6), cache_dir=tmp_path / "solo")
    assert r0["max_micro_batch"] == alone.max_micro_batch  # the smaller rank's answer


def test_boundary_that_failed_after_other_ooms_is_probed_again():
    asked = []

    def clean_probe(b: int) -> Probe:  # from a clean allocator, sizes up to 10 fit
        asked.append(b)
        return Probe(b, b <= 10)

    # 10 failed right after OOMs at 12 and 11: fragmentation may have lied
    seen = [Probe(1, True), Probe(12, False), Probe(11, False), Probe(10, False), Probe(9, True)]
    assert retry_boundary(clean_probe, seen, 9, limit=100) == 10
    assert asked == [10, 11]  # 10 fits again; 11, also failed after an OOM, gets its one retry and fails

    asked.clear()  # a boundary whose OOM was the process's first is trusted: no extra probe
    assert retry_boundary(clean_probe, [Probe(1, True), Probe(10, True), Probe(11, False)], 10, limit=100) == 10
    assert asked == []


@pytest.mark.parametrize("max_micro,world,target,expected", [
    (59, 1, 64, (32, 2)), (157, 1, 64, (64, 1)), (64, 1, 64, (64, 1)), (10, 3, 100, (9, 4)), (1, 1, 7, (1, 7)),
    (0, 1, 64, (0, 0))])
def test_training_size_reaches_the_target_in_the_fewest_steps_without_overshooting(max_micro, world, target,
                                                                                 expected):
    from memfit.core.protocol import steps_to_reach
    from memfit.plan.planner import training_size

    micro, k = training_size(Stack.from_spec("lora"), max_micro, world, target)
    assert (micro, k) == expected
    if micro:  # a target-based 'ga' at that micro-batch takes the same steps: what the loop will run
        assert micro <= max_micro and steps_to_reach(target, micro, world) == k


def test_training_size_without_a_target_is_the_max_and_the_stacks_own_accumulation():
    from memfit.plan.planner import training_size

    assert training_size(Stack.from_spec("lora+ga4"), 59, 1, None) == (59, 4)


def test_plan_results_cached_before_micro_batch_existed_train_at_their_max():
    from memfit.plan.planner import PlanResult

    old = {"stack": "lora", "seq_len": 64, "max_micro_batch": 12, "grad_accum": 1, "effective_batch": 12,
           "probe_count": 5, "no_longer_a_field": 1}
    assert PlanResult.from_dict(old).micro_batch == 12
    # the loop's OOM back-off lowers a cached max below the chosen size: the lower one is trained at
    assert PlanResult.from_dict({**old, "micro_batch": 32, "max_micro_batch": 16}).micro_batch == 16


def test_plan_with_a_target_trains_at_the_smallest_size_reaching_it(tmp_path):
    stack, model = _model()
    res = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), target_effective_batch=4, limit=3,
               cache_dir=tmp_path)
    assert res.max_micro_batch == 3  # the limit: 3 x 2 = 6 would overshoot the target
    assert (res.micro_batch, res.grad_accum, res.effective_batch) == (2, 2, 4)
