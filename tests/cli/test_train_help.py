"""`memfit train --help` answers: every setting with the value the run will use on this device, the keys of each
data source, the knobs (fixed micro-batch, packing, validation split, tokenizer and chat template, assistant-only
loss, log interval), `--model-config` with `--architecture` as its alias. In-process: no subprocess start-up."""
import re

import torch

from memfit.cli.train import train_parser, parse_config

ON_CPU = not torch.cuda.is_available()


def _help(nested=None) -> str:
    return re.sub(r"\s+", " ", train_parser(nested or {}).format_help())


def test_every_option_shows_the_value_the_run_uses():
    text = _help()
    assert "PydanticUndefined" not in text
    if ON_CPU:  # the CPU device defaults, not None
        for flag, value in [("--lr", "0.003"), ("--seq-len", "256"), ("--eval-context", "256"),
                            ("--max-steps", "6"), ("--target-effective-batch", "8")]:
            assert re.search(re.escape(flag) + r" \S+ .*?\(default: " + re.escape(value) + r"\)", text), flag
    # the bundled sample, as the one PDF source a run records (what --pdf-dir DIR also becomes)
    assert re.search(r"--sources LIST .*?\(default: \[\{'kind': 'pdf', 'path': '[^']*climate'\}\]\)", text)
    assert "(default: 'tensorboard')" in text and "--warmup FLOAT warm-up" in text


def test_a_recipes_values_are_shown():
    assert "(default: 1e-05)" in _help({"train": {"lr": 1e-5}})


def test_the_keys_of_every_source_kind_are_listed():
    text = _help()
    for line in ("pdf path", "text path, suffixes, clean", "hub format", "every name, on_error, weight"):
        assert line in text


def test_the_knobs_are_settings():
    text = _help()
    for flag in ("--micro-batch", "--packing", "--validation-fraction", "--tokenizer", "--chat-template",
                 "--train-on-inputs", "--log-every", "--sample-prompt"):
        assert flag in text
    knobs = parse_config(["--packing", "false", "--validation-fraction", "0.1", "--sample-prompt", ""])
    assert knobs.data.packing is False and knobs.data.validation_fraction == 0.1 and knobs.eval.sample_prompt == ""
    defaults = " ".join(text.split())  # the effective defaults are in the help
    for said in ("padding masked out of attention and loss (a document longer than a block continues in blocks of "
                 "its own) (default: True)", "0: no validation split (eval_every then scores the test documents) "
                 "(default: 0.0)", "empty: no sample (default: 'The main finding is that')"):
        assert said in defaults
    cfg = parse_config(["--micro-batch", "2", "--log-every", "5", "--tokenizer", "tok", "--architecture", "a"])
    assert cfg.plan.micro_batch == 2 and cfg.train.log_every == 5 and cfg.model.tokenizer == "tok"
    assert cfg.model.config == "a" == parse_config(["--model-config", "a"]).model.config
