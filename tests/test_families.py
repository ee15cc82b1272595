"""Every supported family (memfit/core/families.py) built as its own class, and memfit's strategies that depend on a
family's layout exact on each: LoRA presets, chunked cross-entropy (Gemma 2's soft-cap), tiled MLP (GeGLU, Phi-3's
fused gate_up). Unsupported families are refused, not built as a Llama."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import memfit
from memfit import Stack, TrainConfig
from memfit.core.protocol import StackError
from memfit.models import ModelError, describe_model, load_config, load_model
from _families import FAMILY_TYPES, family_config, family_json, family_model
from _models import random_blocks

CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
           "phi3": "Phi3ForCausalLM"}
SHIPPED = {"qwen2.5-3b": "qwen2", "qwen3-4b": "qwen3", "mistral-7b-v0.3": "mistral", "gemma-2-2b": "gemma2",
           "phi-3.5-mini": "phi3"}
BATCH = {k: torch.tensor([r[k] for r in random_blocks(2, 40)]) for k in ("input_ids", "labels")}  # > the windows


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    return {t: family_json(folder, t) for t in FAMILY_TYPES}


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_config_builds_its_own_class_with_transformers_own_logits(config_files, model_type):
    model = load_model(config_files[model_type], random_init=True)
    reference = family_model(model_type)  # AutoModelForCausalLM.from_config, same seed
    assert type(model).__name__ == CLASSES[model_type] == type(reference).__name__
    described = describe_model(model)
    assert described["model_class"] == CLASSES[model_type] and described["family"] == model_type
    assert described["attention"].startswith("eager" if model_type == "gemma2" else "sdpa")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=BATCH["input_ids"]).logits,
                                   reference(input_ids=BATCH["input_ids"]).logits, rtol=0, atol=0)


@pytest.mark.parametrize("model_type, needle", [("gpt2", "memfit has no description of its layers"),
                                                ("gemma3", "multimodal Gemma 3"),
                                                (None, "names no model_type")])
def test_an_unsupported_family_is_refused_in_one_line(tmp_path, model_type, needle):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model_type": model_type, "hidden_size": 64} if model_type else {"hidden_size": 64}))
    for build in (lambda: load_model(str(path), random_init=True), lambda: load_config(str(path))):
        with pytest.raises(ModelError, match=rf"is not supported: .*{needle}.*supported families: llama") as info:
            build()
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not supported"):  # the memory model refuses a config handed to it
        memfit.estimate(Stack.from_spec("lora"), SimpleNamespace(model_type=model_type), 64)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_are_taken_by_name_and_planned_as_their_family(name):
    config = load_config(name)
    assert config.model_type == SHIPPED[name]
    est = memfit.estimate(Stack.from_spec("lora:targets=all-linear+bf16"), config, 512)
    owners = {t.owner for t in est.terms.values()}
    assert SHIPPED[name] in owners and "llama" not in owners


def test_the_lora_estimate_counts_phi3s_fused_adapters():
    from transformers import AutoModelForCausalLM

    config = load_config("phi-3.5-mini")
    est = memfit.estimate(Stack.from_spec("lora:targets=all-linear"), config, 512)
    with torch.device("meta"):  # the estimate's adapter count is what peft really adds on the real shapes
        model = AutoModelForCausalLM.from_config(config)
    stack = Stack.from_spec("lora:targets=all-linear")
    model = stack.apply_model(model, stack.context("meta"))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == est.trainable_params


def test_memfit_estimate_takes_a_shipped_family_by_name(capsys):
    from memfit.cli import main

    assert main(["estimate", "--architecture", "gemma-2-2b", "--stack", "lora+bf16+cce", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "gemma2" in out and " llama" not in out  # the family's own terms, not Llama's


@pytest.mark.parametrize("preset, phi3, others", [
    ("attention", {"qkv_proj", "o_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    ("mlp", {"gate_up_proj", "down_proj"}, {"gate_proj", "up_proj", "down_proj"}),
    ("all-linear", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
     {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})])
@pytest.mark.parametrize("model_type", ["phi3", "qwen3", "gemma2"])
def test_lora_presets_resolve_per_family(model_type, preset, phi3, others):
    stack = Stack.from_spec(f"lora:targets={preset}")
    model = stack.apply_model(family_model(model_type), stack.context("cpu"))
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if n.endswith("lora_A.default.weight")}
    assert adapted == (phi3 if model_type == "phi3" else others)


def test_lora_single_target_and_missing_names():
    stack = Stack.from_spec("lora:targets=q_proj")  # one name, not a list
    assert stack.get("lora").targets == ["q_proj"]
    stack.apply_model(family_model("qwen2"), stack.context("cpu"))
    with pytest.raises(StackError, match=r"q_proj do not exist in Phi3ForCausalLM .*Linear layers are "
                                         r"down_proj, gate_up_proj, o_proj, qkv_proj"):
        stack.apply_model(family_model("phi3"), stack.context("cpu"))
    with pytest.raises(StackError, match=r"q_proj do not exist in a Phi-3/3.5 model"):
        memfit.estimate(stack, family_config("phi3"), 64)


def _loss_and_grads(model_type, spec):
    stack = Stack.from_spec(spec)
    ctx = stack.context("cpu")
    model = stack.apply_model(family_model(model_type), ctx)
    with stack.step_context(ctx):
        nll, n = stack.compute_loss(model, BATCH, ctx)
        nll.backward()
    return nll.item() / n.item(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_cce_and_tiled_mlp_are_exact_per_family(model_type):
    model = family_model(model_type)
    with torch.no_grad():
        own = model(**BATCH).loss.item()  # the model's own forward and loss (soft-cap, scaled embeddings)
    plain, ref = _loss_and_grads(model_type, "none")
    assert plain == pytest.approx(own, rel=1e-6)
    for spec in ("cce:chunk=16", "tiled_mlp:tokens=16"):
        loss, grads = _loss_and_grads(model_type, spec)
        assert loss == pytest.approx(own, rel=1e-5), spec
        assert grads.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(grads[k], ref[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{spec} {k}: {m}")


def test_gemma2_soft_cap_matters_in_the_test_config():
    capped = family_model("gemma2")
    uncapped = family_model("gemma2", final_logit_softcapping=None)
    with torch.no_grad():
        assert abs(capped(**BATCH).loss.item() - uncapped(**BATCH).loss.item()) > 1e-3  # far above the tolerance
    with pytest.raises(ValueError, match="cannot soft-cap"):  # torch's native op would drop the cap: refused
        Stack.from_spec("cce:impl=torch").apply_model(capped, Stack.from_spec("cce").context("cpu"))


def _train(model_type, spec):
    stack = Stack.from_spec(spec)
    model = stack.apply_model(family_model(model_type), stack.context("cpu"))
    result = memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=1e-2,
                                                                         warmup=0, progress=False))
    return result.losses


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_two_training_steps_give_the_plain_models_losses(model_type):
    plain = _train(model_type, "none")
    for spec in ("cce:chunk=16", "tiled_mlp:tokens=16"):  # memory strategies: same math
        assert _train(model_type, spec) == pytest.approx(plain, rel=1e-4), spec
    for preset in ("attention", "mlp", "all-linear"):  # adapters start at B = 0: the plain model's first loss
        losses = _train(model_type, f"lora:targets={preset},dropout=0")
        assert losses[0] == pytest.approx(plain[0], rel=1e-5) and losses[1] != losses[0], preset


@pytest.mark.parametrize("model_type", ["gemma2", "phi3"])
def test_saved_weights_of_gemma2_and_phi3_load_and_train(tmp_path, model_type):
    saved = family_model(model_type, seed=3)
    saved.save_pretrained(tmp_path)  # "real" weights: a saved checkpoint, loaded through from_pretrained
    stack = Stack.from_spec("lora:targets=all-linear,dropout=0+cce:chunk=16")
    model = load_model(str(tmp_path), stack)
    assert describe_model(model)["model_class"] == CLASSES[model_type]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=BATCH["input_ids"]).logits,
                                   saved(input_ids=BATCH["input_ids"]).logits)  # B = 0: the saved model's logits
    result = memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=1e-2,
                                                                         warmup=0, progress=False))
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))


def test_train_takes_model_config_as_the_same_flag_as_architecture(config_files):
    from memfit.cli.train import parse_config

    assert parse_config(["--model-config", config_files["qwen3"]]).model.config == config_files["qwen3"]
    assert parse_config(["--architecture", config_files["phi3"]]).model.config == config_files["phi3"]


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_saved_adapter_reloads_and_merges_to_the_trained_logits(tmp_path, model_type):
    """memfit's save (saving.py) -> checked load (checkpoint.load_adapter) -> merge, as `memfit eval` and `memfit merge`
    do it: the reloaded adapter and the merged plain model give the trained model's logits, per family."""
    from memfit.training.checkpoint import load_adapter

    stack = Stack.from_spec("lora:targets=all-linear,dropout=0")
    model = stack.apply_model(family_model(model_type), stack.context("cpu"))
    memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=5e-2, warmup=0,
                                                                 progress=False, output_dir=str(tmp_path),
                                                                 checkpoint_every=None))
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=BATCH["input_ids"]).logits
        reloaded = load_adapter(family_model(model_type), tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(input_ids=BATCH["input_ids"]).logits, trained)
        merged = reloaded.merge_and_unload()
        assert type(merged).__name__ == CLASSES[model_type]
        torch.testing.assert_close(merged(input_ids=BATCH["input_ids"]).logits, trained, rtol=1e-4, atol=1e-4)
        base = family_model(model_type)(input_ids=BATCH["input_ids"]).logits
    assert not torch.allclose(trained, base)  # the adapter changed the model: the round trip is not trivially equal
