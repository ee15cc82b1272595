"""Fixtures of the data-pipeline tests: the real climate corpus (extracted once per session through the text cache),
a tiny in-process tokenizer, and an empty folder for hand-made PDFs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# CI checks out ../shared next to the repository; MEMFIT_CLIMATE_CORPUS points elsewhere when needed.
CLIMATE_DIR = Path(os.environ.get("MEMFIT_CLIMATE_CORPUS",
                                  Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "climate"))


@pytest.fixture(scope="session")
def climate_dir() -> Path:
    if not CLIMATE_DIR.is_dir():
        pytest.skip(f"real corpus not found at {CLIMATE_DIR}")
    return CLIMATE_DIR.resolve()


@pytest.fixture(scope="session")
def climate_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("climate-text-cache")


@pytest.fixture(scope="session")
def climate_corpus(climate_dir, climate_cache):
    """The one real extraction of the session (~20 s on 2 cores); everything else reads the cache it fills."""
    from memfit.data import extract_pdfs

    return extract_pdfs(climate_dir, climate_cache)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Byte-level BPE trained in milliseconds on a few sentences: any text tokenizes, EOS and PAD exist."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from pdf_factory import english_page

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>", "<pad>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([english_page(seed) for seed in range(5)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture
def pdf_dir(tmp_path) -> Path:
    directory = tmp_path / "pdfs"
    directory.mkdir()
    return directory
