"""Reliability (issue 9): exact resume after SIGKILL, OOM back-off, numeric faults, hostile or broken input.

Bad PDFs are covered where the extractor lives (tests/data/test_data_extract.py): crafted-slow files
(test_page_and_time_limits: timeout), huge files and page counts (test_file_size_limit, test_page_and_time_limits),
truncated / encrypted / HTML / empty / scanned files (test_every_bad_file_is_reported_and_the_good_ones_survive).
Only the decompression bomb (tiny file, huge stream) is added here. Impossible stacks given as specs are covered by
tests/core/test_stack.py (test_impossible_combinations_fail_with_the_conflict_named); here they come from YAML files.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel, PrivateAttr

import memfit
from memfit import ModelError, Stack, StackError, TrainConfig
from memfit.training.backoff import next_smaller
from memfit.training.checkpoint import CheckpointError, list_checkpoints, load_adapter
from memfit.core.loss import causal_lm_nll
from memfit.plan.probe import SimulatedMeter
from memfit.core.protocol import strategy_config
from _models import random_blocks, tiny_model

HERE = Path(__file__).resolve().parents[1]  # tests/


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices gain nothing from a second thread, and on a busy 2-core machine OpenMP's barrier waits make two
    threads ~100x slower (0.14 s vs 19 s for one 5-step run here). The SIGKILL children use one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(stack, rows, out=None, model=None, **overrides):
    model = model or stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = dict(micro_batch=2, max_steps=6, lr=1e-2, progress=False, save_adapter=False,
               output_dir=str(out) if out else None)
    return model, memfit.train(model, stack, rows, TrainConfig(**{**cfg, **overrides}))


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---- checkpoint and resume --------------------------------------------------------------------------------------------

def test_sigkill_at_random_points_and_mid_save_then_resume_is_bitwise_identical(tmp_path):
    """Each trial trains LoRA(r=64) + 8-bit AdamW + 2-step accumulation with dropout, 12 steps over 19 rows (windows
    straddle epochs), checkpointing every 3 steps (keep 2); it is SIGKILLed at the planned points and restarted on the
    same folder until it finishes. Same process settings and CPU kernels in every run, so the bar is bitwise."""
    rng = random.Random(9)
    trials = {"reference": [],
              "kill-mid-window": [{"at": "micro", "n": rng.randint(3, 20)}],
              "kill-mid-save": [{"at": "saving", "n": 2}],
              "kill-twice": [{"at": "micro", "n": rng.randint(2, 12)}, {"at": "micro", "n": rng.randint(2, 10)}],
              "kill-in-final-save": [{"at": "saving", "n": 4}],
              "kill-in-first-save-then-mid-window": [{"at": "saving", "n": 1}, {"at": "micro", "n": rng.randint(1, 12)}]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": 9, "trials": trials}))
    proc = subprocess.run([sys.executable, str(HERE / "_reliability_worker.py"), str(plan), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    from safetensors.torch import load_file

    ref = load_file(str(tmp_path / "out" / "reference" / "final.safetensors"))
    ref_run = json.loads((tmp_path / "out" / "reference" / "final.json").read_text())
    passed = []
    for name, runs in results.items():
        *killed, final = runs
        assert final["status"] == 0 and "error" not in final, final.get("error")
        for run in killed:  # every planned kill landed, as a real SIGKILL
            assert "killed_during" in run and os.WIFSIGNALED(run["status"]) and os.WTERMSIG(run["status"]) == 9, run
            if run["kill"]["at"] == "saving":  # the kill left a half-written checkpoint that resume had to ignore
                assert any(n.startswith(".tmp-step-") for n in run["left_on_disk"]), run
        got = load_file(str(tmp_path / "out" / name / "final.safetensors"))
        run = json.loads((tmp_path / "out" / name / "final.json").read_text())
        assert run["steps"] == ref_run["steps"] == 12 and run["tokens"] == ref_run["tokens"]
        assert run["losses"] == ref_run["losses"], name
        _assert_bitwise(got, ref)
        passed.append(name)
    print(f"\nresume trials passed {len(passed) - 1}/{len(trials) - 1} (+ reference), bitwise:")
    for name in passed[1:]:
        kills = [f"SIGKILL after micro-batch event {r['micro_batches_run']} ({r['killed_during']}), on disk "
                 f"{r['left_on_disk']}" for r in results[name][:-1]]
        resumed = json.loads((tmp_path / "out" / name / "final.json").read_text())["resumed_from"]
        print(f"  {name}: {' / '.join(kills)} -> resumed from {resumed and Path(resumed).name}")
    assert len(passed) == len(trials)


def test_full_fine_tune_with_tied_embeddings_resumes_from_a_named_checkpoint(tmp_path):
    stack = Stack([])  # full fp32 fine-tune, torch AdamW: every weight is in the checkpoint
    model_a = stack.apply_model(tiny_model(tie_word_embeddings=True), stack.context("cpu"))
    _, first = _train(stack, random_blocks(8, 16), tmp_path, model=model_a, max_steps=4, checkpoint_every=2)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002", "step-00000004"]
    model_b = stack.apply_model(tiny_model(tie_word_embeddings=True), stack.context("cpu"))
    _, again = _train(stack, random_blocks(8, 16), tmp_path, model=model_b, max_steps=4, checkpoint_every=2,
                      resume=str(tmp_path / "checkpoints" / "step-00000002"))
    assert again.resumed_from.endswith("step-00000002") and again.losses == first.losses
    _assert_bitwise(_trainable(model_b), _trainable(model_a))


def test_resume_refuses_checkpoints_of_another_run(tmp_path):
    stack, rows = Stack.from_spec("lora+ga2"), random_blocks(8, 16)
    _train(stack, rows, tmp_path, max_steps=2, checkpoint_every=1, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]  # keep_last
    with pytest.raises(CheckpointError, match=r"different run: seed \(0 there, 1 here\)"):
        _train(stack, rows, tmp_path, max_steps=2, checkpoint_every=1, seed=1)
    with pytest.raises(CheckpointError, match="resume is off: use resume='auto' to continue it, or another"):
        _train(stack, rows, tmp_path, max_steps=2, checkpoint_every=1, resume=False)


# ---- OOM back-off -----------------------------------------------------------------------------------------------------

class SimulatedGPU(BaseModel):
    """Test-only strategy: every micro-batch runs under a SimulatedMeter (parameters + gradients + optimizer state +
    live saved tensors) that raises a real torch.OutOfMemoryError above `budget` bytes - from micro-batch call
    `from_call` on, like another process taking memory mid-run."""

    model_config = strategy_config()
    name: ClassVar[str] = "simulated_gpu"
    phase: ClassVar[int] = 95
    budget: float = 1e15
    from_call: int = 0
    _model = PrivateAttr(None)
    _optimizer = PrivateAttr(None)
    _calls = PrivateAttr(0)

    def describe(self):
        return f"simulated {self.budget:.0f}-byte GPU"

    def transform_model(self, model, ctx):
        self._model = model
        return model

    def make_optimizer(self, params, ctx, lr, weight_decay):
        self._optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        return self._optimizer

    def step_context(self, ctx):
        self._calls += 1
        budget = self.budget if self._calls > self.from_call else 1e15
        return SimulatedMeter(budget).measure(self._model, self._optimizer)


def _budget_between(spec: str, seq: int, small: int, large: int) -> float:
    """A simulated budget that fits `small` sequences per micro-batch but not `large`, measured in the steady state
    of training (gradients and AdamW moments allocated), not guessed."""
    stack = Stack.from_spec(spec)
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(), ctx)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)

    def batch(b):
        return {k: torch.tensor([r[k] for r in random_blocks(b, seq)]) for k in ("input_ids", "labels")}

    stack.compute_loss(model, batch(1), ctx)[0].backward()
    opt.step()
    peaks = {}
    for b in (small, large):
        meter = SimulatedMeter(1e15)
        with meter.measure(model, opt):
            stack.compute_loss(model, batch(b), ctx)[0].backward()
        peaks[b] = meter.peak()
    assert peaks[large] > 1.2 * peaks[small]
    return (peaks[small] + peaks[large]) / 2


def _gpu_stack(spec: str, **gpu) -> Stack:
    return Stack([*Stack.from_spec(spec), SimulatedGPU(**gpu)])


def test_oom_backs_off_to_a_smaller_micro_batch_at_the_same_effective_batch(tmp_path):
    from memfit.plan.planner import plan

    rows, seq = random_blocks(20, 32, seed=2), 32  # 20 rows: windows of 8 straddle epochs at either size
    planned = plan(Stack.from_spec("lora").apply_model(tiny_model(), Stack([]).context("cpu")), "lora", seq_len=seq,
                   meter=SimulatedMeter(1e9), cache_dir=tmp_path / "plans", limit=4, target_effective_batch=8)
    assert (planned.max_micro_batch, planned.grad_accum) == (4, 2)
    (cache,) = (tmp_path / "plans").glob("*.json")
    # the planned size then runs out of memory (less memory free than when planning) from the very first window
    budget = _budget_between("lora", seq, 2, 4)
    model, res = _train(_gpu_stack("lora+ga2", budget=budget), rows, micro_batch=4, max_steps=5,
                        plan_cache=str(cache))
    ref_model, ref = _train(_gpu_stack("lora+ga4"), rows, micro_batch=2, max_steps=5)  # planned 2 x 4 from the start
    print(f"\nOOM back-off trace (first window): {res.backoffs}")
    assert [(e["step"], e["from_micro_batch"], e["to_micro_batch"], e["grad_accum"], e["effective_batch"])
            for e in res.backoffs] == [(1, 4, 2, 4, 8)]
    assert "simulated OOM" in res.backoffs[0]["error"]
    assert (res.micro_batch, res.grad_accum, res.effective_batch) == (2, 4, 8) == (ref.micro_batch, ref.grad_accum,
                                                                                     ref.effective_batch)
    assert res.steps == ref.steps == 5 and res.tokens == ref.tokens and res.losses == ref.losses
    _assert_bitwise(_trainable(model), _trainable(ref_model))  # GA equivalence, dropout included (RNG restored)
    cached = json.loads(cache.read_text())
    assert (cached["max_micro_batch"], cached["grad_accum"], cached["effective_batch"]) == (2, 4, 8)
    assert cached["backoffs"][0]["to_micro_batch"] == 2
    again = plan(Stack.from_spec("lora").apply_model(tiny_model(), Stack([]).context("cpu")), "lora", seq_len=seq,
                 meter=SimulatedMeter(1e9), cache_dir=tmp_path / "plans", limit=4, target_effective_batch=8)
    assert again.cache_hit and again.max_micro_batch == 2


def test_oom_in_the_middle_of_a_run_loses_and_repeats_no_step(tmp_path):
    rows, seq = random_blocks(20, 32, seed=2), 32
    budget = _budget_between("lora:dropout=0", seq, 2, 4)
    # memory shrinks at micro-batch call 4: the second half of step 2's window OOMs after its first half ran
    model, res = _train(_gpu_stack("lora:dropout=0+ga2", budget=budget, from_call=3), rows, tmp_path,
                        micro_batch=4, max_steps=5, checkpoint_every=5)
    _, at4 = _train(_gpu_stack("lora:dropout=0+ga2"), rows, micro_batch=4, max_steps=5)
    ref_model, at2 = _train(_gpu_stack("lora:dropout=0+ga4"), rows, micro_batch=2, max_steps=5)
    print(f"\nOOM back-off trace (mid-run): {res.backoffs}")
    assert [(e["step"], e["from_micro_batch"], e["to_micro_batch"]) for e in res.backoffs] == [(2, 4, 2)]
    assert res.steps == 5 and res.tokens == at4.tokens == at2.tokens and res.losses[0] == at4.losses[0]
    # Not bitwise: step 1 ran as 2 x 4 rows, the reference as 4 x 2, and fp32 sums differ in the last bit (~1e-7);
    # AdamW divides by sqrt(v), which turns that into up to ~1e-5 on near-zero gradients. Had the failed attempt's
    # half-window gradient been kept (counted twice), step 2's update would differ by ~lr = 1e-2.
    assert res.losses[2:] == pytest.approx(at2.losses[2:], rel=1e-6)
    for name, p in _trainable(model).items():
        torch.testing.assert_close(p, _trainable(ref_model)[name], rtol=0, atol=5e-5)
    state = json.loads((tmp_path / "checkpoints" / "step-00000005" / "trainer_state.json").read_text())
    assert state["micro_batch"] == 2 and state["backoffs"] == res.backoffs  # a resumed run stays at 2


def test_oom_even_at_micro_batch_one_says_what_to_do():
    with pytest.raises(torch.OutOfMemoryError, match="no smaller micro-batch.*gc, q4, adam8"):
        _train(_gpu_stack("lora+ga2", budget=1.0), random_blocks(8, 16), micro_batch=4, max_steps=1)
    assert [next_smaller(m, w) for m, w in [(4, 8), (8, 24), (3, 6), (5, 10), (1, 8)]] == [2, 6, 2, 2, 0]


# ---- numeric faults ---------------------------------------------------------------------------------------------------

class NaNLoss(BaseModel):
    """Test-only loss: the default summed NLL, turned NaN on the micro-batch calls listed in `_bad`."""

    model_config = strategy_config()
    name: ClassVar[str] = "nan_loss"
    phase: ClassVar[int] = 60
    _bad = PrivateAttr(default_factory=set)
    _calls = PrivateAttr(0)

    def describe(self):
        return "NaN injector"

    def compute_loss(self, model, batch, ctx):
        self._calls += 1
        nll, n = causal_lm_nll(model, batch)
        return (nll * float("nan") if self._calls in self._bad else nll), n


def _nan_stack(bad=()) -> Stack:
    injector = NaNLoss()
    injector._bad = set(bad)
    return Stack([*Stack.from_spec("lora"), injector])


def test_persistent_nan_stops_the_run_keeping_the_last_good_checkpoint(tmp_path):
    rows, run = random_blocks(16, 16, seed=4), dict(max_steps=8, checkpoint_every=2, keep_last=4, max_bad_steps=2)
    ref_model, ref = _train(_nan_stack(), rows, tmp_path / "ref", **run)
    with pytest.raises(memfit.NumericError, match=r"non-finite for 2 consecutive steps \(last at step 6\).*last "
                                                  r"good checkpoint is .*step-00000004"):
        _train(_nan_stack(bad=range(5, 100)), rows, tmp_path / "run", **run)  # NaN from step 5 on
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-00000002", "step-00000004"]
    from safetensors.torch import load_file

    on_disk = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors"))
    _assert_bitwise(on_disk, load_file(str(tmp_path / "ref" / "checkpoints" / "step-00000004" / "model.safetensors")))
    model, res = _train(_nan_stack(), rows, tmp_path / "run", **run)  # data fixed: resume from the good checkpoint
    assert res.resumed_from.endswith("step-00000004") and res.losses == ref.losses
    _assert_bitwise(_trainable(model), _trainable(ref_model))


def test_a_transient_nan_skips_one_update_and_the_run_goes_on():
    model, res = _train(_nan_stack(bad={3}), random_blocks(16, 16, seed=4), max_steps=5)
    assert res.steps == 5 and res.nonfinite_steps == 1 and res.skipped_steps == 0
    assert all(torch.isfinite(p).all() for p in _trainable(model).values())


def test_fp16_overflow_is_skipped_by_the_loss_scaler_and_counted(tmp_path):
    from memfit.training.loop import make_accelerator

    stack = Stack.from_spec("lora+fp16")
    acc = make_accelerator(stack, 2)
    # accelerate builds no GradScaler on CPU (its fp16 there is plain fp32). Give it torch's CPU GradScaler, the same
    # class CUDA uses, so the real path runs: fp16 autocast, scaled backward, inf check, skipped step, halved scale.
    acc.scaler, acc.native_amp = torch.amp.GradScaler("cpu", init_scale=2.0 ** 20, growth_interval=10_000), True
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    res = memfit.train(model, stack, random_blocks(16, 16), accelerator=acc, config=TrainConfig(
        micro_batch=2, max_steps=8, progress=False, output_dir=str(tmp_path), save_adapter=False, checkpoint_every=4))
    assert res.skipped_steps >= 1 and res.nonfinite_steps == 0  # overflow is the scaler's business, not a NaN fault
    assert acc.scaler.get_scale() == 2.0 ** 20 * 0.5 ** res.skipped_steps
    saved = torch.load(tmp_path / "checkpoints" / "step-00000008" / "scaler.pt", weights_only=True)
    assert saved["scale"] == acc.scaler.get_scale()  # a resumed run continues with the lowered scale
    print(f"\nfp16 loss scaler: {res.skipped_steps} of {res.steps} steps skipped, scale 2^20 -> "
          f"2^{int(torch.log2(torch.tensor(acc.scaler.get_scale())))}")


# ---- hostile or broken input ------------------------------------------------------------------------------------------

def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    stack, rows, run = Stack.from_spec("lora+ga2"), random_blocks(12, 16, seed=6), dict(checkpoint_every=2)
    ref_model, ref = _train(stack, rows, tmp_path / "ref", **run)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # the second checkpoint runs out of space half-way through its files
        if ".tmp-step-00000004" in str(f) and str(f).endswith("optimizer.bin"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"step-00000004 .*No space left on device \(errno 28\); the previous "
                                              r"checkpoint .*step-00000002 is intact and resume uses it"):
        _train(stack, rows, tmp_path / "run", **run)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000002"]
    monkeypatch.undo()  # space freed: the same command resumes
    model, res = _train(stack, rows, tmp_path / "run", **run)
    assert res.resumed_from.endswith("step-00000002") and res.losses == ref.losses
    _assert_bitwise(_trainable(model), _trainable(ref_model))


def test_unwritable_results_directory_fails_before_training(tmp_path):
    (tmp_path / "results").write_text("a file where the results folder should go")
    stack = Stack.from_spec("lora")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    with pytest.raises(CheckpointError, match=r"results directory .*results/run is not writable .*Checked before "
                                              r"training, so nothing was lost"):
        _train(stack, random_blocks(8, 16), tmp_path / "results" / "run", model=model)
    assert forwards == []
    if os.geteuid() != 0:  # root ignores permission bits
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(CheckpointError, match="not writable"):
            _train(stack, random_blocks(8, 16), tmp_path / "ro", model=model)


def test_adapter_from_another_base_model_is_refused_before_loading(tmp_path):
    stack = Stack.from_spec("lora:dropout=0")
    model, _ = _train(stack, random_blocks(8, 16), tmp_path, max_steps=1, save_adapter=True, checkpoint_every=None)
    adapter = tmp_path / "adapter"
    loaded = load_adapter(tiny_model(), adapter)
    trained = _trainable(model)
    assert all(torch.equal(p, trained[n.replace(".default", ".default")]) for n, p in loaded.named_parameters()
               if "lora_" in n)
    wider = tiny_model(hidden_size=96, intermediate_size=192)
    with pytest.raises(CheckpointError, match=r"trained on another base model: hidden_size 64 there vs 96 here.*"
                                              r"load the base model it was trained on"):
        load_adapter(wider, adapter)
    from memfit.core.integrity import MANIFEST

    (adapter / "memfit_base.json").unlink()  # a plain peft adapter (no memfit records, no checksums): the shapes tell
    (adapter / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"lora_A.weight has shape \[8, 64\] but .* has 96 inputs"):
        load_adapter(wider, adapter)
    with pytest.raises(CheckpointError, match=r"adapts model.layers.1.self_attn.\w_proj, which this LlamaForCausalLM "
                                              r"does not have"):
        load_adapter(tiny_model(num_hidden_layers=1), adapter)
    assert not any("lora" in n for n, _ in wider.named_modules())  # a refused adapter leaves the model untouched
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors adapters are loaded"):
        load_adapter(tiny_model(), adapter)


def test_missing_model_path_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelError, match=r"no-such-model' was not found.*local directory with config.json \+ "
                                         r"safetensors weights"):
        memfit.load_model(str(tmp_path / "no-such-model"))


def _pickle_only_model(folder: Path) -> Path:
    model = tiny_model()
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_model_is_refused_without_unpickling(tmp_path, monkeypatch):
    folder = _pickle_only_model(tmp_path / "bin-only")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle file was loaded"))
    with pytest.raises(ModelError, match="safetensors"):
        memfit.load_model(str(folder))


def test_pickle_only_model_message_says_why(tmp_path):
    with pytest.raises(ModelError, match=r"pytorch_model.bin.*safetensors only"):
        memfit.load_model(str(_pickle_only_model(tmp_path / "bin-only")))


def test_remote_code_is_never_run(tmp_path):
    folder, marker = tmp_path / "custom", tmp_path / "code-ran"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "evilnet", "auto_map": {
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}))
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))  # weights are not what stops it
    with pytest.raises(ModelError, match="trust_remote_code"):
        memfit.load_model(str(folder))
    assert not marker.exists()


@pytest.mark.parametrize("text, needle", [
    ("strategies:\n  - {name: lora, rank: 4}\n", r"'lora' in .*rank: Extra inputs are not permitted"),
    ("strategies:\n  - {name: lora, r: eight}\n", r"'lora' in .*r: Input should be a valid integer"),
    ("strategies:\n  - {name: ga, steps: 0}\n", r"'ga' in .*steps: Input should be greater than or equal to 1"),
    ("strategies:\n  - {r: 4}\n", r"stack entry \{'r': 4\} has no 'name'"),
    ("strategies: [lora, turbo]\n", r"unknown strategy 'turbo'. Known strategies: .*adam8"),
    ("strategies: [q4, gc]\n", r"quant4bit without LoRA.*Add 'lora'"),  # an impossible stack, from a file
    ("strategies: [lora, fp16, bf16]\n", r"appears twice"),
])
def test_stack_yaml_with_unknown_keys_wrong_types_or_impossible_stacks(tmp_path, text, needle):
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    with pytest.raises(StackError, match=needle):
        Stack.from_yaml(path)


def test_stack_yaml_cannot_run_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "stack.yaml"
    path.write_text(f"strategies: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(StackError, match="stack.yaml"):
        Stack.from_yaml(path)
    assert not marker.exists()


def test_stack_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "my-stack.yaml"
    path.write_text("strategies: [lora, {name: ga\n")
    with pytest.raises(StackError, match="my-stack.yaml"):
        Stack.from_yaml(path)


def test_pdf_decompression_bomb_is_stopped_and_the_other_files_survive(tmp_path):
    sys.path.insert(0, str(HERE / "data"))
    from pdf_factory import english_page, pdf_bytes, write_text_pdf

    from memfit.data import extract_pdfs

    folder = tmp_path / "pdfs"
    folder.mkdir()
    write_text_pdf(folder / "good.pdf", [english_page(1), english_page(2)])
    bomb = pdf_bytes([], compress_repeat=4_400_000)  # ~190 KB on disk, ~79 MB once inflated
    (folder / "bomb.pdf").write_bytes(bomb)
    assert len(bomb) < 300_000
    corpus = extract_pdfs(folder, tmp_path / "cache", timeout_s=30)
    assert [doc.name for doc in corpus.documents] == ["good.pdf"]
    assert [(e.path.name, e.kind) for e in corpus.errors] == [("bomb.pdf", "corrupt")]
    assert "Limit reached while decompressing" in corpus.errors[0].reason and "re-export" in corpus.errors[0].reason
