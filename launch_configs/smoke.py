"""Check what a launch config really gives, before spending GPU hours on it.

    accelerate launch --config_file launch_configs/cpu_2proc.yaml launch_configs/smoke.py
    accelerate launch --config_file launch_configs/ddp.yaml launch_configs/smoke.py --train --model-config \
        llama-3.2-3b --plan --seq 512 --steps 30 --stack 'lora+quant4bit:quant_storage=bf16+bf16+gc' --out /tmp/smoke

Every process prints one JSON line (and with --out writes it to <out>/smoke_rank<r>.json): rank, num_processes, engine
(distributed_type; DeepSpeed's zero_stage) and device. --train trains a few steps of a random Llama through memfit.train
(a tiny 2-layer one, or --model-config: a real architecture whose random weights the main process writes once), saves
the adapter from the main process and reloads it. --plan first searches the largest micro-batch (memfit.plan.planner.plan,
every rank agreeing) and trains at it; under ZeRO-3/FSDP it probes before accelerator.prepare, unsharded (conservative).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true", help="train a random Llama for a few steps")
    ap.add_argument("--stack", default="lora:dropout=0+gc", help="memfit stack spec")
    ap.add_argument("--micro-batch", type=int, default=2, help="micro-batch per process (without --plan)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64, help="tiny model width (layers: 2, vocab: 256)")
    ap.add_argument("--model-config", default=None,
                    help="a shipped architecture (llama-3.2-1b, llama-3.2-3b, ...) or a LlamaConfig JSON file, "
                         "with random weights, instead of the tiny model")
    ap.add_argument("--plan", action="store_true", help="train at the planner's largest micro-batch")
    ap.add_argument("--engine-plan", action="store_true",
                    help="with --plan: probe through the engine's Accelerator (DDP/ZeRO/FSDP2 prepare a second copy "
                         "of the model: memfit.plan.sharded), so sharded state counts per process")
    ap.add_argument("--margin", type=float, default=0.03, help="planner safety margin (fraction of GPU memory)")
    ap.add_argument("--max-micro-batch", type=int, default=4096, help="upper end of the planner's search")
    ap.add_argument("--cpu-budget-gib", type=float, default=2.0, help="simulated device memory for --plan on CPU")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from memfit.launch.distributed import partial_state

    state = partial_state()  # first: builds the gloo group when the processes run on CPU
    report = {"rank": state.process_index, "num_processes": state.num_processes,
              "distributed_type": str(state.distributed_type).split(".")[-1], "device": str(state.device)}
    out = _shared_out(args.out, state) if args.train else args.out
    if out:  # benchmarks/multi_gpu.sh ends ranks a timed-out launcher left behind by these ids
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"rank{state.process_index}.pid"), "w") as f:
            f.write(str(os.getpid()))
    try:
        if args.train:
            report.update(_train(args, state, out))
    except Exception as exc:  # the report file still says why, for multi_gpu_report.py; the traceback follows
        report["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise
    finally:
        if out:
            with open(os.path.join(out, f"smoke_rank{state.process_index}.json"), "w") as f:
                json.dump(report, f, indent=1)
        sys.stdout.flush()  # one write per line: the processes share the launcher's stdout
        os.write(sys.stdout.fileno(), ("SMOKE " + json.dumps(report) + "\n").encode())


def _shared_out(out: str | None, state) -> str:
    """--out, or one temporary folder for all ranks (the main process's, broadcast): they share the base weights."""
    if out:
        return out
    path = [tempfile.mkdtemp(prefix="memfit-smoke-") if state.is_main_process else None]
    if state.num_processes > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(path, src=0)
    return path[0]


class _RandomRows:
    """Random token rows, made as one tensor; a row becomes the lists memfit's collate expects only when loaded."""

    def __init__(self, n: int, seq: int, vocab: int):
        import torch

        self.ids = torch.randint(3, vocab, (n, seq), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        row = self.ids[i].tolist()
        return {"input_ids": row, "labels": row}


def _base(args, out: str, state):
    """The base model folder (written once, by whichever process gets here first: run under main_process_first)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.model_config:  # bf16 on the GPU where there is one (3B in seconds), else fp32 on CPU; cached by config
        from memfit.models import load_config, random_weights_dir

        cuda = torch.cuda.is_available()
        return str(random_weights_dir(load_config(args.model_config), torch.bfloat16 if cuda else torch.float32,
                                      state.device if cuda else torch.device("cpu")))
    base = os.path.join(out, "base")
    if not os.path.exists(os.path.join(base, "config.json")):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=256, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=max(256, args.seq), tie_word_embeddings=False)
        LlamaForCausalLM(config).save_pretrained(base)  # through disk, so quantizing stacks load it like a real model
    return base


def _train(args, state, out: str) -> dict:
    import memfit
    from memfit.launch.distributed import Launch, check_launch
    from memfit.training.loop import TrainConfig, make_accelerator
    from memfit.plan.planner import versions

    stack = memfit.Stack.from_spec(args.stack)
    notes = check_launch(stack)  # before the model exists: a refused stack costs no loading time
    start = time.perf_counter()
    with state.main_process_first():  # the main process writes the random weights, the others wait and read them
        base = _base(args, out, state)
    model = memfit.load_model(base, stack, stack.context(state.device))
    report = {"stack": stack.spec, "model": args.model_config or f"tiny-{args.hidden}", "seq": args.seq,
              "load_s": round(time.perf_counter() - start, 1), "versions": versions()}
    _phase(state, start, f"loaded {report['model']}")
    micro = args.micro_batch
    if args.plan:  # before the Accelerator: make_accelerator needs the micro-batch (and ZeRO/FSDP see it unsharded)
        report.update(_plan(memfit.load_model(base, stack, stack.context(state.device)) if args.engine_plan
                            else model, stack, args, state))
        micro = report["plan_micro_batch"]
        _phase(state, start, f"planned micro-batch {micro} ({report['plan_probes']} probes)")
        if micro < 1:
            raise RuntimeError(f"the planner found no micro-batch that fits at seq {args.seq}")
    acc = make_accelerator(stack, micro)
    notes = list(dict.fromkeys(notes + check_launch(stack, acc)))  # the Accelerator adds facts, not repeats
    report["zero_stage"] = Launch.from_accelerator(acc).zero_stage
    # the Accelerator's engine: PartialState (the line's first field) says MULTI_GPU under an FSDP config
    report["distributed_type"] = str(acc.distributed_type).split(".")[-1]
    rows = _RandomRows(micro * acc.num_processes * args.steps * acc.gradient_accumulation_steps, args.seq,
                       model.config.vocab_size)
    cfg = TrainConfig(micro_batch=micro, max_steps=args.steps, lr=1e-3, warmup=0, progress=False, output_dir=out,
                      checkpoint_every=None)
    _phase(state, start, f"training {args.steps} steps at micro-batch {micro} x {acc.gradient_accumulation_steps} "
                         f"x {acc.num_processes} processes")
    result = memfit.train(model, stack, rows, cfg, accelerator=acc)
    _phase(state, start, f"trained at {result.tokens_per_s:,.0f} tokens/s")
    mem = result.memory  # CUDA: this process's allocator peak during training; CPU: the process's peak RSS
    report.update({
        "micro_batch": result.micro_batch, "grad_accum": result.grad_accum, "effective_batch": result.effective_batch,
        "backoffs": len(result.backoffs), "peak_gib": _round(mem.get("peak_gib", mem.get("peak_rss_gib"))),
        "peak_source": "cuda max_memory_allocated" if "peak_gib" in mem else "cpu peak RSS",
        "peak_reserved_gib": _round(mem.get("peak_reserved_gib")), "device_name": mem.get("device"),
        "tokens_per_s": round(result.tokens_per_s, 1), "train_s": round(result.seconds, 2),
        "loss_first": result.losses[0], "loss_last": result.losses[-1], "losses": result.losses, "notes": notes,
        "adapter_dir": result.adapter_dir, "weights_held": _held(model), "held_4bit": _held(model, "Linear4bit")})
    if state.is_main_process and result.adapter_dir:
        report["adapter_reloads"] = _reload(base, result.adapter_dir, big=bool(args.model_config))
    return report


def _phase(state, start: float, what: str) -> None:
    """Progress on the main process, so a timed-out launch's log says how far it got."""
    if state.is_main_process:
        print(f"SMOKE-PHASE {time.perf_counter() - start:.1f}s: {what}", flush=True)


def _plan(model, stack, args, state) -> dict:
    from memfit.plan.memory import GiB
    from memfit.plan.planner import plan
    from memfit.plan.probe import SimulatedMeter

    from memfit.training.loop import make_accelerator

    meter = None if state.device.type == "cuda" else SimulatedMeter(args.cpu_budget_gib * GiB)  # CPU has no OOM
    acc = make_accelerator(stack, 1) if args.engine_plan else None  # the copy `model` is then sharded or wrapped
    p = plan(model, stack, seq_len=args.seq, margin=args.margin, fresh=True, meter=meter, limit=args.max_micro_batch,
             accelerator=acc)
    if acc is not None:
        acc.free_memory()  # the planned copy goes; training prepares the first one
    return {"plan_engine": p.engine, "plan_micro_batch": p.max_micro_batch, "plan_probes": p.probe_count,
            "plan_search_s": round(p.search_seconds, 2), "plan_predicted_max": p.predicted_max,
            "plan_peak_gib": _round(p.peak_gib), "plan_budget_gib": _round(p.budget_gib),
            "plan_tokens_per_s": p.tokens_per_s and round(p.tokens_per_s, 1), "plan_device": p.device}


def _round(x, n: int = 3):
    return None if x is None else round(x, n)


def _held(model, module_type: str | None = None) -> float | None:
    """Fraction of the weight elements this process holds after training: 1.0 replicated, ~1/processes sharded
    (ZeRO-3 keeps ds_tensor partitions, FSDP2 DTensor shards)."""
    held = total = 0
    for module in model.modules():
        if module_type and type(module).__name__ != module_type:
            continue
        for p in module.parameters(recurse=False):
            full = getattr(p, "ds_numel", None) or p.numel()
            local = p.ds_tensor.numel() if hasattr(p, "ds_tensor") else (
                p.to_local().numel() if hasattr(p, "to_local") else p.numel())
            held, total = held + local, total + full
    return round(held / total, 3) if total else None


def _reload(base: str, adapter_dir: str, big: bool) -> bool:
    """The saved adapter is a normal peft adapter: it loads onto a fresh base and has non-zero B matrices. A real
    architecture reloads in bf16 (on the GPU if there is one), the tiny model in fp32 on CPU."""
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    from transformers.integrations import unset_hf_deepspeed_config

    # accelerate registered its DeepSpeed config with transformers: under ZeRO-3, from_pretrained would now build the
    # model inside deepspeed.zero.Init, a collective the other processes (done by now) never join
    unset_hf_deepspeed_config()
    where = {"device_map": {"": torch.cuda.current_device()}} if big and torch.cuda.is_available() else {}
    fresh = LlamaForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if big else torch.float32, **where)
    model = PeftModel.from_pretrained(fresh, adapter_dir)
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    ok = bool(b) and all(p.abs().sum() > 0 for p in b)
    del b, model, fresh
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return bool(ok)


if __name__ == "__main__":
    sys.exit(main())
