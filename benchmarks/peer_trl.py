"""TRL's SFTTrainer as a peer of the HF recipe and memfit, measured with the same exact search and timing.

    python benchmarks/peer_trl.py --seq 512 2048 --memory-gib 79.19 --out $OUT --name trl        # GPU, QLoRA
    python benchmarks/peer_trl.py --smoke                                                       # CPU, tiny model

What a user gets from TRL 1.16 with its defaults (read off `trl/trainer/sft_config.py` and `sft_trainer.py` 1.16.0):
- loss: `loss_type="nll"` computed through TRL's fused LM head (`add_fused_lm_head`): per-token log-probabilities
  in chunks, the full [batch, seq, vocab] logits are never materialised (the old `chunked_nll` is now its alias);
- packing: `packing=False` by default and `padding_free=False` (padding-free needs FlashAttention 2/3, or packing
  with the `bfd` strategy). Every probe batch here is b sequences of exactly `seq` random tokens with a full
  attention mask, so there is no padding for either setting to remove: the rows measure the trainer's step;
- the step is the trainer's own `training_step` (its `compute_loss`, `accelerator.backward`) plus its optimizer.
Adapters and quantization are the seed's QLoRA settings, as in `hf_baseline.py`: NF4 + double quantization,
LoRA r8 a32 dropout 0.05 on q/k/v/o, gradient checkpointing, paged 8-bit AdamW, bf16.
Writes NAME.json / NAME.md (memfit.plan.report rows) like gpu_bench.py. TRL is carried as a wheel
(`pip download --no-deps trl==1.16.0`); it needs nothing the GPU image and the carried wheels lack.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from hf_baseline import step_probe_fn  # noqa: E402
from memfit.plan.memory import GiB  # noqa: E402
from memfit.plan.planner import PlanResult, search_max, versions  # noqa: E402

LORA = dict(r=8, lora_alpha=32, lora_dropout=0.05, bias="none", target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM")


def build_trainer(weights_dir: str, seq: int, smoke: bool = False):
    """An SFTTrainer over `weights_dir` with TRL's defaults and the seed's QLoRA settings (`smoke`: fp32 LoRA on the
    CPU, no bitsandbytes). Returns (trainer, optimizer)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    if smoke:
        model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch.float32)
    else:
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(weights_dir, quantization_config=q, device_map={"": 0},
                                                     dtype=torch.bfloat16)
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="peer_trl_"), max_length=seq, per_device_train_batch_size=1,
                     gradient_checkpointing=not smoke, bf16=not smoke, use_cpu=smoke, learning_rate=0.0,
                     optim="adamw_torch" if smoke else "paged_adamw_8bit", report_to=[], save_strategy="no",
                     logging_strategy="no", max_steps=1)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": ["warm up"] * 2}),
                         processing_class=_word_tokenizer(), peft_config=LoraConfig(**LORA))
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    trainer.model.train()
    return trainer, trainer.optimizer


def _word_tokenizer():
    """SFTTrainer tokenises its (two-row) dataset at construction; the probes feed random ids of the model's own
    vocabulary, so a four-word tokenizer built in memory serves (random weights ship no tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "warm": 2, "up": 3}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]", eos_token="[PAD]")


def trl_step(trainer, b: int, seq: int) -> None:
    """One optimizer step of b sequences through the trainer's own training_step (compute_loss + backward)."""
    device = next(trainer.model.parameters()).device
    ids = torch.randint(0, trainer.model.config.vocab_size, (b, seq), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    trainer.training_step(trainer.model, inputs, num_items_in_batch=torch.tensor(b * (seq - 1), device=device))
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def trl_exact(weights_dir: str, seq: int, margin: float, meter=None, limit: int = 4096) -> PlanResult:
    from memfit.plan.probe import CudaMeter

    trainer, opt = build_trainer(weights_dir, seq, smoke=meter is not None)
    meter = meter or CudaMeter(torch.device("cuda", 0), margin=margin)
    start = time.perf_counter()
    with meter:  # caps device memory for the search and lifts the cap whatever happens
        best, probes = search_max(step_probe_fn(lambda b: trl_step(trainer, b, seq), opt, meter, seq),
                                  budget=meter.budget, baseline=meter.baseline, limit=limit)
    at_max = [p for p in probes if p.fits and p.micro_batch == best]
    import trl

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return PlanResult(stack=f"TRL {trl.__version__} SFTTrainer defaults (fused-LM-head NLL, no packing) + peft QLoRA",
                      seq_len=seq, max_micro_batch=best, grad_accum=1, effective_batch=best,
                      budget_gib=meter.budget / GiB, peak_gib=at_max[-1].peak_bytes / GiB if at_max else None,
                      tokens_per_s=at_max[-1].tokens_per_s if at_max else None, probes=[p.__dict__ for p in probes],
                      search_seconds=time.perf_counter() - start, device=device,
                      versions={**versions(), "trl": trl.__version__})


def _smoke() -> None:
    """The peer on the CPU: a tiny random Llama, a simulated 64 MB device, one search."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from memfit.plan.probe import SimulatedMeter

    folder = tempfile.mkdtemp(prefix="peer_trl_smoke_")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=256)).save_pretrained(folder)
    res = trl_exact(folder, 64, 0.0, meter=SimulatedMeter(64 * 2**20), limit=64)
    # the simulated meter only sees tensors saved inside its `measure` block, which the trainer's step is not: the
    # smoke run checks that the peer's step and search run end to end, not a size
    print(f"smoke: {res.stack}: {len(res.probes)} probes ran, every step finite")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--seq", type=int, nargs="+", default=[512])
    ap.add_argument("--memory-gib", type=float, help="cap the card at this many GiB (an H200 as an H100)")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="trl")
    ap.add_argument("--smoke", action="store_true", help="CPU: a tiny model, no 4-bit, a simulated device")
    args = ap.parse_args()
    if args.smoke:
        return _smoke()
    import memfit
    from memfit.models import random_weights_dir
    from memfit.plan.report import format_table, write_report

    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    margin = max(0.0, 1 - args.memory_gib / total) if args.memory_gib else 0.0
    weights = str(random_weights_dir(memfit.load_config(args.config), torch.bfloat16, torch.device("cuda", 0)))
    card = torch.cuda.get_device_name(0) + (f" capped at {args.memory_gib} GiB" if args.memory_gib else "")
    rows = []
    for seq in args.seq:
        rows.append(trl_exact(weights, seq, margin))
        write_report(rows, args.out, args.name, {"title": f"{args.config} (random weights) on {card}", "card": card})
        print(format_table(rows), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
