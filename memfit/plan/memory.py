"""Analytic memory model: peak training memory as a function of micro-batch for a stack on a Llama config.

peak(b) = static + b * seq * per_token, where
  static    = weights (by dtype / quantisation) + trainable params + grads + optimizer states + workspace
  per_token = activations kept for backward (all layers, or only checkpointed layer inputs)
              + one layer's recompute working set (when checkpointing) + the logits/loss path.
The per-layer coefficients count what HF's Llama layer saves for backward (tests/plan/test_memory.py checks them against
the bytes `saved_tensors_hooks` sees, one layer isolated as the difference of a 3- and a 2-layer model; the compiled
variant and the backward transients are calibrated on H100 peaks, benchmarks/results/README.md). Strategies edit the
estimate through their `estimate_memory` hook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..core.units import GiB

ATTN_BACKWARD_FP32_COPIES = 4.0  # see per_token_bytes
FUSED_BACKWARD_FP32_SAVING = 1.8  # see per_token_bytes


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


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
    compute_bytes: int = 4  # residual stream / activation element size
    weight_bytes: float = 4.0  # bytes per non-quantized weight
    linear_weight_bits: float | None = None  # decoder linear weights when quantized
    trainable_params: int | None = None  # None: full fine-tune (every parameter)
    trainable_bytes: float | None = None  # bytes per trainable param (None: same as weights)
    optimizer_bytes_per_param: float | None = None  # None: torch AdamW, two moments in the parameter dtype
    small_tensor_optimizer_bytes: float | None = None
    checkpointed_layers: int = 0
    offloaded: bool = False  # checkpointed layer inputs live in host memory
    mlp_tile_tokens: int = 0  # tiled MLP: intermediates exist for this many tokens at a time (0: not tiled)
    lora_dropout: bool = True
    fused_elementwise: bool = False  # torch.compile'd layer parts: norms and SiLU are recomputed, not saved
    logits: str = "full"  # "full" (HF path) or "chunked"
    loss_chunk_tokens: int = 1024
    # the chunked loss implementation's own transient (cce's estimate_memory sets it from ops/cross_entropy_kernels)
    loss_kernel_bytes: float | None = None  # None: memfit's chunk, vocab x chunk x 12 bytes
    loss_kernel_bytes_per_token: float = 0.0
    workspace_bytes: int = 512 * 1024**2  # cuBLAS workspaces, allocator slack, CUDA graphs of kernels
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config, seq_len: int = 512) -> "MemoryEstimate":
        heads = config.num_attention_heads
        return cls(n_layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=config.intermediate_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                   vocab=config.vocab_size, tied=bool(getattr(config, "tie_word_embeddings", False)),
                   seq_len=seq_len)

    # ---- hooks' vocabulary ---------------------------------------------------------------------
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

    def lora_params(self, r: int, targets) -> int:
        h, a, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = {"q_proj": (h, a), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (a, h),
                  "gate_proj": (h, self.intermediate), "up_proj": (h, self.intermediate),
                  "down_proj": (self.intermediate, h)}
        return self.n_layers * sum(r * (i + o) for t, (i, o) in shapes.items() if t in targets)

    # ---- parameter counts ----------------------------------------------------------------------
    @property
    def linear_params(self) -> int:
        h, a, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.n_layers * (h * a * 2 + h * kv * 2 + 3 * h * self.intermediate)

    @property
    def other_params(self) -> int:
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + (2 * self.n_layers + 1) * self.hidden

    # ---- the model -----------------------------------------------------------------------------
    def static_bytes(self) -> dict[str, float]:
        lin_b = self.linear_weight_bits / 8 if self.linear_weight_bits else self.weight_bytes
        n_train = self.trainable_params if self.trainable_params is not None else self.linear_params + self.other_params
        t_bytes = self.trainable_bytes if self.trainable_bytes is not None else self.weight_bytes
        adapters = n_train * t_bytes if self.trainable_params is not None else 0.0
        return {"weights": self.linear_params * lin_b + self.other_params * self.weight_bytes + adapters,
                "gradients": n_train * t_bytes,
                "optimizer": n_train * (self.optimizer_bytes_per_param or 2 * t_bytes),
                "workspace": float(self.workspace_bytes)}

    def layer_activation_bytes_per_token(self) -> float:
        """Bytes one decoder layer keeps for backward per token (flash-style attention, no T x T matrix)."""
        return sum(self._layer_parts())

    def _layer_parts(self) -> tuple[float, float]:
        """(attention half: norms, projections' inputs, attention; MLP half) of what one layer keeps per token."""
        s, h, i = self.compute_bytes, self.hidden, self.intermediate
        a, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        full = self.trainable_params is None
        fused = self.fused_elementwise
        # eager RMSNorm keeps an fp32 copy of its input and the rsqrt; compiled, only the rsqrt (the input is recomputed)
        norms = 2 * (4 + (0 if fused else 4 * h))
        if full:  # every linear keeps its input for the weight gradient
            proj = s * (2 * h + a + i)
        else:  # frozen base: each LoRA A keeps its own copy of its input (peft casts x to the fp32 adapter dtype and
            # autocast casts it back, per module), plus the dropout mask (1 byte; 2 per element measured compiled)
            per_input = s + ((2 if fused else 1) if self.lora_dropout else 0)
            proj = per_input * (3 * h + a)
        attention = s * (2 * a + 2 * kv) + 4 * self.heads  # q, k, v, out, logsumexp
        mlp = s * (2 if fused else 3) * i  # gate, up and (eager only) silu(gate)
        if self.mlp_tile_tokens:  # only the MLP's input is kept; its linears' inputs are rebuilt per chunk
            proj -= s * (h + i) if full else 0
            mlp = s * h
        return float(norms + proj + attention), float(mlp)

    def per_token_bytes(self) -> dict[str, float]:
        s, h = self.compute_bytes, self.hidden
        attention_half, mlp_saved = self._layer_parts()
        layer = attention_half + mlp_saved
        ckpt = self.checkpointed_layers
        # offloaded: the input being recomputed and the next one, prefetched, are still on the device
        kept = (self.n_layers - ckpt) * layer + (2 * s * h if self.offloaded else ckpt * s * h)
        # One layer's activations rebuilt at a time in backward; its peak is the larger of two phases. MLP phase: the
        # whole layer's saved tensors plus the MLP gradients (gate and up) in flight. Attention phase (the MLP's are
        # freed): fp32 gradient transients of norm backward, flash attention's dq accumulator and LoRA's fp32 input
        # gradients, ~4 hidden-size fp32 tensors per token, calibrated on the H100 peaks of offload + tiled MLP
        # (seq 512 x 800/900, 2048 x 200), where this phase decides because the MLP phase is tiled away.
        mlp_grads = 0 if self.mlp_tile_tokens else 2 * s * self.intermediate
        attention_phase = attention_half + ATTN_BACKWARD_FP32_COPIES * 4 * h
        # compiled, norm backward's fp32 intermediates are fused away in either phase (H100: seed + cce at 128 and
        # offload + tiled MLP at 800, both ~1.8 hidden-size fp32 tensors per token below eager beyond the saved norms)
        fused = FUSED_BACKWARD_FP32_SAVING * 4 * h if self.fused_elementwise else 0.0
        recompute = max(layer + mlp_grads, attention_phase) - fused if ckpt else 0.0
        if self.logits == "full":  # logits in compute dtype, their fp32 copy, the saved log-softmax, and ~1 byte
            logits = self.vocab * (s + 4 + 4 + 1)  # per entry of gradient transients (measured on an H100, seq 512)
        else:  # only the hidden states and their gradient; logits exist per chunk only
            logits = 2 * s * h
        return {"activations": kept, "recompute": recompute, "logits": float(logits),
                "embeddings": float(2 * s * h)}

    def _loss_kernel_fixed_bytes(self) -> float:
        if self.logits != "chunked":
            return 0.0
        return self.vocab * self.loss_chunk_tokens * 12.0 if self.loss_kernel_bytes is None else self.loss_kernel_bytes

    def _loss_kernel_token_bytes(self) -> float:
        return self.loss_kernel_bytes_per_token if self.logits == "chunked" else 0.0

    def peak_bytes(self, micro_batch: int) -> float:
        per_token = sum(self.per_token_bytes().values())
        chunk = self._loss_kernel_fixed_bytes() + micro_batch * self.seq_len * self._loss_kernel_token_bytes()
        chunk += self.mlp_tile_tokens * 5 * self.intermediate * self.compute_bytes  # 3 intermediates + 2 gradients
        return sum(self.static_bytes().values()) + micro_batch * self.seq_len * per_token + chunk

    def max_micro_batch(self, budget_bytes: float) -> int:
        per_sample = self.seq_len * (sum(self.per_token_bytes().values()) + self._loss_kernel_token_bytes())
        free = budget_bytes - self.peak_bytes(0)
        return max(0, int(free // per_sample))

    def breakdown(self, micro_batch: int) -> dict[str, float]:
        out = {k: v / GiB for k, v in self.static_bytes().items()}
        out.update({k: micro_batch * self.seq_len * v / GiB for k, v in self.per_token_bytes().items()})
        out["total"] = self.peak_bytes(micro_batch) / GiB
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(stack, config, seq_len: int, ctx=None) -> MemoryEstimate:
    """The analytic estimate for `stack` on a model `config` (a transformers config)."""
    est = MemoryEstimate.from_config(config, seq_len)
    ctx = ctx or stack.context()
    stack.estimate_memory(est, ctx)
    return est
