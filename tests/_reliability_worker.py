"""SIGKILL trials for tests/training/test_reliability.py: `python _reliability_worker.py PLAN.json OUT_DIR`.

Imports torch/transformers/peft/accelerate once (~8 s here), then forks one child per training process, so a dozen
killed-and-resumed runs cost seconds. No torch op runs in this parent before forking (OpenMP thread pools are not
fork-safe once started). Each child trains the same tiny LoRA + 8-bit AdamW + accumulation run into its trial folder,
reporting every micro-batch and every save on a pipe; the parent SIGKILLs it when the plan says, then starts the next
child on the same folder (which resumes automatically), until a child finishes. Results go to OUT_DIR/results.json.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from pydantic import BaseModel  # noqa: E402

# What the children would otherwise import lazily, one after another (~4 s each)
import accelerate  # noqa: E402,F401
import bitsandbytes  # noqa: E402,F401
import peft  # noqa: E402,F401
import safetensors.torch  # noqa: E402,F401
import tqdm.auto  # noqa: E402,F401
import transformers.models.llama.modeling_llama  # noqa: E402,F401

import memfit  # noqa: E402
import memfit.training.checkpoint as checkpoint  # noqa: E402
from _models import random_blocks, tiny_model  # noqa: E402
from memfit.core.protocol import strategy_config  # noqa: E402

SPEC = "lora:r=64+adam8+ga2"  # r=64: LoRA A/B of 4096 values, the size bitsandbytes keeps 8-bit moments for
CONFIG = dict(micro_batch=2, max_steps=12, lr=2e-2, checkpoint_every=3, keep_last=2, seed=3, progress=False)
ROWS = dict(n=19, seq=16, seed=5)  # 10 loader batches per epoch (the last one short): windows straddle epochs
EVENTS = {"fd": -1, "pause_at": 0, "saves": 0}


def _emit(line: str) -> None:
    os.write(EVENTS["fd"], (line + "\n").encode())


class Reporter(BaseModel):
    """Announces each micro-batch to the parent, which may kill the process at any point after it."""

    model_config = strategy_config()
    name: ClassVar[str] = "reporter"
    phase: ClassVar[int] = 99

    def describe(self) -> str:
        return "reports micro-batches"

    def step_context(self, ctx):
        import contextlib

        _emit("micro")
        return contextlib.nullcontext()


def _on_partial_save(tmp: Path) -> None:
    _emit(f"saving {tmp.name}")
    EVENTS["saves"] += 1
    if EVENTS["saves"] == EVENTS["pause_at"]:
        time.sleep(120)  # the parent kills us here: a half-written .tmp- folder stays behind


def train_child(out: Path, fd: int, pause_at: int) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    EVENTS.update(fd=fd, pause_at=pause_at)
    checkpoint.on_partial_save = _on_partial_save
    stack = memfit.Stack([*memfit.Stack.from_spec(SPEC), Reporter()])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = memfit.TrainConfig(output_dir=str(out / "run"), save_adapter=False, **CONFIG)
    res = memfit.train(model, stack, random_blocks(ROWS["n"], ROWS["seq"], seed=ROWS["seed"]), cfg)
    from safetensors.torch import save_file

    save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(out / "final.safetensors"))
    (out / "final.json").write_text(json.dumps({"losses": res.losses, "steps": res.steps, "tokens": res.tokens,
                                                "resumed_from": res.resumed_from}))


def launch(out: Path, pause_at: int):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        code = 0
        try:
            train_child(out, write, pause_at)
        except BaseException:  # noqa: BLE001 - report anything, then leave without running the parent's atexit
            (out / "error.txt").write_text(traceback.format_exc())
            code = 1
        os._exit(code)
    os.close(write)
    return pid, os.fdopen(read, "r")


def run_until(out: Path, kill: dict | None, rng: random.Random) -> dict:
    """One child on `out`: killed at kill = {"at": "micro"|"saving", "n": N}, or (kill None) run to its end."""
    pid, events = launch(out, pause_at=kill["n"] if kill and kill["at"] == "saving" else 0)
    seen, record = {"micro": 0, "saving": 0}, {"kill": kill}
    for line in events:
        kind = line.split()[0]
        seen[kind] += 1
        if kill and kind == kill["at"] and seen[kind] == kill["n"]:
            if kind == "micro":
                time.sleep(rng.uniform(0, 0.02))  # land anywhere in the next micro-batches, steps or saves
            os.kill(pid, signal.SIGKILL)
            record["killed_during"] = line.strip()
            break
    _, status = os.waitpid(pid, 0)
    events.close()
    root = out / "run" / "checkpoints"
    record.update(status=status, micro_batches_run=seen["micro"],
                  left_on_disk=sorted(p.name for p in root.iterdir()) if root.is_dir() else [])
    if (out / "error.txt").exists():
        record["error"] = (out / "error.txt").read_text()
    return record


def main(plan_path: str, out_dir: str) -> None:
    plan, root = json.loads(Path(plan_path).read_text()), Path(out_dir)
    rng, results = random.Random(plan["seed"]), {}
    for name, kills in plan["trials"].items():
        out = root / name
        out.mkdir(parents=True)
        results[name] = [run_until(out, kill, rng) for kill in kills] + [run_until(out, None, rng)]
    (root / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
