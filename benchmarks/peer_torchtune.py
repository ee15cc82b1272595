"""torchtune's QLoRA path as a peer of the HF recipe and memfit, measured with the same exact search.

    python benchmarks/peer_torchtune.py --seq 512 2048 --memory-gib 79.19 --out $OUT --name torchtune

Built the way torchtune's own `lora_finetune_single_device` recipe builds it (torchtune 0.6.1, NF4 from torchao):
the model under `set_default_dtype(bf16)` on the device, `get_adapter_params` + `set_trainable_params`, activation
checkpointing on every `TransformerSelfAttentionLayer`, `CEWithChunkedOutputLoss` with the model's output chunked to
match, fused AdamW over the adapters. Two variants: `recipe` is the shipped `llama3_2/3B_qlora_single_device.yaml`
(LoRA r64 a128 on q/v/output and the MLP), `hf-matched` is LoRA r8 a32 on q/k/v/o only, the HF recipe's adapters.
Random weights (torchtune quantizes them to NF4 as it builds the model), random tokens, one optimizer step per probe.
Writes NAME.json (memfit.plan.report rows) like gpu_bench.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from hf_baseline import step_probe_fn  # noqa: E402
from memfit.plan.memory import GiB  # noqa: E402
from memfit.plan.planner import PlanResult, search_max, versions  # noqa: E402
from memfit.plan.probe import CudaMeter  # noqa: E402
from memfit.plan.report import format_table, write_report  # noqa: E402

VARIANTS = {
    "recipe": dict(lora_attn_modules=["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=64,
                   lora_alpha=128),
    "hf-matched": dict(lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=False,
                       lora_rank=8, lora_alpha=32),
}


def build(variant: str):
    from torchtune import modules, training
    from torchtune.models.llama3_2 import qlora_llama3_2_3b
    from torchtune.modules.loss import CEWithChunkedOutputLoss
    from torchtune.modules.peft import get_adapter_params, set_trainable_params

    with training.set_default_dtype(torch.bfloat16), torch.device("cuda"):
        model = qlora_llama3_2_3b(lora_dropout=0.0, **VARIANTS[variant])
    set_trainable_params(model, get_adapter_params(model))
    training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
    loss_fn = CEWithChunkedOutputLoss()
    model.set_num_output_chunks(loss_fn.num_output_chunks)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0, fused=True,
                            weight_decay=0.01)
    return model, opt, loss_fn


def step(model, opt, loss_fn, b: int, seq: int) -> None:
    tokens = torch.randint(0, 128256, (b, seq), device="cuda")
    logits = model(tokens)  # a list of num_output_chunks chunks
    # the recipe's shift: labels move left by one, the last position is ignored
    labels = torch.hstack((tokens[:, 1:], torch.full((b, 1), -100, device="cuda")))
    loss = loss_fn(logits, labels)
    del logits
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def exact(variant: str, loaded, seq: int, margin: float) -> PlanResult:
    model, opt, loss_fn = loaded
    meter = CudaMeter(torch.device("cuda", 0), margin=margin).__enter__()  # caps device memory
    probe = step_probe_fn(lambda b: step(model, opt, loss_fn, b, seq), opt, meter, seq)

    start = time.perf_counter()
    best, probes = search_max(probe, budget=meter.budget, baseline=meter.baseline, limit=4096)
    # tokens/s at the max from a repeated step, not the search's first visit of that shape
    again = probe(best) if best else None
    meter.__exit__(None, None, None)  # lifts the cap
    import importlib.metadata as md

    v = versions() | {"torchtune": md.version("torchtune"), "torchao": md.version("torchao")}
    return PlanResult(stack=f"torchtune QLoRA ({variant})", seq_len=seq, max_micro_batch=best, grad_accum=1,
                      effective_batch=best, budget_gib=meter.budget / GiB,
                      peak_gib=again.peak_bytes / GiB if again and again.fits else None,
                      tokens_per_s=again.tokens_per_s if again and again.fits else None,
                      probes=[p.__dict__ for p in probes], search_seconds=time.perf_counter() - start,
                      device=torch.cuda.get_device_name(0), versions=v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, nargs="+", default=[512])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--memory-gib", type=float, help="cap the card at this many GiB (compare an H200 with an H100)")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="torchtune")
    args = ap.parse_args()
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    margin = max(0.0, 1 - args.memory_gib / total) if args.memory_gib else 0.0
    card = torch.cuda.get_device_name(0) + (f" capped at {args.memory_gib} GiB" if args.memory_gib else "")
    rows = []
    for variant in args.variants:
        loaded = build(variant)
        for seq in args.seq:
            rows.append(exact(variant, loaded, seq, margin))
            print(format_table(rows[-1:]), flush=True)
            write_report(rows, args.out, args.name, {"title": f"torchtune QLoRA, Llama-3.2-3B (random) on {card}",
                                                      "margin": round(margin, 4)})
        del loaded
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
