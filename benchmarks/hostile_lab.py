"""The bench of benchmarks/hostile_cases.py: a folder holding a tiny random Llama with a byte-level tokenizer trained
on the spot, a few English notes and a recipe over them, `python -m memfit` run in it as a user would (its own
MEMFIT_CACHE, a time limit so a hang is a verdict, not a stuck script), and the three verdicts of issue 30:

- held: the command did the right thing - refused in one line with exit 2, or finished and its result checks out;
- loud: nothing wrong was kept, but the user got a traceback, an unclear line, a hang or another exit code;
- silent: exit 0 with a wrong result (or a refusal that should have been one, the other way round: exit 0)."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = ("ocean heat waves acidity coral reef carbon flux salinity current warming ice sheet melt season sample "
         "station record trend model estimate basin surface depth layer signal").split()


def english_note(seed: int, sentences: int = 12) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."
                     for _ in range(sentences)) + "\n"


def tokenizer_for(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    backend.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<eos>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")


def save_base(folder: Path, tokenizer, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


CASES: dict[str, tuple[str, Callable]] = {}  # name -> (the group: silent / loud, function(lab) -> outcomes)


def case(group: str):
    def register(fn):
        CASES[fn.__name__] = (group, fn)
        return fn
    return register


def dead_pid() -> int:
    """A process id that no longer runs: what a killed writer leaves in its temporaries' names."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@dataclass
class Outcome:
    """One command of a case and what its result must be: `expect` 'refuse' (exit 2, one line), 'succeed' (exit 0
    and `correct`), 'interrupt' (exit 130 and `correct`) or 'killed' (kill -9 by the case, and `correct`)."""
    command: list[str]
    returncode: int
    stderr: str
    expect: str
    correct: bool = True
    note: str = ""
    stdout: str = field(default="", repr=False)

    @property
    def message(self) -> str:
        """memfit's own line when it printed one, else the first line that is no progress bar or library banner."""
        lines = [ln.strip() for ln in self.stderr.replace("\r", "\n").splitlines() if ln.strip()]
        own = [ln for ln in lines if ln.startswith("memfit")]
        quiet = [ln for ln in lines if "it/s]" not in ln and "examples/s]" not in ln and "%|" not in ln]
        return (own or quiet or [""])[0][:300]

    @property
    def verdict(self) -> str:
        if self.returncode == 124 or "Traceback (most recent call last)" in self.stderr:
            return "loud"
        wanted = {"refuse": 2, "succeed": 0, "interrupt": 130, "killed": -9}[self.expect]
        if self.returncode == wanted:
            return "held" if self.correct else ("silent" if wanted == 0 else "loud")
        return "silent" if self.returncode == 0 else "loud"


@dataclass
class Lab:
    root: Path
    tokenizer: object = field(repr=False)

    @classmethod
    def make(cls, root: Path, tokenizer) -> "Lab":
        lab = cls(root, tokenizer)
        save_base(root / "base", tokenizer)
        lab.notes(root / "notes")
        return lab

    def notes(self, folder: Path, n: int = 5) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"note{i}.txt").write_text(english_note(i))
        return folder

    def recipe(self, **settings) -> Path:
        values = dict(model=str(self.root / "base"), sources=[{"kind": "text", "path": str(self.root / "notes")}],
                      output_dir=str(self.root / "runs"), seq_len=32, micro_batch=2, target_effective_batch=2,
                      max_steps=2, lr=3e-3, eval_context=32, eval_max_tokens=64, progress=False, checkpoint_every=1,
                      log_with=None)
        path = self.root / "recipe.yaml"
        path.write_text(yaml.safe_dump({**values, **settings}))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                "MEMFIT_CACHE": str(self.root / "cache"), **extra}

    def run(self, *args, expect: str, check=None, timeout: int = 300, env: dict | None = None,
            note: str = "", program: str = "memfit") -> Outcome:
        """`memfit ARGS` in the lab (`program="python"`: `python ARGS`); `check(outcome)` (after the command) tells
        whether its result is right."""
        command = [sys.executable, *(["-m", "memfit"] if program == "memfit" else []), *map(str, args)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env or self.env(), cwd=self.root,
                                  timeout=timeout)
            rc, stderr, stdout = done.returncode, done.stderr, done.stdout
        except subprocess.TimeoutExpired:
            rc, stderr, stdout = 124, f"no answer within {timeout} s", ""
        shown = [program, *(str(a).replace(str(self.root), ".") for a in args)]
        out = Outcome(shown, rc, stderr, expect, note=note, stdout=stdout)
        try:
            out.correct = True if check is None else bool(check(out))
        except (OSError, ValueError, KeyError, StopIteration) as exc:  # the result the check reads is not there
            out.correct, out.note = False, f"{note} (check failed: {type(exc).__name__}: {exc})".strip()
        return out

    def train(self, *flags, **settings) -> Path:
        """A finished run (raises when training fails: the case's own command is what gets a verdict)."""
        done = self.run("train", self.recipe(**settings), *flags, expect="succeed")
        if done.returncode != 0:
            raise RuntimeError(f"setting up the case failed: {done.stderr[-2000:]}")
        return self.run_dir(settings.get("output_dir"))

    def run_dir(self, output_dir: str | None = None) -> Path:
        return next(Path(output_dir or self.root / "runs").iterdir())

    def results(self, output_dir: str | None = None) -> dict:
        return json.loads((self.run_dir(output_dir) / "results.json").read_text())


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def truncate(path: Path, fraction: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * fraction)])


def fresh_folder(parent: Path, name: str) -> Path:
    folder = parent / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
