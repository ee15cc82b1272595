"""The run summary's sample answer: the model answers one fixed prompt (`eval.sample_prompt`) before and after
training, greedily and briefly, through memfit's own decode (memfit/generation.py, what `memfit generate` uses), so
a reader sees what the fine-tune did to the model's words beside what it did to its perplexity.

A text run continues the prompt; a chat run (chat or prompt/completion training samples) asks it as one user turn
through the run's chat template, as the trained model will be asked. An empty prompt takes no sample. Weights
sharded across processes (DeepSpeed ZeRO, FSDP) would need every rank inside `generate`: no sample there, said in
results.json rather than left out silently. A generation that fails (a strategy whose forward cannot decode) is
recorded the same way: the sample is a view of the run, never a reason to lose the run's report."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..generation import answer

SAMPLE_TOKENS = 32  # greedy tokens per answer: a sentence, seconds on 2 CPU cores for a 135M model
SHARDED_ENGINES = ("DEEPSPEED", "FSDP")


class SampleAnswer:
    """Answers to `prompt` taken by `take(model, "before" | "after")`; `record()` is results.json's entry."""

    def __init__(self, prompt: str, tokenizer, chat: bool, state, say: Callable[[str], None]):
        self.prompt, self.tokenizer, self.chat, self.state, self.say = prompt, tokenizer, chat, state, say
        self.answers: dict[str, str] = {}
        engine = str(getattr(state, "distributed_type", "NO")).upper()
        self.skipped: Optional[str] = (
            "eval.sample_prompt is empty" if not prompt.strip() else
            f"weights sharded by {engine.split('.')[-1]}: generation would need every rank"
            if any(name in engine for name in SHARDED_ENGINES) else None)

    def take(self, model, label: str) -> None:
        if self.skipped or not self.state.is_main_process:  # whole weights on every rank: the main one answers
            return
        try:
            text = answer(model, self.tokenizer, self.prompt, chat=self.chat, max_new_tokens=SAMPLE_TOKENS)
        except Exception as exc:  # noqa: BLE001 - a sample must never cost a finished run its report; said, recorded
            self.skipped = f"generation failed {label} training: {type(exc).__name__}: {exc}"
            self.say(f"note: no sample answer: {self.skipped}")
            return
        self.answers[label] = text
        self.say(f"sample answer {label} training: {one_line(text)!r}")

    def record(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped}
        return {"prompt": self.prompt, "chat": self.chat, "max_new_tokens": SAMPLE_TOKENS, "greedy": True,
                **self.answers}


def one_line(text: str) -> str:
    """An answer on one line (the summary's table cells and log lines hold no line breaks)."""
    return " ".join(text.split())
