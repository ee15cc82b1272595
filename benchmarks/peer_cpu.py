"""memfit against its CPU peers on the same job (issue 34): SmolLM2-135M fp32, LoRA r8 alpha 32 (dropout 0) on
q/k/v/o, sequences of 256 tokens, micro-batch 4 x 2 accumulation, AdamW, cosine schedule without warm-up, the same
packed blocks of the bundled climate sample (input_ids, labels, per-document position_ids) for every peer:

  memfit      memfit.train with the stack lora:r=8,alpha=32,dropout=0+ga2 (the model's own lm_head and loss)
  memfit-cce  the same + cce: memfit's chunked lm_head + cross-entropy (the CPU seed stack's loss; same math)
  hf       transformers.Trainer + peft.get_peft_model
  trl      trl.SFTTrainer (same peft LoRA config), skipped with a note when trl is not importable

    python benchmarks/peer_cpu.py [--steps 20] [--rounds 3] [--threads 2] [--out results.json]
    python benchmarks/peer_cpu.py --steps 2 --rounds 1        # smoke run: the harness works, numbers mean nothing

The issue's measurement, on an idle 2-core machine, with TRL kept out of the shared install:

    pip download --no-deps trl==1.16.0 -d /tmp/trlwheel
    pip install --no-deps --target /tmp/trlsite /tmp/trlwheel/*.whl
    PYTHONPATH=$PWD:/tmp/trlsite python benchmarks/peer_cpu.py --steps 20 --rounds 3 --threads 2 \
        --out benchmarks/results/peer_cpu_$(date -u +%F).json

Each peer runs in its own process (so peak RSS is its own), rounds interleave the peers in rotated order (a busy
machine slows all alike), and the table shows medians over rounds. Every number is measured the same way for all
peers, outside their own meters: tokens/s = input tokens of the optimizer steps after the first (counted where the
model embeds them: an epoch's last step is shorter, and each trainer ends an epoch its own way) / the time between
the first and the last optimizer step (a global torch optimizer step hook); peak RSS before the first forward
(model, data and optimizer built) and over training (ru_maxrss, before the evaluation; with it: in the JSON);
tokens per CPU-second of the process (its threads' CPU time over the same steps) beside tokens/s, and each peer's
ratio to HF's run of the same round; final perplexity of the trained model on the same 4,096-token sample of the
held-out document, scored by memfit.evaluation.perplexity for every peer.
Run it on an otherwise idle machine: on shared cores the numbers say little."""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = ("memfit", "memfit-cce", "hf", "trl")
SEQ, MICRO, ACCUM, LORA_TARGETS = 256, 4, 2, ["q_proj", "k_proj", "v_proj", "o_proj"]
EVAL_TOKENS = 4096
RESULT_TAG = "PEER_RESULT "


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def job_data(cache: str):
    """The same blocks for every peer: the bundled sample, split and packed by memfit, and the evaluation sample."""
    from memfit.bundled import CLIMATE_SAMPLE
    from memfit.data import build_datasets, extract_pdfs
    from memfit.models import load_tokenizer
    from memfit.recipes.finetune_data import sample_documents

    tokenizer = load_tokenizer("smollm2-135m")
    bundle = build_datasets(extract_pdfs(CLIMATE_SAMPLE, cache), tokenizer, block_size=SEQ, seed=0, verbose=False)
    pieces, _ = sample_documents(bundle.test, tokenizer, EVAL_TOKENS, SEQ)
    return tokenizer, bundle.train.select_columns(["input_ids", "labels", "position_ids"]), pieces


