"""A CI-sized sample of benchmarks/fuzz_pdf_extraction.py (the 500+ run's figures are in benchmarks/results/)."""
import importlib.util
from pathlib import Path

import pytest

from _models import REPO

CORPUS = Path("/work/shared/corpus/climate")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the climate corpus is not on this machine")
def test_mutated_real_pdfs_are_each_parsed_or_skipped_with_a_reason(tmp_path):
    spec = importlib.util.spec_from_file_location("fuzz_pdf", REPO / "benchmarks" / "fuzz_pdf_extraction.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for pdf in sorted(CORPUS.glob("*.pdf"), key=lambda p: p.stat().st_size)[:3]:  # the smallest: quick to excerpt
        (seeds / pdf.name).symlink_to(pdf)
    report = fuzz.fuzz(60, corpus=seeds, batch=30, seed=1)
    assert report["lost"] == [], report["lost"]  # every file accounted for, and each batch's control file parsed
    assert sum(report["outcomes"].values()) == 60 and report["outcomes"].get("skipped", 0) > 0
