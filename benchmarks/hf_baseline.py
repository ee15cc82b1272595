"""The "HF recipe" baseline of ../shared/GPU.md, measured with the same exact search memfit uses.

from_pretrained(nf4 + double quant, fp16 compute) -> prepare_model_for_kbit_training(use_gradient_checkpointing=True)
-> get_peft_model(LoRA r8 a32 q/k/v/o) -> model.train() -> fp16 autocast -> model(ids, labels=ids).loss
-> bnb PagedAdamW8bit. Also accelerate's find_executable_batch_size on the same step, for comparison.
"""

from __future__ import annotations

import time

import torch

from memfit.plan.memory import GiB
from memfit.plan.planner import PlanResult, search_max, versions
from memfit.plan.probe import CudaMeter, Probe, is_oom



HF_LORA = dict(r=8, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
# Unsloth's published long-context setting (Llama-3.1-8B QLoRA): rank 32 on every linear layer of the decoder
ALL_LINEAR_R32 = dict(r=32, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"])


def load_hf_recipe(weights_dir: str, liger: bool = False, lora: dict | None = None):
    """`lora`: the adapters (default HF_LORA, GPU.md's recipe). liger=True: the peer TRL users get with
    `use_liger_kernel=True` (Liger's RMSNorm, SwiGLU, RoPE and fused linear cross-entropy patched into transformers'
    Llama classes before loading). It patches process-wide, so a benchmark process that measures it must not measure
    anything else afterwards."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=True)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float16)
    model = AutoModelForCausalLM.from_pretrained(weights_dir, quantization_config=q, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(**(lora or HF_LORA), lora_dropout=0.05, bias="none",
                                             task_type="CAUSAL_LM"))
    model.train()  # from_pretrained returns eval mode, where HF checkpointing silently does nothing
    opt = bnb.optim.PagedAdamW8bit([p for p in model.parameters() if p.requires_grad], lr=0.0)
    return model, opt


def hf_step(model, opt, b: int, seq: int) -> None:
    ids = torch.randint(0, model.config.vocab_size, (b, seq), device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def step_probe_fn(step, opt, meter: CudaMeter, seq: int):
    """probe(b): `step(b)` (one full training step of b sequences) as a Probe, an OOM as a miss; shared by the
    peers that bring their own step (the HF recipe here, torchtune in peer_torchtune.py)."""
    def probe(b: int) -> Probe:
        meter.reset()
        start = time.perf_counter()
        try:
            step(b)
            peak = meter.peak()
            secs = time.perf_counter() - start
            return Probe(b, True, peak, secs, b * seq / secs)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            return Probe(b, False, None, time.perf_counter() - start, error=str(exc).splitlines()[0][:160])
        finally:
            opt.zero_grad(set_to_none=True)
            meter.reset()
    return probe


def hf_probe_fn(model, opt, meter: CudaMeter, seq: int):
    return step_probe_fn(lambda b: hf_step(model, opt, b, seq), opt, meter, seq)


def hf_exact(weights_dir: str, seq: int, margin: float = 0.0, liger: bool = False,
             loaded=None) -> tuple[PlanResult, object, object]:
    model, opt = loaded or load_hf_recipe(weights_dir, liger)
    meter = CudaMeter(torch.device("cuda", 0), margin=margin).__enter__()  # caps device memory
    start = time.perf_counter()
    best, probes = search_max(hf_probe_fn(model, opt, meter, seq), budget=meter.budget, baseline=meter.baseline,
                              limit=4096)
    meter.__exit__(None, None, None)  # lifts the cap
    at_max = [p for p in probes if p.fits and p.micro_batch == best]
    label = "HF recipe (QLoRA fp16, prepare_model_for_kbit_training)" + (" + Liger kernels" if liger else "")
    res = PlanResult(stack=label, seq_len=seq,
                     max_micro_batch=best, grad_accum=1, effective_batch=best, budget_gib=meter.budget / GiB,
                     peak_gib=at_max[-1].peak_bytes / GiB if at_max else None,
                     tokens_per_s=at_max[-1].tokens_per_s if at_max else None,
                     probes=[p.__dict__ for p in probes], search_seconds=time.perf_counter() - start,
                     device=torch.cuda.get_device_name(0), versions=versions())
    return res, model, opt


def hf_finder(model, opt, seq: int, start: int = 512) -> dict:
    """accelerate.utils.find_executable_batch_size on the same step: what most scripts use."""
    from accelerate.utils import find_executable_batch_size

    calls: list[int] = []

    @find_executable_batch_size(starting_batch_size=start)
    def run(batch_size):
        calls.append(batch_size)
        hf_step(model, opt, batch_size, seq)
        return batch_size

    t = time.perf_counter()
    picked = run()
    return {"seq_len": seq, "picked": picked, "probes": len(calls), "seconds": time.perf_counter() - t,
            "sizes": calls}


def hf_max_seq(model, opt, margin: float = 0.0, unit: int = 256, liger: bool = False) -> dict:
    """Longest sequence (in steps of `unit` tokens) the recipe trains at micro-batch 1, exact against real OOMs:
    the same search as the batch, over k with seq = k * unit (memory is linear in seq with flash-style attention)."""
    meter = CudaMeter(torch.device("cuda", 0), margin=margin).__enter__()  # caps device memory

    def probe(k: int) -> Probe:
        p = hf_probe_fn(model, opt, meter, k * unit)(1)
        return Probe(k, p.fits, p.peak_bytes, p.seconds, p.tokens_per_s, error=p.error)

    start = time.perf_counter()
    best, probes = search_max(probe, budget=meter.budget, baseline=meter.baseline, limit=1024)
    meter.__exit__(None, None, None)  # lifts the cap
    return {"stack": "HF recipe" + (" + Liger" if liger else ""), "max_seq_len": best * unit, "unit": unit,
            "probes": len(probes), "seconds": time.perf_counter() - start,
            "sizes": [(p.micro_batch * unit, p.fits) for p in probes]}