class StepClock:
    """Optimizer step times, the tokens each step trained on and the peak RSS before the first forward, the same way
    for every trainer.

    Tokens are counted, not assumed: the 57 train blocks are no multiple of the 8 a step takes, and each trainer ends
    an epoch in its own way (HF Trainer's last step of an epoch has 1 block, memfit's another count), so a step is not
    always 2,048 tokens. Counting steps x 2,048 overstated HF's tokens/s by ~9 % and memfit's by ~4 % in 20 steps (the
    results of 2026-12-05 before this count)."""

    def __init__(self, model):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.times: list[float] = []
        self.cpu_times: list[float] = []  # the process's CPU seconds (all its threads): blind to other work's share
        self.tokens_at_step: list[int] = []  # input tokens embedded so far, at each optimizer step
        self.tokens = 0
        self.rss_before_first_step = None
        self._hooks = [register_optimizer_step_post_hook(self._stepped),
                       model.register_forward_pre_hook(self._forward),
                       # every peer embeds each micro-batch's input_ids exactly once (no checkpointing in this job)
                       model.get_input_embeddings().register_forward_pre_hook(self._embedded)]

    def _stepped(self, *_):
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())
        self.tokens_at_step.append(self.tokens)

    def _forward(self, *_):
        if self.rss_before_first_step is None:
            self.rss_before_first_step = rss_gib()

    def _embedded(self, _module, args):
        self.tokens += args[0].numel()

    def _trained_tokens(self) -> int:
        """Tokens of the steps after the first (the first step's forward also warms up: it is not timed)."""
        return self.tokens_at_step[-1] - self.tokens_at_step[0]

    def tokens_per_s(self) -> float:
        if len(self.times) < 2:
            return float("nan")
        return self._trained_tokens() / (self.times[-1] - self.times[0])

    def tokens_per_cpu_s(self) -> float:
        """Tokens per CPU-second of the process: what the job costs in compute, less moved by a neighbour's load than
        tokens per wall second (which the criterion names, and the table shows first)."""
        if len(self.cpu_times) < 2:
            return float("nan")
        return self._trained_tokens() / (self.cpu_times[-1] - self.cpu_times[0])

    def step_seconds(self) -> list[float]:
        return [round(b - a, 3) for a, b in zip(self.times, self.times[1:])]

    def step_tokens(self) -> list[int]:
        return [b - a for a, b in zip(self.tokens_at_step, self.tokens_at_step[1:])]

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def peft_model(path: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                            task_type="CAUSAL_LM"))


def hf_arguments(cls, out: str, steps: int, lr: float, **extra):
    return cls(output_dir=out, per_device_train_batch_size=MICRO, gradient_accumulation_steps=ACCUM, max_steps=steps,
               learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
               optim="adamw_torch", save_strategy="no", report_to=[], logging_steps=max(1, steps), use_cpu=True,
               seed=0, data_seed=0, disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False, **extra)


def run_memfit(train, steps: int, lr: float, _out: str, extra: str = ""):
    import memfit

    stack = memfit.Stack.from_spec("lora:r=8,alpha=32,dropout=0,targets=" + "|".join(LORA_TARGETS) + f"+ga{ACCUM}"
                                   + extra)
    model = memfit.load_model("smollm2-135m", stack)
    clock = StepClock(model)
    memfit.train(model, stack, train, memfit.TrainConfig(micro_batch=MICRO, max_steps=steps, lr=lr, warmup=0,
                                                         scheduler="cosine", weight_decay=0.0, max_grad_norm=1.0,
                                                         progress=False, checkpoint_every=None, save_adapter=False))
    return model, clock


def run_hf(train, steps: int, lr: float, out: str):
    from transformers import Trainer, TrainingArguments, default_data_collator

    from memfit.models import resolve_weights

    model = peft_model(resolve_weights("smollm2-135m"))
    clock = StepClock(model)
    Trainer(model=model, args=hf_arguments(TrainingArguments, out, steps, lr), train_dataset=train,
            data_collator=default_data_collator).train()
    return model, clock


def run_trl(train, steps: int, lr: float, out: str):
    from trl import SFTConfig, SFTTrainer

    from memfit.models import load_tokenizer, resolve_weights

    model = peft_model(resolve_weights("smollm2-135m"))
    clock = StepClock(model)
    args = hf_arguments(SFTConfig, out, steps, lr, max_length=SEQ, packing=False, dataset_kwargs={})
    SFTTrainer(model=model, args=args, train_dataset=train, processing_class=load_tokenizer("smollm2-135m")).train()
    return model, clock


def worker(peer: str, steps: int, lr: float, cache: str) -> dict:
    import torch

    from memfit.evaluation import perplexity

    tokenizer, train, pieces = job_data(cache)
    with tempfile.TemporaryDirectory() as out:
        run = {"memfit": run_memfit, "memfit-cce": lambda *a: run_memfit(*a, extra="+cce"), "hf": run_hf,
               "trl": run_trl}[peer]
        model, clock = run(train, steps, lr, out)
    clock.close()
    trained_peak = rss_gib()  # before the evaluation, which has its own peak (logits of whole windows)
    model.eval()
    with torch.no_grad():
        ppl = perplexity(model, pieces, context_length=SEQ, batch_size=MICRO, pad_token_id=tokenizer.pad_token_id)
    return {"peer": peer, "steps": len(clock.times), "tokens_per_s": clock.tokens_per_s(),
            "tokens_per_cpu_s": clock.tokens_per_cpu_s(), "step_seconds": clock.step_seconds(),
            "step_tokens": clock.step_tokens(),
            "rss_before_first_step_gib": clock.rss_before_first_step, "rss_peak_gib": trained_peak,
            "rss_peak_with_eval_gib": rss_gib(),
            "perplexity": ppl.perplexity, "threads": torch.get_num_threads()}


