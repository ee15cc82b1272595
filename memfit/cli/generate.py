"""`memfit generate RUN_DIR "prompt"`: the fine-tuned model of a finished run answers a prompt.

The run's base is loaded as it trained (its stack's weight settings) with its adapter through the checked loader
(memfit/recipes/saved_run.py), the tokenizer saved beside the adapter (else the base's). Greedy decoding unless
--temperature is given, so the same prompt gives the same answer. --chat wraps the prompt as one user turn in the
tokenizer's chat template (what an instruct model such as the embedded SmolLM2 expects); without it the prompt is
continued as plain text. --base answers with the base model, without the adapter: the answer before training.
stdout carries the answer alone; loading messages go to stderr. The decode is memfit/generation.py's (the run
summary's sample answers use it too)."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..generation import GenerateError, answer, prompt_ids


def generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memfit generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by `memfit train` (holds results.json and adapter/)")
    p.add_argument("prompt", help="the text to answer (or continue, without --chat); '-' reads it from stdin")
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template (one user turn)")
    p.add_argument("--system", help="with --chat: a system message before the user turn")
    p.add_argument("--max-new-tokens", type=int, default=128, help="most tokens generated (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); > 0: sample at this "
                                                                   "temperature, seeded by --seed")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling (default: %(default)s)")
    p.add_argument("--base", action="store_true", help="the base model without the adapter (before training)")
    return p


def check_settings(args) -> None:
    if not 1 <= args.max_new_tokens <= 1_000_000:
        raise GenerateError(f"--max-new-tokens {args.max_new_tokens} must be between 1 and 1000000")
    if not 0.0 <= args.temperature <= 100.0:  # also refuses nan and inf
        raise GenerateError(f"--temperature {args.temperature} must be between 0 (greedy) and 100")
    if args.system and not args.chat:
        raise GenerateError("--system applies to a chat prompt: add --chat")


def run_tokenizer_of(run):
    """The tokenizer saved beside the adapter (what the run trained with), else the one of the run's base."""
    from ..recipes.saved_run import run_tokenizer

    folder = Path(run.adapter_dir)
    if not (folder / "tokenizer_config.json").is_file():
        return run_tokenizer(run)
    from ..models import load_tokenizer

    return load_tokenizer(str(folder))


def generate_main(argv: list[str]) -> int:
    args = generate_parser().parse_args(argv)
    check_settings(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise GenerateError("the prompt is empty: pass the text to answer")
    from ..recipes.saved_run import load_base, load_trained, read_run

    with contextlib.redirect_stdout(sys.stderr):  # stdout: the answer alone (libraries print on import)
        run = read_run(args.run_dir)
        tokenizer = run_tokenizer_of(run)
        prompt_ids(tokenizer, prompt, args.chat, args.system)  # a missing chat template refused before the load
        model = load_base(run) if args.base else load_trained(run)
        text = answer(model, tokenizer, prompt, chat=args.chat, system=args.system,
                      max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    print(text)
    return 0
