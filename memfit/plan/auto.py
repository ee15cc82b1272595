"""The planner chooses the stack: the fastest measured configuration for a target effective batch, exact first.

Candidates are the base stack (the user's fine-tune method and dtype, e.g. ``lora+bf16``) plus every combination of
the registered strategies (plugins included) that declare themselves auto candidates and whose requirements this
machine meets. The search walks lossiness levels in order (exact, 8-bit moments, 8-bit weights, 4-bit weights) and
stops after the first level where something trains: a lossy strategy is only used when no exact stack fits.
Within a level the analytic model prunes what cannot fit micro-batch 1 and stacks that only add slowing strategies
to one already predicted to fit the micro-batch the target needs; survivors are probed (real steps, real OOMs) in
order of their declared speed cost until the probe budget is spent. The winner is the level's highest *measured*
tokens/s at a micro-batch that reaches the target effective batch with accumulation.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from ..core.protocol import EXACT, LOSSINESS_NAMES, StackError, auto_traits, bitsandbytes_available
from ..core.registry import available
from ..core.stack import Stack
from .planner import PlanResult

PRUNE_TOLERANCE = 0.10  # the analytic model may be this far off: prune only what misses the budget by more
MAX_ADDED = 4  # strategies added to the base per candidate (more never helped on the H100 runs)
DEFAULT_PROBE_BUDGET = 60  # probes over all stacks: ~8 stacks at 5-8 probes each


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
    micro_batch: int  # the measured-fastest size that reaches the target without overshooting the micro-batch
    grad_accum: int
    effective_batch: int
    tokens_per_s: Optional[float]
    peak_gib: Optional[float]
    predicted_max: int
    probes: int
    seconds: float
    error: Optional[str] = None  # a candidate that failed with anything but an OOM: recorded, the search goes on


@dataclass
class AutoResult:
    winner: Optional[str]
    why: str
    seq_len: int
    target_effective_batch: int
    frontier: list[FrontierRow] = field(default_factory=list)
    pruned: list[dict[str, str]] = field(default_factory=list)
    probe_count: int = 0
    probe_budget: int = DEFAULT_PROBE_BUDGET
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


def _dominated_by(c: Candidate, fitting: list[Candidate]) -> Optional[Candidate]:
    """A stack measured to fit the needed micro-batch, of which `c` only adds strategies declared to slow down."""
    for d in fitting:
        extra = c.added - d.added
        if d.added < c.added and all(auto_traits(s)["speed_cost"] > 1.0 for s in c.stack if s.name in extra):
            return d
    return None


def chosen_size(res: PlanResult, target: int, world: int) -> tuple[int, Optional[float]]:
    """The measured-fastest fitting micro-batch not above what the target needs per process (b=1 is the warm-up
    probe: its speed counts only when nothing larger fits)."""
    cap = max(1, math.ceil(target / world))
    fitting = [p for p in res.probes if p["fits"] and p.get("tokens_per_s") and p["micro_batch"] <= cap]
    warm = [p for p in fitting if p["micro_batch"] > 1] or fitting
    best = max(warm, key=lambda p: p["tokens_per_s"], default=None)
    return (best["micro_batch"], best["tokens_per_s"]) if best else (0, None)


def auto_search(base: Stack | str, *, seq_len: int, target_effective_batch: int,
                measure: Callable[[Stack], PlanResult], predict: Callable[[Stack], int], on_cuda: bool,
                probe_budget: int = DEFAULT_PROBE_BUDGET, world: int = 1, max_added: int = MAX_ADDED,
                log: Callable[[str], None] = print) -> AutoResult:
    """Choose the stack. `measure(stack)` plans it for real (probes); `predict(stack)` is the analytic max
    micro-batch under the budget widened by PRUNE_TOLERANCE (0: cannot fit)."""
    base = Stack.coerce(base)
    start = time.perf_counter()
    result = AutoResult(None, "", seq_len, target_effective_batch, probe_budget=probe_budget)
    needed = max(1, math.ceil(target_effective_batch / world))
    cands = enumerate_candidates(base, candidate_classes(environment(on_cuda)), max_added)
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
        # prior tokens/s: the declared speed, scaled by how much of the needed micro-batch the model predicts fits
        for c in sorted(level_cands, key=lambda c: (-min(c.predicted_max, needed) / c.prior_cost, len(c.added))):
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
            result.frontier.append(row)
            result.probe_count += res.probe_count
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
    micro, tps = chosen_size(res, target, world)
    k = max(1, math.ceil(target / (micro * world))) if micro else 0
    return FrontierRow(c.stack.spec, LOSSINESS_NAMES.get(c.lossiness, str(c.lossiness)), res.max_micro_batch, micro,
                       k, micro * k * world, tps, res.peak_gib, c.predicted_max, res.probe_count, res.search_seconds)


def _failed_row(c: Candidate, exc: BaseException) -> FrontierRow:
    text = str(exc).strip()
    line = f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
    return FrontierRow(c.stack.spec, LOSSINESS_NAMES.get(c.lossiness, str(c.lossiness)), 0, 0, 0, 0, None, None,
                       c.predicted_max, 0, 0.0, error=line)


def _why(win: FrontierRow, level: int, result: AutoResult) -> str:
    peers = [r for r in result.frontier if r.lossiness == win.lossiness and r.tokens_per_s]
    runner = max((r for r in peers if r is not win), key=lambda r: r.tokens_per_s, default=None)
    text = (f"{win.stack}: highest measured tokens/s ({win.tokens_per_s:,.0f} at micro-batch {win.micro_batch} x "
            f"{win.grad_accum} accumulation) among {len(peers)} {win.lossiness} stack(s) that train")
    if runner:
        text += f"; next: {runner.stack} ({runner.tokens_per_s:,.0f} tok/s)"
    if failed := [r for r in result.frontier if r.error]:
        text += f"; {len(failed)} candidate(s) failed with an error and were skipped (see the frontier)"
    if level == EXACT:
        return text + "; exact stacks fit, so no lossy strategy (8-bit moments, 8/4-bit weights) was needed"
    return text + "; no less lossy stack trains at this sequence length (see the pruned/frontier rows)"
