"""The stacks memfit starts from (and compares by default), written in the strategies' own vocabulary (so no code above strategies/ spells a
strategy name): the CPU demo's seed stack and the base `stack: auto` adds strategies to.

CPU seed: the sweep's pick (benchmarks/results/h200-2026-12-02/sweeps/cpu_demo): LoRA on every linear layer of the
family (`all-linear`, resolved per family), no dropout, no checkpointing (memory is not the limit for a 135M model on a
host, and recomputation cost ~40 % of the step time), accumulation to the effective batch, and the chunked lm_head +
cross-entropy (`cce`): the same loss, but the logits' gradient is formed in the forward instead of storing the
(tokens x vocab) log-probabilities and allocating their gradient in the backward, fresh pages the host faults in at
every micro-batch; on the CPU peer job +8 % tokens/s at 0.25 GiB less peak (medians of 4 rounds)
(benchmarks/results/peer_cpu_2026-12-05.md).
"""

CPU_SEED_STACK = "lora:targets=all-linear,dropout=0+cce+ga:effective_batch={batch}"
# the base the auto search adds strategies to: bf16 LoRA on CUDA, fp32 LoRA on CPU
AUTO_BASE = {"cuda": "lora+bf16", "cpu": "lora"}
# `memfit plan`'s default stack (the seed's 4-bit QLoRA) and `memfit bench`'s default comparison
PLAN_STACK = "lora+q4+bf16+gc+ga8+adam8"
BENCH_STACKS = ["lora+bf16", "lora+bf16+gc", "lora+bf16+gc+cce", PLAN_STACK]
