"""The planner chooses the stack: the fastest measured configuration for a target effective batch, exact first.

Candidates are the base stack (the user's fine-tune method and dtype, e.g. ``lora+bf16``) plus every combination of
the registered strategies (plugins included) that declare themselves auto candidates and whose requirements this
machine meets. The search walks lossiness levels in order (exact, 8-bit moments, 8-bit weights, 4-bit weights) and
stops after the first level where something trains: a lossy strategy is only used when no exact stack fits.
Within a level the analytic model prunes what cannot fit micro-batch 1 and stacks that only add slowing strategies
to one already predicted to fit the micro-batch the target needs; survivors are probed (real steps, real OOMs) in
order of their declared speed cost until the probe budget is spent. The winner is the level's highest *measured*
tokens/s at the size the run would train at (the target effective batch in the fewest accumulation steps), timed
over warm-up and repeated steps of that one shape, not from a search probe (which is mostly compilation for
compiled stacks).
When the base pins 4-bit weights (e.g. ``lora+q4+bf16``: the model only fits in 4 bits), every candidate is 4-bit and
checkpointing is often what buys the micro-batch; candidates that add it also come with only part of the layers
checkpointed (``gc`` with `layers` = a quarter, half, three quarters of the model's), so the search can stop
recomputing layers the target does not need recomputed.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from ..core.protocol import (EXACT, LOSSINESS_NAMES, LOSSY_WEIGHTS_4BIT, StackError, auto_traits,
                             bitsandbytes_available, declared)
from ..core.registry import available
from ..core.stack import Stack
from .planner import PlanResult, training_size

PRUNE_TOLERANCE = 0.10  # the analytic model may be this far off: prune only what misses the budget by more
MAX_ADDED = 4  # strategies added to the base per candidate (more never helped on the H100 runs)
DEFAULT_PROBE_BUDGET = 60  # probes over all stacks: ~8 stacks at 5-8 probes each
# Tokens per micro-step at which a step is half-way to full device occupancy, for the probing order only. The H200
# exhaustive sweep (seq 512, target 64) ran bf16+lora+compile at 32 x 2 at 34.8k tok/s, faster than every stack that
# fits 64 x 1: a micro-batch short of the target costs accumulation steps, not throughput, once it fills the device.
# The old order (predicted share of the needed micro-batch / declared cost) left that stack unprobed.
SATURATION_TOKENS = 2048
# Partial checkpointing variants (fractions of the decoder layers) offered when the base pins 4-bit weights
PARTIAL_CHECKPOINTING = (0.25, 0.5, 0.75)


@dataclass
class Candidate:
    stack: Stack
    added: frozenset[str]  # the strategy names added to the base
    lossiness: int
    prior_cost: float  # product of the declared speed costs: the probing order, never the answer
    predicted_max: int = 0


@dataclass
class FrontierRow:
    stack: str
    lossiness: str
    max_micro_batch: int
    micro_batch: int  # the size the run would train at: the target in the fewest accumulation steps (training_size)
    grad_accum: int
    effective_batch: int
    tokens_per_s: Optional[float]  # steady, at micro_batch (timing_steps steps, warm-up included)
    peak_gib: Optional[float]
    predicted_max: int
    probes: int
    seconds: float
    error: Optional[str] = None  # a candidate that failed with anything but an OOM: recorded, the search goes on
    timing_steps: int = 0  # steps run to time tokens_per_s; not among `probes` (the probe budget is for the search)
    searched_to: Optional[int] = None  # set when the search stopped at this micro-batch (what the target needs)


@dataclass
class AutoResult:
    winner: Optional[str]
    why: str
    seq_len: int
    target_effective_batch: int
    frontier: list[FrontierRow] = field(default_factory=list)
    pruned: list[dict[str, str]] = field(default_factory=list)
    probe_count: int = 0  # OOM-search probes, what probe_budget limits
    probe_budget: int = DEFAULT_PROBE_BUDGET
    timing_steps: int = 0  # steps run to time the candidates' training sizes, counted apart from the probes
    search_seconds: float = 0.0

    @property
    def winner_row(self) -> Optional[FrontierRow]:
        return next((r for r in self.frontier if r.stack == self.winner), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def environment(on_cuda: bool) -> frozenset[str]:
    """The requirements (memfit.core.protocol.REQUIREMENTS) this machine meets."""
    return frozenset({"cuda"} if on_cuda else set()) | ({"bitsandbytes"} if bitsandbytes_available() else set())


def candidate_classes(env: frozenset[str]) -> list[type]:
    """Registered strategy classes (one per class, aliases dropped) the search may add on this machine."""
    seen: dict[int, type] = {}
    for cls in available().values():
        traits = auto_traits(cls)
        if traits["auto_candidate"] and traits["requires"] <= env:
            seen.setdefault(id(cls), cls)
    return sorted(seen.values(), key=lambda c: c.name)


def enumerate_candidates(base: Stack, classes: list[type], max_added: int = MAX_ADDED) -> list[Candidate]:
    """Every valid base + combination (invalid ones, e.g. two weight quantisations, fail the stack's own checks)."""
    base_names = {s.name for s in base}
    pool = [c for c in classes if c.name not in base_names]
    out = []
    for r in range(min(max_added, len(pool)) + 1):
        for combo in itertools.combinations(pool, r):
            try:
                stack = Stack([*base, *(cls() for cls in combo)])
            except (StackError, ValueError):  # pydantic's ValidationError is a ValueError
                continue
            traits = [auto_traits(s) for s in stack]
            out.append(Candidate(stack, frozenset(c.name for c in combo), max(t["lossiness"] for t in traits),
                                 math.prod(t["speed_cost"] for t in traits)))
    return out


def with_partial_checkpointing(base: Stack, cands: list[Candidate], n_layers: Optional[int]) -> list[Candidate]:
    """`cands` plus, when `base` pins 4-bit weights, each candidate that adds full checkpointing again with only
    PARTIAL_CHECKPOINTING of its `n_layers` checkpointed. The declared recompute cost is scaled by the fraction (the
    probing order); the analytic model prunes those that cannot fit, the dominance rule those a stack without
    checkpointing already beats. Only for pinned 4-bit: elsewhere the levels' own candidates keep the search short."""
    if not n_layers or not any(auto_traits(s)["lossiness"] >= LOSSY_WEIGHTS_4BIT for s in base):
        return cands
    counts = sorted({round(f * n_layers) for f in PARTIAL_CHECKPOINTING} - {0, n_layers})
    out = list(cands)
    for c in cands:
        # a strategy this candidate added that can be limited to some layers (declared: gc's `layers`), at all now
        full = next((s for s in c.stack if s.name in c.added and declared(s, "layer_subset")
                     and getattr(s, declared(s, "layer_subset")) is None), None)
        if full is None:
            continue
        others = [s for s in c.stack if s is not full]
        cost = auto_traits(full)["speed_cost"]
        for k in counts:
            partial = type(full)(**{**full.model_dump(), declared(full, "layer_subset"): k})
            out.append(Candidate(Stack([*others, partial]), c.added, c.lossiness,
                                 c.prior_cost / cost * (1 + (cost - 1) * k / n_layers)))
    return out


def _dominated_by(c: Candidate, fitting: list[Candidate]) -> Optional[Candidate]:
    """A stack measured to fit the needed micro-batch, of which `c` only adds strategies declared to slow down."""
    for d in fitting:
        extra = c.added - d.added
        if d.added < c.added and all(auto_traits(s)["speed_cost"] > 1.0 for s in c.stack if s.name in extra):
            return d
    return None


def prior_speed(c: Candidate, seq_len: int, target: int, world: int) -> float:
    """The probing order: declared speed, scaled by how well the micro-batch the model predicts it would train at
    fills the device (SATURATION_TOKENS); never the answer, which is measured."""
    if c.predicted_max < 1:
        return 0.0
    micro, _ = training_size(c.stack, c.predicted_max, world, target)
    tokens = micro * seq_len
    return tokens / (tokens + SATURATION_TOKENS) / c.prior_cost


def training_speed(res: PlanResult, micro: int) -> tuple[Optional[float], int]:
    """(tokens/s at the training size, timing steps run): the steady speed `measure` timed there with warm-up
    (memfit.plan.choose.steady_speed). Search probes time one step per shape, mostly compilation for compiled
    stacks, so they count only when nothing was timed, and only a probe at exactly that size."""
    if res.timing_steps:
        return res.timed_tokens_per_s, res.timing_steps
    at_size = [p["tokens_per_s"] for p in res.probes if p["fits"] and p["micro_batch"] == micro and p["tokens_per_s"]]
    return max(at_size, default=None), 0


def auto_search(base: Stack | str, *, seq_len: int, target_effective_batch: int,
                measure: Callable[[Stack], PlanResult], predict: Callable[[Stack], int], on_cuda: bool,
                probe_budget: int = DEFAULT_PROBE_BUDGET, world: int = 1, max_added: int = MAX_ADDED,
                search_limit: Optional[int] = None, n_layers: Optional[int] = None,
                log: Callable[[str], None] = print) -> AutoResult:
    """Choose the stack. `measure(stack)` plans it for real (probes); `predict(stack)` is the analytic max
    micro-batch under the budget widened by PRUNE_TOLERANCE (0: cannot fit). `search_limit`: the micro-batch
    `measure` searches up to (memfit.plan.choose: what the target needs), shown as "at least" in the frontier.
    `n_layers`: the model's decoder layers, for the partial checkpointing variants of a 4-bit-pinned base."""
    base = Stack.coerce(base)
    start = time.perf_counter()
    result = AutoResult(None, "", seq_len, target_effective_batch, probe_budget=probe_budget)
    needed = max(1, math.ceil(target_effective_batch / world))
    cands = with_partial_checkpointing(base, enumerate_candidates(base, candidate_classes(environment(on_cuda)),
                                                                  max_added), n_layers)
    best: Optional[tuple[float, FrontierRow]] = None
    for level in sorted({c.lossiness for c in cands}):
        fitting: list[Candidate] = []
        level_cands = [c for c in cands if c.lossiness == level]
        for c in level_cands:
            c.predicted_max = predict(c.stack)
        if level_cands and all(c.predicted_max < 1 for c in level_cands):
            # The model is calibrated on GPUs; before it alone rules out a whole level, the level's most
            # memory-saving candidate (the most strategies added) is probed for real.
            max(level_cands, key=lambda c: (len(c.added), -c.prior_cost)).predicted_max = 1
        for c in sorted(level_cands, key=lambda c: (-prior_speed(c, seq_len, target_effective_batch, world),
                                                    len(c.added))):
            if c.predicted_max < 1:
                result.pruned.append({"stack": c.stack.spec, "reason": "analytic model: micro-batch 1 does not fit"})
                continue
            if (d := _dominated_by(c, fitting)) is not None:
                result.pruned.append({"stack": c.stack.spec, "reason": f"{d.stack.spec} already fits micro-batch "
                                      f"{needed}; this only adds slower strategies"})
                continue
            if result.probe_count >= probe_budget:
                result.pruned.append({"stack": c.stack.spec, "reason": f"probe budget ({probe_budget}) spent"})
                continue
            log(f"auto: probing {c.stack.spec} ({LOSSINESS_NAMES.get(level, level)}, predicted max {c.predicted_max})")
            try:
                res = measure(c.stack)
            except Exception as exc:  # noqa: BLE001 - OOMs are answers inside measure; this is anything else
                # One broken combination (a kernel that cannot run compiled, a plugin's bug) must not cost the
                # whole plan: the frontier shows it, and the other candidates are still probed.
                row = _failed_row(c, exc)
                result.frontier.append(row)
                log(f"auto: {c.stack.spec} failed, skipped: {row.error}")
                continue
            row = _row(c, res, target_effective_batch, world)
            if search_limit and res.max_micro_batch >= search_limit:
                row.searched_to = search_limit
            result.frontier.append(row)
            result.probe_count += res.probe_count
            result.timing_steps += row.timing_steps
            if res.max_micro_batch >= needed:  # measured, not predicted: the model's tolerance would over-prune
                fitting.append(c)
            if row.tokens_per_s and (best is None or row.tokens_per_s > best[0]):
                best = (row.tokens_per_s, row)
        if best is not None:  # something trains at this level: lossier levels would only lose quality
            result.winner = best[1].stack
            result.why = _why(best[1], level, result)
            break
    if result.winner is None:
        result.why = (f"no candidate trains at seq len {seq_len} even at micro-batch 1 within the probe budget: "
                      f"shorten --seq-len, free memory, or raise --probe-budget")
    result.search_seconds = time.perf_counter() - start
    return result


def _row(c: Candidate, res: PlanResult, target: int, world: int) -> FrontierRow:
    micro, k = training_size(c.stack, res.max_micro_batch, world, target)
    tps, timed = training_speed(res, micro)
    return FrontierRow(c.stack.spec, LOSSINESS_NAMES.get(c.lossiness, str(c.lossiness)), res.max_micro_batch, micro,
                       k, micro * k * world, tps, res.peak_gib, c.predicted_max, res.probe_count, res.search_seconds,
                       timing_steps=timed)


def _failed_row(c: Candidate, exc: BaseException) -> FrontierRow:
    text = str(exc).strip()
    line = f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
    return FrontierRow(c.stack.spec, LOSSINESS_NAMES.get(c.lossiness, str(c.lossiness)), 0, 0, 0, 0, None, None,
                       c.predicted_max, 0, 0.0, error=line)


def _why(win: FrontierRow, level: int, result: AutoResult) -> str:
    peers = [r for r in result.frontier if r.lossiness == win.lossiness and r.tokens_per_s]
    runner = max((r for r in peers if r is not win), key=lambda r: r.tokens_per_s, default=None)
    timed = f", steady over {win.timing_steps} steps incl. warm-up" if win.timing_steps else ", one probe step"
    text = (f"{win.stack}: highest measured tokens/s ({win.tokens_per_s:,.0f} at micro-batch {win.micro_batch} x "
            f"{win.grad_accum} accumulation{timed}) among {len(peers)} {win.lossiness} stack(s) that train")
    if runner:
        text += f"; next: {runner.stack} ({runner.tokens_per_s:,.0f} tok/s)"
    if failed := [r for r in result.frontier if r.error]:
        text += f"; {len(failed)} candidate(s) failed with an error and were skipped (see the frontier)"
    if level == EXACT:
        return text + "; exact stacks fit, so no lossy strategy (8-bit moments, 8/4-bit weights) was needed"
    return text + "; no less lossy stack trains at this sequence length (see the pruned/frontier rows)"
