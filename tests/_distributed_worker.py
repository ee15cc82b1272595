"""Bodies of the multi-process training tests, and their launcher (module level: spawned processes import them).

Each run trains the tiny Llama with memfit.train and reports, per rank: the loss history, the samples every
micro-batch held (a recording loss strategy), the trained adapter as saved by the main process, and the engine.
A run that raises reports its error instead, so one failing engine does not hide the others.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
from datetime import timedelta

SEQ, ROWS, STEPS, LR = 32, 16, 4, 1e-2
STACK = "lora:dropout=0+gc"  # dropout 0: masks would differ between one process and two


class Recorder:
    """A loss strategy (exclusive `compute_loss` hook) that notes the first tokens of every row it trains on."""

    name, phase, seen = "record_batches", 60, []

    def describe(self) -> str:
        return "records the rows of every micro-batch"

    def spec_item(self) -> str:
        return self.name

    def compute_loss(self, model, batch, ctx):
        from memfit.core.loss import causal_lm_nll

        Recorder.seen.append([row[:8] for row in batch["input_ids"].tolist()])
        return causal_lm_nll(model, batch)


def recording(spec: str):
    from memfit import Stack

    return Stack([*Stack.from_spec(spec).strategies, Recorder()])


def train_config(micro_batch: int, output_dir: str):
    from memfit.training.loop import TrainConfig

    return TrainConfig(micro_batch=micro_batch, max_steps=STEPS, lr=LR, warmup=0, progress=False,
                       output_dir=output_dir, checkpoint_every=None)  # checkpoints are another issue's business


def train_once(spec: str, micro_batch: int, out_dir: str, accelerator_factory=None) -> dict:
    """One memfit.train run of the tiny model on the shared data; `accelerator_factory(stack, micro_batch)` or the
    loop's own default accelerator."""
    from _models import random_blocks, tiny_model  # tests/ is on sys.path in the spawned workers too
    import memfit

    Recorder.seen = []
    stack = recording(spec)
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    acc = accelerator_factory(stack, micro_batch) if accelerator_factory else None
    result = memfit.train(model, stack, random_blocks(ROWS, SEQ), train_config(micro_batch, out_dir), accelerator=acc)
    return {"losses": result.losses, "seen": Recorder.seen, "num_processes": result.num_processes,
            "grad_accum": result.grad_accum, "effective_batch": result.effective_batch,
            "adapter_dir": result.adapter_dir}


def _accelerator_factory(option):
    """"default": none given, memfit.train builds its own; "memfit": make_accelerator passed in; a path to a DeepSpeed
    JSON: make_accelerator under that DeepSpeed config."""
    from memfit.training.loop import make_accelerator

    if option == "default":
        return None
    if option == "memfit":
        return lambda stack, mb: _remember(make_accelerator(stack, mb))

    def deepspeed(stack, mb):
        from accelerate.utils import DeepSpeedPlugin

        return _remember(make_accelerator(stack, mb, deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=option)))
    return deepspeed


def run_all(runs, out_dir: str) -> None:
    """runs: (name, stack spec, micro_batch, option of _accelerator_factory), in one process group.

    DeepSpeed runs reuse the gloo group of the DDP runs: accelerate switches to DeepSpeed when
    ACCELERATE_USE_DEEPSPEED is set as the Accelerator is built, and DeepSpeed adopts an initialised torch.distributed.
    (One spawn instead of two saves the ~15 s every process spends importing torch, transformers and peft.)"""
    from accelerate import PartialState
    from accelerate.state import AcceleratorState

    from memfit.launch.distributed import Launch, partial_state, reset_accelerator_state

    state = partial_state()
    report = {"distributed_type": str(state.distributed_type).split(".")[-1], "num_processes": state.num_processes}
    for name, spec, micro_batch, option in runs:
        started = time.perf_counter()
        reset_accelerator_state()  # a new engine per run, same process group
        uses_deepspeed = option.endswith(".json")
        os.environ["ACCELERATE_USE_DEEPSPEED"] = str(uses_deepspeed).lower()
        if uses_deepspeed:
            # DeepSpeed's CPU backend compiles a shared-memory all-reduce (a ~60 s C++ build on first use) meant for
            # inference; training does not need it. A test-only shortcut, not something users must do.
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        try:
            _LAST.clear()
            report[name] = train_once(spec, micro_batch, os.path.join(out_dir, name), _accelerator_factory(option))
            report[name]["engine"] = str(AcceleratorState().distributed_type).split(".")[-1]
            if "acc" in _LAST:  # what memfit.launch.distributed reads off a live Accelerator (the runs that pass one)
                launch = Launch.from_accelerator(_LAST["acc"])
                report[name]["launch"] = {"type": launch.distributed_type, "zero_stage": launch.zero_stage,
                                          "processes": launch.num_processes, "static_graph": launch.static_graph}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        report[name]["seconds"] = round(time.perf_counter() - started, 2)
        PartialState().wait_for_everyone()
    report["seconds"] = round(time.perf_counter() - _T0, 2)
    with open(os.path.join(out_dir, f"rank{state.process_index}.json"), "w") as f:
        json.dump(report, f)


_LAST: dict = {}
_T0 = time.perf_counter()  # module import: the spawned process's start


def _remember(acc):
    _LAST["acc"] = acc
    return acc


class _Rank:
    """Per spawned process: the environment torchrun would give it, and a gloo group through a file (no ports)."""

    def __init__(self, function, rendezvous_file: str):
        self.function, self.rendezvous_file = function, rendezvous_file

    def __call__(self, index: int, *args) -> None:
        import torch

        os.environ.update(RANK=str(index), LOCAL_RANK=str(index))
        store = torch.distributed.FileStore(self.rendezvous_file, 2)
        torch.distributed.init_process_group("gloo", rank=index, world_size=2, store=store,
                                             timeout=timedelta(seconds=120))  # a stuck collective fails, not hangs
        self.function(*args)


def spawn_two(function, args, rendezvous_file) -> None:
    """Two spawned CPU processes like `accelerate launch` starts them. Unlike tests/_multiproc.py it does not set
    ACCELERATE_USE_CPU: memfit.launch.distributed.partial_state must build the CPU group by itself."""
    from accelerate.utils import patch_environment
    from torch.multiprocessing import start_processes

    env = dict(world_size="2", local_world_size="2", master_addr="127.0.0.1", master_port="29599",
               gloo_socket_ifname="lo", omp_num_threads="1", accelerate_mixed_precision="no")
    with patch_environment(**env):
        start_processes(_Rank(function, str(rendezvous_file)), args=args, nprocs=2, start_method="spawn")
