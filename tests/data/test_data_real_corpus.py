"""The 12 real PDFs of ../shared/corpus/climate: extraction, cleaning residue, references and the split.

One extraction per session (conftest's `climate_corpus`); everything else reads its text cache.
"""
from __future__ import annotations

import pytest

from memfit.data import CleanOptions, extract_pdfs, inspect_corpus

# Pages and pypdf character counts from the corpus MANIFEST.md.
MANIFEST = {
    "ipcc-ar6-syr-spm.pdf": (36, 140_889), "ipcc-ar6-wg3-spm.pdf": (50, 222_208), "ipcc-sr15-spm.pdf": (24, 91_215),
    "ipcc-srccl-spm.pdf": (36, 137_853), "ipcc-srocc-spm.pdf": (36, 129_689),
    "ipcc-ar6-wg2-ccp7-tropical-forests.pdf": (42, 257_814), "ipcc-ar6-wg3-ch15-investment-finance.pdf": (169, 648_879),
    "ipcc-ar6-wg1-glossary.pdf": (42, 259_714), "rolnick-2019-tackling-climate-change-with-ml.pdf": (111, 377_202),
    "unfccc-2015-paris-agreement-decision.pdf": (36, 113_588),
    "natcomms-2022-compound-marine-heatwaves-acidity.pdf": (12, 79_603),
    "scirep-2021-marine-heatwave-networks.pdf": (11, 56_918),
}
# Justified residue: the SYR cover page's title line "Summary for Policymakers" matches a header string but is the
# document's title, not a running header (the SYR's running header is "Approved  Summary for Policymakers  IPCC AR6
# SYR", which is removed).
ALLOWED_RESIDUE = {("ipcc-ar6-syr-spm.pdf", "known_headers"): 1}


@pytest.fixture(scope="module")
def report(climate_dir, climate_cache, climate_corpus, tiny_tokenizer):
    """What `memfit data inspect` computes: artefacts per file and the split (with a tiny tokenizer)."""
    return inspect_corpus(climate_dir, cache_dir=climate_cache, tokenizer=tiny_tokenizer, block_size=1024)


def test_all_twelve_pdfs_extract_as_the_manifest_says(climate_corpus):
    assert climate_corpus.errors == [] and climate_corpus.warnings == []
    found = {doc.name: (doc.n_pages, sum(map(len, doc.pages))) for doc in climate_corpus.documents}
    assert found == MANIFEST


def test_second_run_reuses_the_text_cache(climate_dir, climate_cache, climate_corpus):
    again = extract_pdfs(climate_dir, climate_cache)
    assert all(doc.from_cache for doc in again.documents) and len(again.documents) == 12
    assert [d.pages for d in again.documents] == [d.pages for d in climate_corpus.documents]


def test_artefacts_before_cleaning_match_the_manifest(report):
    before = {f.name: f.before for f in report.files}
    ligatures = {"ipcc-srocc-spm.pdf": 631, "ipcc-ar6-wg3-spm.pdf": 43, "ipcc-srccl-spm.pdf": 30,
                 "ipcc-sr15-spm.pdf": 17, "rolnick-2019-tackling-climate-change-with-ml.pdf": 624,
                 "natcomms-2022-compound-marine-heatwaves-acidity.pdf": 210}
    assert {name: before[name]["ligatures"] for name in ligatures} == ligatures
    assert before["ipcc-sr15-spm.pdf"]["glyph_names"] == 4 and before["ipcc-srccl-spm.pdf"]["glyph_names"] == 1
    assert before["ipcc-ar6-wg2-ccp7-tropical-forests.pdf"]["replacement_chars"] == 1448
    assert before["ipcc-ar6-wg3-ch15-investment-finance.pdf"]["line_numbers"] > 5000
    assert before["rolnick-2019-tackling-climate-change-with-ml.pdf"]["hyphenations"] > 300
    assert all(f.before["running_lines"] >= f.pages for f in report.files if f.pages > 20)


def test_residual_artefacts_after_cleaning_are_zero(report):
    residue = {(f.name, key): count for f in report.files for key, count in f.after.items() if count}
    assert residue == ALLOWED_RESIDUE
    assert all(f.status == "kept" and f.english_ratio > 0.2 for f in report.files)


def test_cleaned_text_reads_right(report, climate_corpus):
    docs = {doc.name: doc for doc in climate_corpus.documents}
    glossary = docs["ipcc-ar6-wg1-glossary.pdf"].clean_text()
    assert "GlossarySPM" not in glossary and "\nAVII\n" not in glossary
    ch15 = docs["ipcc-ar6-wg3-ch15-investment-finance.pdf"].clean_text()
    assert "Finance to reduce net greenhouse gas (GHG) emissions and enhance resilience to climate impacts\n" in ch15
    assert "ACCEPTED VERSION" not in ch15 and "Total pages: 157" not in ch15
    rolnick = docs["rolnick-2019-tackling-climate-change-with-ml.pdf"].clean_text()
    assert "agriculture" in rolnick and "agri-\nculture" not in rolnick and "ﬁ" not in rolnick


def test_rolnick_references_start_on_page_63_and_can_be_dropped(climate_corpus):
    rolnick = next(d for d in climate_corpus.documents if d.name.startswith("rolnick"))
    assert rolnick.pages[62].startswith("References\n[1] Joseph Romm")
    full, dropped = rolnick.clean_text(), rolnick.clean_text(CleanOptions(drop_references=True))
    assert "Joseph Romm" in full and "Joseph Romm" not in dropped and "[826]" not in dropped
    assert dropped[-100:] in full[: full.index("\nReferences\n[1] Joseph Romm")]  # cut right at the heading
    assert 0.4 < 1 - len(dropped) / len(full) < 0.6  # the bibliography is about half of the text


def test_real_corpus_split_statistics(report):
    stats = report.split_stats
    assert (stats["train"].documents, stats["test"].documents) == (10, 2)
    assert stats["train"].pages + stats["test"].pages == sum(pages for pages, _ in MANIFEST.values())
    assert not set(report.plan.train) & set(report.plan.test)
    assert stats["train"].blocks == -(-(stats["train"].tokens + stats["train"].documents) // 1024)
    text = report.render()
    assert all(name in text for name in MANIFEST)
    assert "TOTAL (kept)" in text and "Split by document (seed 0, tokenizer" in text and "test documents:" in text
