"""What each supported family changes in the baseline (Llama) memory terms, owned by the family.

Each coefficient counts what the family's HF layer saves for backward, per token, as `saved_tensors_hooks` sees it
(tests/plan/test_memory.py checks every family within 5 %, one layer isolated as the difference of a 3- and a
2-layer model, in bf16 autocast with and without LoRA):
  Gemma (2 and 3)  four norms per layer; its RMSNorm computes in fp32 and keeps its fp32 normalised input when the
                   weight trains; the scaled embeddings are one more hidden-size tensor per token. GeGLU saves what
                   SwiGLU saves (gate, up, act(gate)): the baseline's 'mlp' term holds for both.
  Gemma 2          eager attention (transformers refuses SDPA): q and the heads-wide repeated k and v, the
                   T x T scores after the tanh soft-cap, their fp32 softmax and its compute-dtype copy, and
                   o_proj's own contiguous input; the final-logit soft-cap keeps one more vocabulary-wide tensor.
  Qwen3, Gemma 3   RMSNorm over every q and k head (fp32 input copy and rsqrt; the normalised copy when trained).
  Phi-3            fused qkv_proj: v is a view of the whole q|k|v output, which stays alive; o_proj's input is
                   its own copy. gate_up_proj's output is saved once (gate and up are views): same bytes as Llama.
  sliding windows  (SDPA) a layer whose window is shorter than the sequence gets an explicit mask: SDPA then keeps
                   the mask (compute dtype, T per token) and takes k and v repeated to every head, not grouped.
  Qwen2            q/k/v biases: parameters only (a Linear with bias saves nothing more).
"""

from __future__ import annotations

from ..core.families import (FAMILIES, attention_logit_softcap, family_of, final_logit_softcap, qkv_bias,
                              sliding_layers, sliding_window)


def family_fields(config) -> dict:
    """The MemoryEstimate fields a family's config sets (refused here if memfit does not support the family)."""
    return dict(family=family_of(config).name, qkv_bias=qkv_bias(config), final_softcap=final_logit_softcap(config),
                attention_softcap=attention_logit_softcap(config), sliding_layers=sliding_layers(config),
                sliding_window=sliding_window(config))


def layer_small_params(e) -> int:
    """One layer's parameters outside its linear weights: norms, q/k norms, q/k/v biases."""
    family = FAMILIES[e.family]
    qk_norms = 2 * e.head_dim if family.qk_norm else 0
    bias = e.attention_width + 2 * e.kv_width if e.qkv_bias else 0
    return family.norms_per_layer * e.hidden + qk_norms + bias


def full_finetune(e) -> bool:
    """Every parameter trains (no adapter strategy froze the base)."""
    return e.trainable_params is None


def _gemma_norms(e) -> float:
    n = FAMILIES[e.family].norms_per_layer
    return n * (4 + 4 * e.hidden + (4 * e.hidden if full_finetune(e) else 0))


def _qk_norms(e) -> float:
    """q and k normalised per head: fp32 input copy and one rsqrt per head, plus the normalised copy when trained
    (fp32 in Gemma's RMSNorm, compute dtype in Llama-style RMSNorm)."""
    width, heads = e.attention_width + e.kv_width, e.heads + e.kv_heads
    trained = (4 if FAMILIES[e.family].norms_per_layer == 4 else e.compute_bytes) if full_finetune(e) else 0
    return 4 * width + 4 * heads + trained * width


def _eager_attention(e) -> float:
    """Gemma 2's eager attention in place of the flash-style 'attention' term."""
    cb, a = e.compute_bytes, e.attention_width
    scores = e.heads * e.seq_len * ((cb if e.attention_softcap else 0) + 4 + (cb if cb < 4 else 0))
    o_input = cb * a if full_finetune(e) else 0
    return cb * 3 * a + scores + o_input


def _masked_share(e) -> float:
    """The share of layers that get an explicit mask (a window shorter than the sequence; else plain causal)."""
    if not e.sliding_window or e.seq_len < e.sliding_window:
        return 0.0
    return e.sliding_layers / e.n_layers


def _fused_qkv(e) -> float:
    """v, a view of the q|k|v output, keeps all of it alive, unless a masked layer repeats v to every head (a copy;
    the repeat is counted by the masks' term)."""
    cb = e.compute_bytes
    view_share = 1.0 - (_masked_share(e) if e.kv_heads < e.heads else 0.0)
    return view_share * cb * (e.attention_width + e.kv_width) + (cb * e.attention_width if full_finetune(e) else 0)


def _sliding_masks(e) -> float:
    return _masked_share(e) * e.compute_bytes * (e.seq_len + 2 * (e.attention_width - e.kv_width))


def family_terms(e) -> None:
    family = FAMILIES[e.family]
    add = lambda name, kind, fn: e.set_term(name, kind, fn, family.name)  # noqa: E731
    if family.norms_per_layer == 4:
        add("norms", "layer_attn", _gemma_norms)
    if family.scaled_embeddings:
        add("scaled_embeddings", "token", lambda e: float(e.compute_bytes * e.hidden))
    if family.qk_norm:
        add("qk_norms", "layer_attn", _qk_norms)
    if family.attention == "eager":
        add("attention", "layer_attn", _eager_attention)
    elif e.sliding_layers:
        add("sliding_window_masks", "layer_attn", _sliding_masks)
    if family.fused:
        add("fused_qkv", "layer_attn", _fused_qkv)
    if e.final_softcap:
        # tanh's output is saved (tests/plan/test_memory.py) and the capped logits exist beside the raw ones
        add("logit_softcap", "token", lambda e: float(2 * e.compute_bytes * e.vocab))
