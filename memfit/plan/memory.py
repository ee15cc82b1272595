"""Analytic memory model: peak training memory as a function of micro-batch for a stack on a supported model config.

The estimate is an open accumulator of *named terms*, each owned by whoever set it (the baseline Llama formula here
with what each family changes in plan/family_terms.py, owned by the family,
or a strategy's `estimate_memory(estimate, ctx)` hook, which adds or replaces its own terms):
  static      bytes that do not scale with the batch (weights, gradients, optimizer states, workspace)
  layer_attn / layer_mlp   what one decoder layer saves for backward per token (attention half, MLP half)
  token       per-token bytes outside single layers (all layers' activations, the recompute working set, logits)
  working     ingredients of the recompute working set (not summed by themselves; `recompute` reads them)
  transient   bytes that exist once at the peak whatever the batch (a loss chunk, an MLP tile)
  host        host-memory bytes per token (reported, not part of the device peak)
peak(b) = static + transient + b * seq * token. `shard(engine, world)` rewrites the static terms for the engine that
trains (ZeRO/FSDP divide what they shard by the world size and add what they gather back; DDP adds its buckets).
Terms are functions of the estimate, evaluated when asked, so a term set by an early strategy sees what later ones
changed (compute dtype, trainable parameters, published `facts`). The per-layer coefficients count what each family's
HF layer saves for backward (tests/plan/test_memory.py checks them against `saved_tensors_hooks`, one layer isolated
as the difference of a 3- and a 2-layer model; compiled variant and backward transients: H100 peaks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .family_terms import family_fields, family_terms, full_finetune, layer_small_params

GiB = 1024**3
ATTN_BACKWARD_FP32_COPIES = 4.0  # see _recompute
KINDS = ("static", "layer_attn", "layer_mlp", "token", "working", "transient", "host")


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@dataclass
class Term:
    kind: str  # one of KINDS
    bytes: Callable[["MemoryEstimate"], float]  # bytes (per token for layer/token/working kinds) from the estimate
    owner: str  # the family ("llama", "qwen3", ...) for the baseline, else the strategy's name


@dataclass
class MemoryEstimate:
    n_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    seq_len: int = 512
    family: str = "llama"  # a key of memfit.core.families.FAMILIES: what differs from Llama, and the terms' owner
    qkv_bias: bool = False
    final_softcap: float | None = None  # Gemma 2: logits soft-capped (tanh) before the loss
    attention_softcap: float | None = None  # Gemma 2: attention scores soft-capped (eager attention)
    sliding_layers: int = 0  # layers attending within a window (their own mask once seq_len reaches the window)
    sliding_window: int | None = None
    compute_bytes: int = 4  # residual stream / activation element size
    weight_bytes: float = 4.0  # bytes per non-quantized weight
    linear_weight_bits: float | None = None  # decoder linear weights when quantized
    trainable_params: int | None = None  # None: full fine-tune (every parameter)
    trainable_bytes: float | None = None  # bytes per trainable param (None: same as weights)
    optimizer_bytes_per_param: float | None = None  # None: torch AdamW, two moments in the parameter dtype
    small_tensor_optimizer_bytes: float | None = None
    checkpointed_layers: int = 0
    workspace_bytes: int = 512 * 1024**2  # cuBLAS workspaces, allocator slack, CUDA graphs of kernels
    engine: str = "single"  # how static state is spread over processes: one of SHARDED (set by `shard`)
    world: int = 1
    facts: dict[str, Any] = field(default_factory=dict)  # what a strategy publishes for other strategies' terms
    terms: dict[str, Term] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.terms:
            _baseline_terms(self)

    @classmethod
    def from_config(cls, config, seq_len: int = 512) -> "MemoryEstimate":
        """The estimate of `config`'s family (refused if memfit does not support the family)."""
        family = family_fields(config)
        heads = config.num_attention_heads
        return cls(n_layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=config.intermediate_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                   vocab=config.vocab_size, tied=bool(getattr(config, "tie_word_embeddings", False)),
                   seq_len=seq_len, **family)

    # ---- hooks' vocabulary ---------------------------------------------------------------------
    def set_term(self, name: str, kind: str, bytes_of: Callable[["MemoryEstimate"], float], owner: str) -> None:
        """Add or replace the term `name`; `bytes_of(estimate)` is evaluated whenever the estimate is read."""
        if kind not in KINDS:
            raise ValueError(f"memory term {name!r}: kind {kind!r} is not one of {KINDS}")
        self.terms[name] = Term(kind, bytes_of, owner)

    def term(self, name: str) -> float:
        """The bytes of one term (0 when nobody set it)."""
        t = self.terms.get(name)
        return float(t.bytes(self)) if t else 0.0

    def set_compute_dtype(self, dtype: torch.dtype, weights_in_compute: bool = True) -> None:
        self.compute_bytes = _bytes(dtype)
        if weights_in_compute:
            self.weight_bytes = float(self.compute_bytes)

    def set_linear_weight_bits(self, bits: float) -> None:
        self.linear_weight_bits = bits

    def set_trainable(self, n_params: int, bytes_per_param: float) -> None:
        self.trainable_params, self.trainable_bytes = n_params, bytes_per_param

    def set_optimizer_bytes_per_param(self, b: float, small_tensor_bytes: float | None = None) -> None:
        self.optimizer_bytes_per_param, self.small_tensor_optimizer_bytes = b, small_tensor_bytes

    def shard(self, engine: str, world: int) -> None:
        """Per-process static memory under `engine` on `world` processes. Applied after every strategy's hook (the
        wrapped terms read whatever the strategies set); world 1 or engine 'single' changes nothing."""
        if engine not in SHARDED:
            raise ValueError(f"engine {engine!r} is not one of {sorted(SHARDED)}")
        if self.engine != "single":
            raise ValueError(f"this estimate is already sharded ({self.engine} x {self.world})")
        self.engine, self.world = engine, int(world)
        if self.world <= 1:
            return
        for name in SHARDED[engine]:
            t = self.terms[name]
            self.terms[name] = Term(t.kind, lambda e, whole=t.bytes: whole(e) / e.world, f"{t.owner} / {engine}")
        if engine == "ddp":
            # DDP's reducer copies every gradient into flat bucket buffers (25 MiB each, 1 MiB for the first) that
            # together cover all trainable parameters: one more gradient-sized copy (gradient_as_bucket_view=False,
            # accelerate's default)
            self.set_term("ddp_buckets", "static", lambda e: _n_trainable(e) * _trainable_bytes(e), engine)
        if engine in ("zero3", "fsdp"):
            self.set_term("gathered_layers", "static", _gathered, engine)

    # ---- parameter counts ----------------------------------------------------------------------
    @property
    def attention_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def linear_params(self) -> int:
        h, a, kv = self.hidden, self.attention_width, self.kv_width
        return self.n_layers * (h * a * 2 + h * kv * 2 + 3 * h * self.intermediate)

    @property
    def layer_small_params(self) -> int:
        return layer_small_params(self)

    @property
    def other_params(self) -> int:
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.hidden + self.n_layers * self.layer_small_params

    # ---- reading the terms ---------------------------------------------------------------------
    def _sum(self, kind: str) -> float:
        return sum(self.term(n) for n, t in self.terms.items() if t.kind == kind)

    def static_bytes(self) -> dict[str, float]:
        return {n: self.term(n) for n, t in self.terms.items() if t.kind == "static"}

    def layer_parts(self) -> tuple[float, float]:
        """(attention half: norms, projections' inputs, attention; MLP half) of what one layer keeps per token."""
        return self._sum("layer_attn"), self._sum("layer_mlp")

    def layer_activation_bytes_per_token(self) -> float:
        """Bytes one decoder layer keeps for backward per token (flash-style attention, no T x T matrix)."""
        return sum(self.layer_parts())

    def per_token_bytes(self) -> dict[str, float]:
        return {n: self.term(n) for n, t in self.terms.items() if t.kind == "token"}

    def peak_bytes(self, micro_batch: int) -> float:
        per_token = sum(self.per_token_bytes().values())
        return self._sum("static") + self._sum("transient") + micro_batch * self.seq_len * per_token

    def max_micro_batch(self, budget_bytes: float) -> int:
        per_sample = self.seq_len * sum(self.per_token_bytes().values())
        free = budget_bytes - self.peak_bytes(0)
        return max(0, int(free // per_sample))

    def breakdown(self, micro_batch: int) -> dict[str, float]:
        """GiB per device term at `micro_batch` (static, transient, and per-token terms times the tokens), the total,
        and host terms under 'host:<name>'."""
        tokens = micro_batch * self.seq_len
        out = {}
        for name, t in self.terms.items():
            if t.kind in ("static", "transient"):
                out[name] = self.term(name) / GiB
            elif t.kind in ("token", "host"):
                out[name if t.kind == "token" else f"host:{name}"] = tokens * self.term(name) / GiB
        out["total"] = self.peak_bytes(micro_batch) / GiB
        return out

    def contributions(self, micro_batch: int) -> str:
        """The breakdown in MiB, one line per term naming who contributed it (the family, 'qwen3', or a strategy)."""
        gib = self.breakdown(micro_batch)
        lines = [f"{name:<22} {gib[key] * 1024:10.1f} MiB  {t.owner}" for name, t in self.terms.items()
                 for key in ([name] if t.kind != "host" else [f"host:{name}"]) if key in gib]
        return "\n".join(lines + [f"{'total':<22} {gib['total'] * 1024:10.1f} MiB"])

    def to_dict(self) -> dict:
        fixed = {k: v for k, v in vars(self).items() if k not in ("terms", "facts")}
        return {**fixed, "facts": dict(self.facts), "terms": {n: {"kind": t.kind, "owner": t.owner, "bytes": self.term(n)}
                                                             for n, t in self.terms.items()}}


# engine -> the static terms it divides by the world size (ZeRO-1/2/3 as DeepSpeed defines the stages; FSDP2 shards
# like ZeRO-3)
SHARDED = {"single": (), "ddp": (), "zero1": ("optimizer",), "zero2": ("optimizer", "gradients"),
           "zero3": ("optimizer", "gradients", "weights"), "fsdp": ("optimizer", "gradients", "weights")}


def _gathered(e: MemoryEstimate) -> float:
    """What ZeRO-3/FSDP2 hold unsharded at their peak: two decoder layers' full weights (the one computing and the
    one prefetched) and one layer's full gradients before its reduce-scatter, plus the root unit (embeddings, final
    norm, lm_head), which FSDP2 keeps gathered from forward to backward (the root is not resharded after forward)."""
    lin_b = e.linear_weight_bits / 8 if e.linear_weight_bits else e.weight_bytes
    layer_weights = e.linear_params / e.n_layers * lin_b + e.layer_small_params * e.weight_bytes
    root_params = e.other_params - e.n_layers * e.layer_small_params
    full_finetune = e.trainable_params is None
    layer_grads = (e.linear_params / e.n_layers + e.layer_small_params if full_finetune
                   else e.trainable_params / e.n_layers)
    root_grads = root_params if full_finetune else 0
    return (2 * layer_weights + root_params * e.weight_bytes
            + (layer_grads + root_grads) * _trainable_bytes(e))


def _weights(e: MemoryEstimate) -> float:
    lin_b = e.linear_weight_bits / 8 if e.linear_weight_bits else e.weight_bytes
    adapters = e.trainable_params * _trainable_bytes(e) if e.trainable_params is not None else 0.0
    return e.linear_params * lin_b + e.other_params * e.weight_bytes + adapters


def _n_trainable(e: MemoryEstimate) -> int:
    return e.trainable_params if e.trainable_params is not None else e.linear_params + e.other_params


def _trainable_bytes(e: MemoryEstimate) -> float:
    return e.trainable_bytes if e.trainable_bytes is not None else e.weight_bytes


def _recompute(e: MemoryEstimate) -> float:
    """One layer's activations rebuilt at a time in backward; its peak is the larger of two phases. MLP phase: the
    whole layer's saved tensors plus the MLP gradients in flight ('mlp_gradients'). Attention phase (the MLP's are
    freed): fp32 gradient transients of norm backward, flash attention's dq accumulator and LoRA's fp32 input
    gradients, ~4 hidden-size fp32 tensors per token, calibrated on the H100 peaks of offload + tiled MLP
    (seq 512 x 800/900, 2048 x 200), where this phase decides because the MLP phase is tiled away. Strategies that
    fuse backward work away say so with a 'recompute_saving' term."""
    if not e.checkpointed_layers:
        return 0.0
    attention_half, mlp_saved = e.layer_parts()
    attention_phase = attention_half + ATTN_BACKWARD_FP32_COPIES * 4 * e.hidden
    return max(attention_half + mlp_saved + e.term("mlp_gradients"), attention_phase) - e.term("recompute_saving")


def _baseline_terms(e: MemoryEstimate) -> None:
    """The baseline: HF Llama, eager, every linear trainable, the full logits path; then what the family changes
    (plan/family_terms.py). Every term is owned by the family (`qwen3`, not `llama`, for a Qwen3 config)."""
    add = lambda name, kind, fn: e.set_term(name, kind, fn, e.family)  # noqa: E731
    add("weights", "static", _weights)
    add("gradients", "static", lambda e: _n_trainable(e) * _trainable_bytes(e))
    add("optimizer", "static", lambda e: _n_trainable(e) * (e.optimizer_bytes_per_param or 2 * _trainable_bytes(e)))
    add("workspace", "static", lambda e: float(e.workspace_bytes))
    # eager RMSNorm keeps an fp32 copy of its input and the rsqrt; when its weight trains, also the normalised input
    # in the compute dtype (for the weight's gradient)
    add("norms", "layer_attn", lambda e: 2 * (4 + 4 * e.hidden + e.compute_bytes * e.hidden * full_finetune(e)))
    # every linear keeps its input for the weight gradient (o_proj's input is attention's saved output, counted there)
    add("projections", "layer_attn", lambda e: e.compute_bytes * (2 * e.hidden + e.intermediate))
    add("attention", "layer_attn",  # q, k, v, out, logsumexp
        lambda e: e.compute_bytes * (2 * e.attention_width + 2 * e.kv_width) + 4 * e.heads)
    add("mlp", "layer_mlp", lambda e: e.compute_bytes * 3 * e.intermediate)  # gate, up, silu(gate)
    add("mlp_gradients", "working", lambda e: 2 * e.compute_bytes * e.intermediate)  # gate and up gradients
    add("activations", "token", lambda e: (e.n_layers - e.checkpointed_layers) * e.layer_activation_bytes_per_token())
    add("checkpointed_inputs", "token", lambda e: e.checkpointed_layers * e.compute_bytes * e.hidden)
    add("recompute", "token", _recompute)
    # logits in compute dtype, their fp32 copy, the saved log-softmax, and ~1 byte per entry of gradient transients
    # (measured on an H100, seq 512)
    add("logits", "token", lambda e: float(e.vocab * (e.compute_bytes + 4 + 4 + 1)))
    add("embeddings", "token", lambda e: float(2 * e.compute_bytes * e.hidden))
    family_terms(e)


def estimate(stack, config, seq_len: int, ctx=None, engine: str = "single", world: int = 1) -> MemoryEstimate:
    """The analytic estimate for `stack` on a model `config` (a transformers config), per process of `world` under
    `engine` (a key of SHARDED)."""
    est = MemoryEstimate.from_config(config, seq_len)
    ctx = ctx or stack.context()
    stack.estimate_memory(est, ctx)
    est.shard(engine, world)
    return est
