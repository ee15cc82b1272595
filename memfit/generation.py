"""Answers of a causal LM to one prompt: what `memfit generate` prints and the run summary's sample answer before and
after training (memfit/recipes/finetune.py) - one decode, so the two never answer differently.

Greedy unless a temperature is given, so the same prompt gives the same answer. `chat` wraps the prompt as one user
turn in the tokenizer's chat template (what an instruct model expects); otherwise the prompt is continued as plain
text. The model's train/eval mode and the caller's random state are put back afterwards: a sample taken before
training must not leave dropout off or change the run's random draws."""
from __future__ import annotations

from typing import Optional


class GenerateError(ValueError):
    """A prompt, setting or tokenizer that cannot generate as asked; the message says the fix."""


def prompt_ids(tokenizer, prompt: str, chat: bool, system: Optional[str] = None):
    """Token ids (1, n) of the prompt: as one chat turn ready for the assistant's answer, or the plain text."""
    if not chat:
        return tokenizer(prompt, return_tensors="pt").input_ids
    if not getattr(tokenizer, "chat_template", None):
        raise GenerateError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template: drop "
                            f"--chat to continue the prompt as plain text")
    turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids  # the template has them


def answer(model, tokenizer, prompt: str, *, chat: bool = False, system: Optional[str] = None,
           max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0) -> str:
    """The model's answer to `prompt`, decoded without special tokens; greedy when temperature is 0."""
    import torch
    from transformers import GenerationConfig

    ids = prompt_ids(tokenizer, prompt, chat, system).to(next(model.parameters()).device)
    eos = tokenizer.eos_token_id
    sampling = dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0) if temperature > 0 else \
        dict(do_sample=False)
    config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=eos,
                              pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
                              **sampling)
    was_training = model.training
    model.eval()
    # the seed is the sample's own: the caller's random state (a run's dropout and data order) continues unchanged
    devices = [ids.device] if ids.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    finally:
        model.train(was_training)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
