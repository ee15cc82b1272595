"""quant4bit_fused on a tiny Llama, fp32 on the CPU: the same logits, gradients and training losses as peft's LoRA
over bitsandbytes' Linear4bit (NF4, double quant), peft still finds its layers, the adapter saves, loads and merges
as a plain q4 run's, and compile traces a decoder layer without graph breaks and keeps no dequantized weight
for backward."""

from __future__ import annotations

import pytest
import torch

import memfit
from memfit import Stack, TrainConfig
from memfit.core.protocol import StackError
from _models import random_blocks, tiny_model

bnb = pytest.importorskip("bitsandbytes")

PLAIN, FUSED = "lora+q4", "lora+q4+q4fused"


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_model().save_pretrained(path)
    return str(path)


def layers_of(model):
    return model.get_base_model().model.layers


def trained_lora_b(model):  # LoRA's B starts at zero: give it values so the branch (and its gradients) count
    g = torch.Generator().manual_seed(3)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def step(model, ids, seed=5):
    """One forward/backward in training mode (dropout on, the same draws for both paths): logits and grads."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fused", ["q4fused", "q4fused:keep_weight=true"])
@pytest.mark.parametrize("gc", ["", "+gc"])
def test_logits_and_adapter_gradients_equal_the_bitsandbytes_path(saved_tiny, fused, gc):
    plain = trained_lora_b(memfit.load_model(saved_tiny, Stack.from_spec(PLAIN + gc)))
    model = trained_lora_b(memfit.load_model(saved_tiny, Stack.from_spec(f"lora+q4+{fused}{gc}")))
    attn, mlp = layers_of(model)[0].self_attn, layers_of(model)[0].mlp
    assert type(attn.q_proj).__name__ == "FusedLoRALinear4bit" and type(mlp.up_proj).__name__ == "FusedLinear4bit"
    ids = torch.randint(3, 128, (2, 24), generator=torch.Generator().manual_seed(0))
    (want, want_grads), (got, got_grads) = step(plain, ids), step(model, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got_grads.keys() == want_grads.keys() and len(got_grads) == 16  # A and B of q/k/v/o in both layers
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_two_training_steps_give_the_same_losses_eager_and_compiled(saved_tiny):
    losses = []  # aot_eager: AOTAutograd traces the fused Function's backward too, without inductor's CPU codegen
    for spec in (PLAIN, FUSED + "+gc", FUSED + "+gc+compile:backend=aot_eager"):
        model = memfit.load_model(saved_tiny, Stack.from_spec(spec))
        res = memfit.train(model, Stack.from_spec(spec), random_blocks(8, 24),
                           TrainConfig(micro_batch=4, max_steps=2, lr=1e-2, warmup=0, progress=False))
        losses.append(res.losses)
    assert len(losses[0]) == 2
    for other in losses[1:]:
        torch.testing.assert_close(torch.tensor(other), torch.tensor(losses[0]), rtol=1e-5, atol=1e-6)


def test_peft_still_finds_its_layers_and_restore_puts_the_classes_back(saved_tiny):
    stack = Stack.from_spec(FUSED)
    model = trained_lora_b(memfit.load_model(saved_tiny, stack))
    ids = torch.randint(3, 128, (1, 16), generator=torch.Generator().manual_seed(0))
    model.train()  # eval mode on a CPU would send bnb's own layers through its bf16 inference kernel
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():  # peft finds the fused layers by isinstance: the base really runs bare
            bare = model(input_ids=ids).logits
        plain = memfit.load_model(saved_tiny, Stack.from_spec(PLAIN)).train()
        torch.testing.assert_close(bare, plain(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    assert (adapted - bare).abs().max() > 1e-3
    stack.get("quant4bit_fused").restore_model(model, stack.context("cpu"))
    assert type(layers_of(model)[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert type(layers_of(model)[0].mlp.up_proj) is bnb.nn.Linear4bit


def test_the_saved_adapter_loads_and_merges_like_a_plain_q4_runs(saved_tiny, tmp_path):
    from memfit.recipes.finetune import FinetuneConfig
    from memfit.recipes.merge import merged_model
    from memfit.recipes.saved_run import SavedRun, load_trained

    model = trained_lora_b(memfit.load_model(saved_tiny, Stack.from_spec(FUSED)))
    model.save_pretrained(tmp_path / "adapter")
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    run = SavedRun(tmp_path, {}, FinetuneConfig(model=saved_tiny, stack=FUSED), FUSED)
    reloaded = load_trained(run, as_trained=False, device=torch.device("cpu")).eval()
    assert {n: p for n, p in reloaded.named_parameters() if "lora_" in n}.keys() == saved.keys()
    for n, p in reloaded.named_parameters():
        if "lora_" in n:
            torch.testing.assert_close(p, saved[n], rtol=0, atol=0)
    merged = merged_model(run, torch.device("cpu")).eval()
    ids = torch.randint(3, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, reloaded(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    as_trained = load_trained(run, device=torch.device("cpu"))  # the 4-bit base the run trained on, plus the adapter
    assert type(layers_of(as_trained)[0].self_attn.q_proj.base_layer) is bnb.nn.Linear4bit


def test_compile_traces_the_fused_layers_without_graph_breaks(saved_tiny):
    model = memfit.load_model(saved_tiny, Stack.from_spec(FUSED)).train()
    layer = layers_of(model)[0]
    x = torch.randn(2, 16, 64, requires_grad=True)
    rope = model.get_base_model().model.rotary_emb(x, torch.arange(16)[None].expand(2, -1))
    try:
        for part, kwargs in ((layer.self_attn, dict(hidden_states=x, position_embeddings=rope, attention_mask=None)),
                             (layer.mlp, dict(x=x))):
            explained = torch._dynamo.explain(part)(**kwargs)
            assert explained.graph_break_count == 0, explained.break_reasons
    finally:
        torch._dynamo.reset()


def test_it_needs_quant4bit_refuses_sharded_weights_and_knows_its_memory_terms():
    from memfit.core.launch import Launch

    with pytest.raises(StackError, match="add 'q4'"):
        Stack.from_spec("lora+q4fused")
    fused = Stack.from_spec(FUSED).get("quant4bit_fused")
    assert fused.check_launch(None, Launch("MULTI_GPU", 2)) == []
    with pytest.raises(StackError, match="drop 'q4fused'"):
        fused.check_launch(None, Launch("FSDP", 2, fsdp_version=2))
    from memfit.plan.memory import estimate
    from _models import tiny_config

    cfg = tiny_config()
    plain, fused = (estimate(Stack.from_spec(s), cfg, 64) for s in ("lora+q4+bf16+gc", "lora+q4+q4fused+bf16+gc"))
    kept = estimate(Stack.from_spec("lora+q4+q4fused:keep_weight=true+bf16+gc1"), cfg, 64)
    assert fused.terms["projections"].owner == "quant4bit_fused"
    assert fused.terms["dequantized_weights"].kind == "transient"
    layer_weights = fused.linear_params / fused.n_layers * 2  # bf16
    # one uncheckpointed layer keeps its 16-bit weights to backward, the checkpointed one's exist for its recompute
    assert kept.term("dequantized_weights") == 2 * layer_weights and kept.terms["dequantized_weights"].kind == "static"
    assert fused.term("projections") == plain.term("projections")  # dropout on: each module keeps its own input


def _saved_per_layer_token(spec: str, tmp_path) -> tuple[float, object]:
    """Bytes one decoder layer saves for backward per token: a 3- and a 2-layer model's difference (as test_memory)."""
    from memfit.plan.probe import autocast_for
    from _models import saved_activation_bytes

    shape = dict(hidden_size=128, intermediate_size=352, num_attention_heads=4, num_key_value_heads=2)
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 64)]) for k in ("input_ids", "labels")}
    saved = []
    for layers in (3, 2):
        path = tmp_path / f"{spec}-{layers}"
        tiny_model(num_hidden_layers=layers, **shape).save_pretrained(path)
        stack = Stack.from_spec(spec)
        ctx, model = stack.context("cpu"), memfit.load_model(str(path), stack).train()

        def forward():
            with autocast_for(stack, ctx), stack.step_context(ctx):
                stack.compute_loss(model, batch, ctx)

        saved.append(saved_activation_bytes(model, forward)[0])
    return (saved[0] - saved[1]) / (2 * 64), model.config