def trl_missing() -> str | None:
    try:
        import trl  # noqa: F401
    except ImportError as exc:
        return f"trl is not importable here ({exc}); `pip install --no-deps trl` adds the third peer"
    return None


def run_round(peer: str, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, "--worker", peer, "--steps", str(args.steps), "--lr",
                           str(args.lr), "--cache", args.cache], capture_output=True, text=True, env=env, cwd=REPO)
    lines = [l for l in done.stdout.splitlines() if l.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{peer} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def table(results: list[dict]) -> str:
    """Medians per peer, and each peer's tokens/s over HF's paired round by round (runs of one round are seconds
    apart, so a slow spell of the machine hits both): the paired median and its range say more than a ratio of
    medians when the same peer's speed moves between rounds."""
    peers = list(dict.fromkeys(r["peer"] for r in results))
    keys = ("tokens_per_s", "tokens_per_cpu_s", "rss_before_first_step_gib", "rss_peak_gib", "perplexity")
    med = {p: {k: statistics.median(r[k] for r in results if r["peer"] == p) for k in keys} for p in peers}
    hf = med.get("hf")
    hf_by_round = {r["round"]: r for r in results if r["peer"] == "hf"}

    def paired(p: str, key: str) -> str:
        ratios = [r[key] / hf_by_round[r["round"]][key] for r in results if r["peer"] == p and r["round"] in hf_by_round]
        return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "-"

    rows = [f"{'peer':<10} {'tokens/s':>9} {'x hf':>6} {'paired x hf [range]':>20} {'tok/CPU-s':>10} "
            f"{'paired x hf':>18} {'RSS before 1st GiB':>19} {'peak RSS GiB':>13} {'x hf':>6} {'perplexity':>11}"]
    for p, m in med.items():
        speed = f"{m['tokens_per_s'] / hf['tokens_per_s']:.2f}" if hf else "-"
        peak = f"{m['rss_peak_gib'] / hf['rss_peak_gib']:.2f}" if hf else "-"
        rows.append(f"{p:<10} {m['tokens_per_s']:9.1f} {speed:>6} {paired(p, 'tokens_per_s'):>20} "
                    f"{m['tokens_per_cpu_s']:10.1f} {paired(p, 'tokens_per_cpu_s'):>18} "
                    f"{m['rss_before_first_step_gib']:19.2f} {m['rss_peak_gib']:13.2f} {peak:>6} {m['perplexity']:11.3f}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    p.add_argument("--rounds", type=int, default=3, help="runs per peer, interleaved")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (the issue's 2 cores)")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "memfit-peer-cpu"), help="text cache")
    p.add_argument("--out", help="write every run's numbers and the medians here (JSON)")
    p.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        from memfit.quiet import quiet_third_party

        with quiet_third_party():  # the same third-party noise filtered for every peer
            print(RESULT_TAG + json.dumps(worker(args.worker, args.steps, args.lr, args.cache)), flush=True)
        return
    peers = list(args.peers)
    if "trl" in peers and (note := trl_missing()):
        print(f"skipping trl: {note}")
        peers.remove("trl")
    from memfit.models import resolve_weights

    resolve_weights("smollm2-135m")  # convert the embedded model once, outside every timed run
    results = []
    for r in range(args.rounds):
        for peer in peers[r % len(peers):] + peers[:r % len(peers)]:  # rotated: no peer always runs first
            results.append({"round": r, **run_round(peer, args)})
            print(json.dumps(results[-1]), flush=True)
    print(f"\nmedians over {args.rounds} round(s), {args.steps} steps each, {args.threads} threads:")
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "settings": vars(args), "environment": environment(),
                                              "medians": table(results)}, indent=2))


def environment() -> dict:
    """What the numbers depend on besides the code: versions, the machine, the date, and how busy the cores were."""
    import platform
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
            "load_average_at_end": os.getloadavg(),  # > the cores: other work shared them, tokens/s say little
            **{name: installed(name) for name in ("memfit", "torch", "transformers", "peft", "accelerate", "trl")}}


if __name__ == "__main__":
    main()
