"""Check what a launch config really gives, before spending GPU hours on it.

    accelerate launch --config_file launch_configs/cpu_2proc.yaml launch_configs/smoke.py
    accelerate launch --config_file launch_configs/fsdp.yaml launch_configs/smoke.py --train --stack \
        'lora+quant4bit:quant_storage=bf16+bf16+gc' --out /tmp/smoke

Every process prints one JSON line: its rank, num_processes, the engine (distributed_type) and device. With --train it
also trains a few steps of a small random Llama through memfit.train (the stack checked against the engine first),
saves the adapter from the main process, reloads it, and reports losses, peak memory and whether the reload matched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true", help="train a small random Llama for a few steps")
    ap.add_argument("--stack", default="lora:dropout=0+gc", help="memfit stack spec")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64, help="model width (layers: 2, vocab: 256)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from memfit.distributed import partial_state

    state = partial_state()  # first: builds the gloo group when the processes run on CPU
    report = {"rank": state.process_index, "num_processes": state.num_processes,
              "distributed_type": str(state.distributed_type).split(".")[-1], "device": str(state.device)}
    if args.train:
        report.update(_train(args, state))
    sys.stdout.flush()  # one write per line: the processes share the launcher's stdout
    os.write(sys.stdout.fileno(), ("SMOKE " + json.dumps(report) + "\n").encode())


def _train(args, state) -> dict:
    import torch
    from transformers import LlamaConfig

    import memfit
    from memfit.distributed import accelerator_kwargs, check_launch
    from memfit.loop import TrainConfig, make_accelerator

    stack = memfit.Stack.from_spec(args.stack)
    notes = check_launch(stack)  # before the model exists: a refused stack costs no loading time
    out = args.out or tempfile.mkdtemp(prefix="memfit-smoke-")
    config = LlamaConfig(vocab_size=256, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max(256, args.seq), tie_word_embeddings=False)
    base = os.path.join(out, "base")
    if state.is_main_process and not os.path.exists(os.path.join(base, "config.json")):
        torch.manual_seed(0)
        from transformers import LlamaForCausalLM

        LlamaForCausalLM(config).save_pretrained(base)  # through disk, so quantizing stacks load it like a real model
    state.wait_for_everyone()
    model = memfit.load_model(base, stack, stack.context(state.device))
    g = torch.Generator().manual_seed(0)
    n = args.micro_batch * state.num_processes * args.steps * 2
    ids = torch.randint(3, config.vocab_size, (n, args.seq), generator=g)
    rows = [{"input_ids": r.tolist(), "labels": r.tolist()} for r in ids]
    acc = make_accelerator(stack, args.micro_batch, **accelerator_kwargs(stack, state))
    notes += check_launch(stack, acc)
    cfg = {"micro_batch": args.micro_batch, "max_steps": args.steps, "lr": 1e-3, "warmup": 0, "progress": False,
           "output_dir": out}
    if "checkpoint_every" in TrainConfig.model_fields:
        cfg["checkpoint_every"] = None
    result = memfit.train(model, stack, rows, TrainConfig(**cfg), accelerator=acc)
    report = {"stack": stack.spec, "losses": result.losses, "effective_batch": result.effective_batch,
              "grad_accum": result.grad_accum, "peak_gib": result.memory.get("peak_gib"), "notes": notes,
              "adapter_dir": result.adapter_dir, "weights_held": _held(model), "held_4bit": _held(model, "Linear4bit")}
    if state.is_main_process and result.adapter_dir:
        report["adapter_reloads"] = _reload(base, result.adapter_dir)
    return report


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


def _reload(base: str, adapter_dir: str) -> bool:
    """The saved adapter is a normal peft adapter: it loads onto a fresh fp32 base and has non-zero B matrices."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    from transformers.integrations import unset_hf_deepspeed_config

    # accelerate registered its DeepSpeed config with transformers: under ZeRO-3, from_pretrained would now build the
    # model inside deepspeed.zero.Init, a collective the other processes (done by now) never join
    unset_hf_deepspeed_config()
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter_dir)
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    return bool(b) and all(p.abs().sum() > 0 for p in b)


if __name__ == "__main__":
    sys.exit(main())