def test_saved_activations_match_the_memory_model_and_drop_peft_s_copies(tmp_path):
    """Dropout 0 (on CPU autocast a dropout mask takes 4 bytes, 1 on CUDA, like test_memory): q/k/v share one saved
    input and no fp32-cast copy is kept, where peft over bnb keeps one per adapted module."""
    from memfit.plan.memory import estimate

    fused, config = _saved_per_layer_token("lora:dropout=0+q4+q4fused+bf16", tmp_path)
    plain, _ = _saved_per_layer_token("lora:dropout=0+q4+bf16", tmp_path)
    predicted = estimate(Stack.from_spec("lora:dropout=0+q4+q4fused+bf16"), config, 64)
    assert predicted.layer_activation_bytes_per_token() == pytest.approx(fused, rel=0.1)
    assert fused < plain


def _saved_in_one_step(spec: str, path: str) -> tuple[int, int]:
    """(bytes of the distinct non-parameter storages autograd saves in one training forward, how many of them are float
    tensors with a projection weight's element count), measured in the second step: the first compiles."""
    stack = Stack.from_spec(spec)
    ctx, model = stack.context("cpu"), memfit.load_model(path, stack).train()
    sizes = {m.weight.numel() * 2 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)}  # packed: 2 per byte
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    batch = {k: torch.tensor([r[k] for r in random_blocks(3, 40)]) for k in ("input_ids", "labels")}
    saved: dict[int, tuple[int, bool]] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes(), t.is_floating_point() and t.numel() in sizes
        return t

    try:
        stack.compute_loss(model, batch, ctx)[0].backward()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            stack.compute_loss(model, batch, ctx)
    finally:
        torch._dynamo.reset()
    return sum(n for n, _ in saved.values()), sum(weight for _, weight in saved.values())


def test_compiled_it_saves_no_dequantized_weight_and_as_much_as_bitsandbytes_path(tmp_path):
    """Under compile (aot_eager partitions as inductor does) the fused layers keep the packed weight for backward, as
    bnb's own path and the eager op do; keep_weight keeps every 16/32-bit W on purpose. Widths and token count are
    chosen so that no activation has a weight's element count."""
    tiny_model(hidden_size=96, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2).save_pretrained(
        tmp_path)
    compiled = "+compile:backend=aot_eager"
    plain, fused, kept = (_saved_in_one_step(spec + compiled, str(tmp_path))
                          for spec in (PLAIN, FUSED, "lora+q4+q4fused:keep_weight=true"))
    assert plain[0] > 0 and fused == (plain[0], 0) and plain[1] == 0
    # every projection whose input gradient backward computes: all 2 x 7 but the first layer's q/k/v, whose input
    # (the frozen embedding's output) needs none, so the partitioner drops their W
    assert kept[1] == 2 * 7 - 3 and kept[0] > fused[0]
