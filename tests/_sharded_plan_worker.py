"""Body of the two-process sharded-planning test (module level: spawned processes import it).

Per rank, in one gloo group: the plan of the bare (unprepared) model, then plans through the Accelerator each engine
trains with (DDP, FSDP2 from launch_configs/fsdp.yaml's environment), then training at the FSDP2 plan under that
same Accelerator with the same simulated meter charged during every training step (MeteredAdamW below)."""

from __future__ import annotations

import contextlib
import json
import os
import traceback

SEQ, BUDGET, LIMIT = 32, 40e6, 48  # LIMIT: a short search (the analytic prediction counts GPU workspaces: 0 here)
# weights dominate: a full fine-tune of a wide model at a short sequence; every dimension even, so FSDP2 splits each
# parameter into equal halves and both ranks hold the same bytes (they OOM on the same probe)
WIDE = dict(hidden_size=256, intermediate_size=512, vocab_size=1024, num_hidden_layers=2)


class MeteredAdamW:
    """A strategy (exclusive make_optimizer + step_context) that charges a SimulatedMeter during the training loop's
    forward and backward: the optimizer it builds is the one the meter reads the static bytes from (its param
    groups hold the local shards once the Accelerator prepared it)."""

    name, phase = "metered_adamw", 60

    def __init__(self, meter):
        self.meter, self.optimizer = meter, None

    def describe(self) -> str:
        return "torch AdamW, metered"

    def spec_item(self) -> str:
        return self.name

    def make_optimizer(self, params, ctx, lr, weight_decay):
        import torch

        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        return self.optimizer

    def parameters(self):  # what the meter counts as weights: the optimizer's (local) parameters
        return (p for g in self.optimizer.param_groups for p in g["params"])

    @contextlib.contextmanager
    def step_context(self, ctx):
        with self.meter.measure(self, self.optimizer):
            yield


def _engine(name: str, fsdp_env: dict):
    """An Accelerator for `name` ('ddp' or 'fsdp') in the existing group, as memfit.train would build it."""
    from memfit import Stack
    from memfit.launch.distributed import reset_accelerator_state
    from memfit.training.loop import make_accelerator

    reset_accelerator_state()  # a new engine, same process group
    for key in fsdp_env:
        os.environ.pop(key, None)
    if name == "fsdp":
        os.environ.update(fsdp_env)
    acc = make_accelerator(Stack.from_spec("none"), 1)
    if name == "fsdp":
        _fsdp_on_cpu(acc)
    return acc


def _fsdp_on_cpu(acc) -> None:
    """accelerate 1.15 picks FSDP only for GPU-like process groups (state.py: MULTI_GPU, MULTI_XPU, ...): on a gloo
    group it stays MULTI_CPU and ignores the plugin. torch's FSDP2 itself shards on CPU, so the test switches the
    shared state to FSDP with the plugin the environment describes (what a GPU launch of fsdp.yaml gets)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    acc.state.distributed_type = DistributedType.FSDP
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()


def plan_and_train(out_dir: str, fsdp_env: dict, engines=("bare", "ddp", "fsdp")) -> None:
    from _models import random_blocks, tiny_model
    import memfit
    from memfit import Stack
    from memfit.launch.distributed import join_launch
    from memfit.plan.planner import plan
    from memfit.plan.probe import SimulatedMeter
    from memfit.training.loop import TrainConfig

    import sys

    state = join_launch()  # what `memfit plan` / `memfit train` do first
    report = {"num_processes": state.num_processes, "stdout": getattr(sys.stdout, "name", "")}
    cache = os.path.join(out_dir, "cache")
    common = dict(seq_len=SEQ, cache_dir=cache, fresh=True, limit=LIMIT)
    try:
        if "bare" in engines:
            report["bare"] = plan(tiny_model(**WIDE), "none", meter=SimulatedMeter(BUDGET), **common).to_dict()
        for name in [e for e in engines if e != "bare"]:
            acc = _engine(name, fsdp_env)
            report[name] = plan(tiny_model(**WIDE), "none", meter=SimulatedMeter(BUDGET), accelerator=acc,
                                **common).to_dict()
        # train at the FSDP2 plan, under FSDP2, metered against the same budget
        planned = report["fsdp"]["max_micro_batch"]
        meter = SimulatedMeter(BUDGET)
        meter.defer = True  # as the planner's FSDP2 probes: an OOM mid-step on one rank would stall the other
        metered = MeteredAdamW(meter)
        stack = Stack([metered])
        acc = _engine("fsdp", fsdp_env)
        engine = str(acc.state.distributed_type).split(".")[-1]
        cfg = TrainConfig(micro_batch=planned, max_steps=2, lr=1e-3, warmup=0, progress=False, checkpoint_every=None,
                          save_adapter=False)
        result = memfit.train(tiny_model(**WIDE), stack, random_blocks(planned * state.num_processes * 2, SEQ,
                                                                         vocab=WIDE["vocab_size"]), cfg,
                              accelerator=acc)
        report["train"] = {"micro_batch": result.micro_batch, "backoffs": result.backoffs, "steps": result.steps,
                           "peak": meter.peak(), "engine": engine,
                           "sharded": type(next(iter(metered.parameters()))).__name__}
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
        report["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"
    with open(os.path.join(out_dir, f"rank{state.process_index}.json"), "w") as f:
        json.dump(report, f)


def recipe_plan_under_ddp(out_dir: str) -> None:
    """memfit train's planning step (memfit.recipes.engine_plan.plan_run) in a 2-process gloo group, then one
    training step with the Accelerator built afterwards at the planned micro-batch."""
    from _models import random_blocks, tiny_model
    import memfit
    from memfit import Stack
    from memfit.launch.distributed import join_launch
    from memfit.plan.probe import SimulatedMeter
    from memfit.recipes.engine_plan import plan_run
    from memfit.training.loop import TrainConfig, make_accelerator

    state = join_launch()
    report: dict = {}
    loads: list[int] = []

    def load_copy():
        loads.append(1)
        return tiny_model(**WIDE)

    try:
        model, stack = tiny_model(**WIDE), Stack.from_spec("none")
        planned = plan_run(model, stack, state, load_copy, seq_len=SEQ, meter=SimulatedMeter(BUDGET), limit=LIMIT,
                           cache_dir=os.path.join(out_dir, "cache"), fresh=True)
        report["plan"] = planned.to_dict()
        report["copies_loaded"] = len(loads)
        report["model_untouched"] = type(model).__name__  # not wrapped or sharded by the planning engine
        acc = make_accelerator(stack, planned.micro_batch)
        cfg = TrainConfig(micro_batch=planned.micro_batch, max_steps=1, lr=1e-3, warmup=0, progress=False,
                          checkpoint_every=None, save_adapter=False)
        result = memfit.train(model, stack, random_blocks(planned.micro_batch * state.num_processes, SEQ,
                                                          vocab=WIDE["vocab_size"]), cfg, accelerator=acc)
        report["train"] = {"steps": result.steps, "micro_batch": result.micro_batch}
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"
    with open(os.path.join(out_dir, f"rank{state.process_index}.json"), "w") as f:
        json.dump(report, f)
