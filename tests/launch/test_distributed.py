"""Distributed runs: stacks checked against the engine, the DDP settings memfit uses, and two CPU processes (gloo)
training exactly like one process with the same effective batch, under DDP and DeepSpeed ZeRO-2/3.

Tolerances. One process sums the NLL of 4 rows; two processes sum 2 + 2 and all-reduce, or accumulate 1 + 1: the
same fp32 numbers in another order. Measured: losses within 2e-7 relative, compared at rel 1e-6. Adapters within
3e-6, compared at atol 3e-5 = 3 * lr / 1000: Adam divides each gradient element by its own running RMS, so a 1e-7
relative difference of a small element still moves its weight by a few lr * 1e-4. A wrongly sharded batch or a
wrongly scaled gradient or learning rate moves weights by ~lr (1e-2; the per-process LR schedule: 5e-3), over
a hundred times the tolerance.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from memfit import StackError
from memfit.launch.distributed import (Launch, accelerator_kwargs, check_stack_for_distributed, ddp_kwargs,
                                wants_cpu_group)
from _distributed_worker import LR, STACK, STEPS, run_all, spawn_two, train_once

REPO = Path(__file__).resolve().parents[2]
LOSS_RTOL, WEIGHT_ATOL = 1e-6, 3 * LR / 1000

check = check_stack_for_distributed


# ---- which stacks make sense under which engine ------------------------------------------------------------------

@pytest.mark.parametrize("facts", [dict(fsdp_version=2), dict(fsdp_version=1, fsdp_use_orig_params=True)])
def test_fsdp_refuses_4bit_weights_not_stored_in_the_compute_dtype(facts):
    with pytest.raises(StackError, match=r"quant_storage=bf16"):
        check("lora+q4+bf16+gc", "FSDP", **facts)
    assert check("lora+q4:quant_storage=bf16+bf16+gc", "FSDP", fsdp_version=2) == []
    with pytest.raises(StackError, match=r"quant_storage=fp16"):  # the storage must follow the compute dtype
        check("lora+q4:quant_storage=bf16+fp16+gc", "FSDP", fsdp_version=2)


def test_zero3_with_byte_storage_is_a_note_but_refused_under_zero_init():
    notes = check("lora+q4+bf16+gc", "DEEPSPEED", zero_stage=3)
    assert len(notes) == 1 and "quant_storage=bf16" in notes[0]
    assert check("lora+q4:quant_storage=bf16+bf16+gc", "DEEPSPEED", zero_stage=3) == []
    with pytest.raises(StackError, match="zero.Init"):
        check("lora+q4+bf16+gc", "DEEPSPEED", zero_stage=3, zero3_init=True)


@pytest.mark.parametrize("engine, facts", [("MULTI_GPU", {}), ("MULTI_CPU", {}), ("DEEPSPEED", {"zero_stage": 2}),
                                           ("NO", {})])
def test_replicated_weights_take_any_4bit_storage(engine, facts):
    assert check("lora+q4+bf16+gc", engine, **facts) == []
    assert check("lora+q8+bf16+gc", engine, **facts) == []


@pytest.mark.parametrize("engine, facts", [("DEEPSPEED", {"zero_stage": 3}), ("FSDP", {"fsdp_version": 2})])
def test_8bit_weights_cannot_be_sharded(engine, facts):
    with pytest.raises(StackError, match="quant8bit under"):
        check("lora+q8+bf16", engine, **facts)


def test_deepspeed_and_the_stack_optimizer():
    z2 = dict(zero_stage=2)
    with pytest.raises(StackError, match='"optimizer" section'):
        check("lora+bf16", "DEEPSPEED", deepspeed_optimizer=True, **z2)
    with pytest.raises(StackError, match="8-bit moments and GPU paging save nothing"):
        check("lora+bf16+paged_adam8", "DEEPSPEED", offload_optimizer="cpu", **z2)
    with pytest.raises(StackError, match="zero_force_ds_cpu_optimizer"):
        check("lora+bf16", "DEEPSPEED", offload_optimizer="cpu", **z2)
    assert check("lora+bf16", "DEEPSPEED", offload_optimizer="cpu", force_ds_cpu_optimizer=False, **z2) == []
    notes = check("lora+bf16+adam8", "DEEPSPEED", **z2)
    assert len(notes) == 1 and "ZeRO-2" in notes[0]
    offload = check("lora+bf16+gc+offload", "DEEPSPEED", zero_stage=3, offload_param="cpu")
    assert any("max_host_gib" in n for n in offload)


def test_fsdp1_cannot_flatten_lora_layers_fsdp2_can():
    with pytest.raises(StackError, match="use_orig_params"):
        check("lora", "FSDP", fsdp_version=1, fsdp_use_orig_params=False)
    with pytest.raises(StackError, match="single dtype"):
        check("lora+bf16", "FSDP", fsdp_version=1, fsdp_use_orig_params=True)
    assert check("lora", "FSDP", fsdp_version=1, fsdp_use_orig_params=True) == []  # all fp32: one dtype
    assert check("bf16", "FSDP", fsdp_version=1, fsdp_use_orig_params=False) == []  # full fine-tune
    assert check("lora+bf16+gc", "FSDP", fsdp_version=2) == []


def test_fsdp_checkpointing_and_gc_would_recompute_twice():
    with pytest.raises(StackError, match="twice"):
        check("lora+gc", "FSDP", fsdp_version=2, fsdp_activation_checkpointing=True)
    assert check("lora", "FSDP", fsdp_version=2, fsdp_activation_checkpointing=True) == []


def test_ddp_settings_memfit_uses_and_refuses():
    from memfit import Stack

    handler = ddp_kwargs(Stack.from_spec("lora+gc+offload"))
    assert (handler.find_unused_parameters, handler.static_graph) == (False, False)
    with pytest.raises(StackError, match="marks their parameters ready twice"):
        check("lora+gc+offload", "MULTI_GPU", find_unused_parameters=True)
    with pytest.raises(StackError, match="no_sync"):
        check("lora+gc+ga4", "MULTI_GPU", static_graph=True, grad_accum=4)
    assert check("lora+gc", "MULTI_GPU", static_graph=True, grad_accum=1) == []
    with pytest.raises(TypeError, match="unknown launch facts"):
        check("lora", "MULTI_GPU", zero_stag=3)


def test_accelerator_kwargs_per_engine():
    from types import SimpleNamespace

    from memfit import Stack

    stack = Stack.from_spec("lora+gc")
    ddp = accelerator_kwargs(stack, SimpleNamespace(distributed_type="DistributedType.MULTI_CPU"))
    assert ddp["step_scheduler_with_optimizer"] is False
    assert [type(h).__name__ for h in ddp["kwargs_handlers"]] == ["DistributedDataParallelKwargs"]
    assert accelerator_kwargs(stack, SimpleNamespace(distributed_type="DEEPSPEED")) == {
        "step_scheduler_with_optimizer": False}
    assert Launch("DistributedType.FSDP").distributed_type == "FSDP"


def test_check_launch_reads_a_live_accelerator():
    from memfit import Stack
    from memfit.launch.distributed import check_launch
    from memfit.training.loop import make_accelerator

    acc = make_accelerator(Stack.from_spec("lora+gc+ga2"), 2)
    launch = Launch.from_accelerator(acc)
    assert (launch.distributed_type, launch.num_processes, launch.grad_accum) == ("NO", 1, 2)
    assert check_launch("lora+q4+bf16+gc", acc) == [] and check_launch("lora+q4+bf16+gc") == []


def test_cpu_group_only_for_launched_processes_without_a_gpu():
    torchrun = {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    assert wants_cpu_group(torchrun, has_accelerator=False)
    assert not wants_cpu_group(torchrun, has_accelerator=True)
    assert not wants_cpu_group({}, has_accelerator=False)  # plain `python script.py`
    assert not wants_cpu_group({**torchrun, "ACCELERATE_USE_DEEPSPEED": "true"}, has_accelerator=False)


# ---- two processes train like one ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """1 process x micro-batch 4 x accumulation 1: the reference every 2-process run must reproduce."""
    return train_once(STACK, 4, str(tmp_path_factory.mktemp("one")))


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """One spawn of two CPU processes runs every engine in turn (see run_all): DDP, then DeepSpeed ZeRO-2/3 with
    the shipped launch_configs JSON."""
    out = tmp_path_factory.mktemp("two")
    configs = REPO / "launch_configs"
    runs = [("mb2", STACK, 2, "memfit"),  # 2 processes x 2 x 1
            ("mb1_ga2", STACK + "+ga2", 1, "memfit"),  # 2 processes x 1 x 2
            ("offload_mb1_ga2", STACK + "+offload+ga2", 1, "memfit"),  # reentrant-style recompute under DDP
            ("default_mb2", STACK, 2, "default")]  # the accelerator memfit.train builds by itself
    if importlib.util.find_spec("deepspeed") is not None:
        runs += [("zero2_mb2", STACK, 2, str(configs / "deepspeed_zero2.json")),
                 ("zero3_mb1_ga2", STACK + "+ga2", 1, str(configs / "deepspeed_zero3.json"))]
    spawn_two(run_all, (runs, str(out)), out / "rendezvous")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _adapter(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "adapter_model.safetensors"))


def _rows_per_step(seen: list, k: int) -> list[Counter]:
    steps = [seen[i:i + k] for i in range(0, len(seen), k)]
    return [Counter(tuple(row) for micro in step for row in micro) for step in steps]


def _assert_trains_like_one_process(ranks: list[dict], name: str, one: dict, k: int) -> None:
    runs = [r[name] for r in ranks]
    for run in runs:
        assert "error" not in run, run.get("trace", run.get("error"))
        assert (run["num_processes"], run["grad_accum"], run["effective_batch"]) == (2, k, 4)
    assert runs[0]["losses"] == runs[1]["losses"]  # all-reduced: one number for both ranks
    assert runs[0]["losses"] == pytest.approx(one["losses"], rel=LOSS_RTOL)
    # each step's window holds exactly the 4 rows the single process trained on, each once over both ranks
    steps = [_rows_per_step(run["seen"], k) for run in runs]
    reference = _rows_per_step(one["seen"], 1)
    assert len(steps[0]) == len(steps[1]) == len(reference) == STEPS
    assert all(a + b == ref for a, b, ref in zip(*steps, reference))
    mine, ref = _adapter(runs[0]["adapter_dir"]), _adapter(one["adapter_dir"])
    assert mine.keys() == ref.keys() and any("lora_B" in key for key in ref)
    worst = max((mine[key] - ref[key]).abs().max().item() for key in ref)
    assert worst <= WEIGHT_ATOL, f"{name}: adapter differs from the 1-process one by {worst:.2e}"


@pytest.mark.slow
def test_ddp_processes_form_one_cpu_group_by_themselves(two):
    """No ACCELERATE_USE_CPU in the environment: memfit.launch.distributed.partial_state builds the gloo group."""
    assert [(r["distributed_type"], r["num_processes"]) for r in two] == [("MULTI_CPU", 2)] * 2


@pytest.mark.slow
@pytest.mark.parametrize("name, k", [("mb2", 1), ("mb1_ga2", 2), ("offload_mb1_ga2", 2)])
def test_ddp_two_processes_train_like_one(two, one_process, name, k):
    _assert_trains_like_one_process(two, name, one_process, k)
    assert two[0][name]["launch"] == {"type": "MULTI_CPU", "zero_stage": None, "processes": 2, "static_graph": False}


@pytest.mark.slow
def test_ranks_see_distinct_rows_and_together_the_whole_data(two, one_process):
    rows = lambda run: [tuple(r) for micro in run["seen"] for r in micro]  # noqa: E731
    mine, theirs = rows(two[0]["mb2"]), rows(two[1]["mb2"])
    assert not set(mine) & set(theirs)
    assert sorted(mine + theirs) == sorted(rows(one_process)) and len(set(mine + theirs)) == 16


@pytest.mark.slow
def test_the_loop_default_accelerator_trains_like_one_process(two, one_process):
    _assert_trains_like_one_process(two, "default_mb2", one_process, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name, k", [("zero2_mb2", 1), ("zero3_mb1_ga2", 2)])
def test_deepspeed_two_processes_train_like_one(two, one_process, name, k):
    if name not in two[0]:
        pytest.skip("deepspeed is not installed")
    assert [r[name].get("engine") for r in two] == ["DEEPSPEED"] * 2, two[0][name].get("trace", two[0][name])
    assert two[0][name]["launch"] == {"type": "DEEPSPEED", "zero_stage": int(name[4]), "processes": 2,
                                      "static_graph": None}
    _assert_trains_like_one_process(two, name, one_process, k)


def test_one_helper_resets_accelerates_state_and_keeps_the_process_group():
    from accelerate import PartialState
    from accelerate.state import AcceleratorState

    from memfit import Stack
    from memfit.launch.distributed import reset_accelerator_state
    from memfit.training.loop import make_accelerator

    make_accelerator(Stack.from_spec("lora"), 1)
    reset_accelerator_state(unless_mixed_precision="no")  # same precision: kept
    assert AcceleratorState._shared_state and AcceleratorState().mixed_precision == "no"
    reset_accelerator_state()
    assert not AcceleratorState._shared_state and PartialState._shared_state  # the process group stays
    memfit_files = (REPO / "memfit").rglob("*.py")
    assert [p.name for p in memfit_files if "_reset_state(" in p.read_text()] == ["distributed.py"]
