"""One test per cleaning step, on strings shaped like the real corpus' extraction output."""
from __future__ import annotations

from pdf_factory import english_page

from memfit.data.pdf.clean import (
    CleanOptions, attach_detached_accents, clean_document, drop_reference_section, join_hyphenated_line_breaks,
    normalise_whitespace, remove_dot_leaders, remove_replacement_characters, replace_glyph_name_ligatures,
    replace_unicode_ligatures,
)


def test_unicode_ligatures_become_letters():
    assert replace_unicode_ligatures("conﬁdence ﬂux eﬀect eﬃcient baﬄe ﬅyle ﬆop") == \
        "confidence flux effect efficient baffle style stop"


def test_unicode_ligatures_leave_other_compatibility_characters_alone():
    assert replace_unicode_ligatures("CO₂ at 1.5 °C, ½") == "CO₂ at 1.5 °C, ½"  # NFKC would rewrite these


def test_glyph_name_ligatures_from_sr15_and_srccl():
    assert replace_glyph_name_ligatures("reduced a/f_ter 2030; shi/f_ts; from le/f_t") == \
        "reduced after 2030; shifts; from left"
    assert replace_glyph_name_ligatures("/f_ive e/f_f_icient /f_f_l") == "five efficient ffl"


def test_glyph_name_pattern_spares_url_paths():
    url = "https://www.bis.org/publ/qtrpdf/r_qt1812g.pdf"
    assert replace_glyph_name_ligatures(url) == url


def test_detached_latex_accents_are_composed():
    assert attach_detached_accents("Konrad P. K¨ording, Fr´ed´eric, ETH Z¨urich") == \
        "Konrad P. Körding, Frédéric, ETH Zürich"


def test_replacement_characters_and_dot_leaders_are_removed():
    toc = "Executive Summary   \ufffd\ufffd\ufffd\ufffd\ufffd  2371"
    assert "\ufffd" not in remove_replacement_characters(toc)
    assert remove_dot_leaders("Introduction ........................ 3") == "Introduction  3"
    assert remove_dot_leaders("and so on... really") == "and so on... really"  # an ellipsis is text


def test_end_of_line_hyphenation_is_joined():
    text = "the use of ML in agri-\nculture and the re-\nquired data"
    assert join_hyphenated_line_breaks(text) == "the use of ML in agriculture and the required data"


def test_space_and_trailing_space_hyphenation_variants():
    assert join_hyphenated_line_breaks("the conse -\nquences were") == "the consequences were"
    assert join_hyphenated_line_breaks("in high Lati- \n   tudes") == "in high Latitudes"


def test_real_compounds_keep_their_hyphen():
    text = "long-term risk. The long-\nterm trend; Cross-\nChapter Box 3; yr-\n1; 2026-\n2030"
    assert join_hyphenated_line_breaks(text) == \
        "long-term risk. The long-term trend; Cross-Chapter Box 3; yr-1; 2026-2030"


def test_hyphenation_follows_the_documents_own_spelling():
    # "multidecadal" is written solid elsewhere in this document, so the line break is a syllable break
    assert join_hyphenated_line_breaks("multidecadal swings; the multi-\ndecadal mode") == \
        "multidecadal swings; the multidecadal mode"
    # without evidence, a known prefix or two real words make a compound
    assert join_hyphenated_line_breaks("the non-\ncoastal zone") == "the non-coastal zone"
    assert join_hyphenated_line_breaks("a time series of time -\nseries data") == "a time series of time-series data"


def test_whitespace_and_non_breaking_spaces_are_normalised():
    text = "Approved        Summary\u00a0for  Policymakers   \n   \n\n\n\nIPCC\u202fAR6 \u00adSYR "
    assert normalise_whitespace(text) == "Approved Summary for Policymakers\n\nIPCC AR6 SYR"


def test_reference_section_is_dropped_only_after_the_body():
    body = "Introduction\nReferences\n" + "Body text. " * 50 + "\n"
    text = body + "References\n[1] A. Author. A paper. 2019.\n[2] B. Author. Another. 2020."
    dropped = drop_reference_section(text)
    assert dropped.startswith("Introduction\nReferences\n")  # the early (table-of-contents) heading is kept
    assert "[1] A. Author" not in dropped and dropped.endswith("Body text.")
    assert drop_reference_section("no bibliography here") == "no bibliography here"


def test_clean_document_combines_the_steps_and_options_switch_them():
    header = "Summary for Policymakers"
    pages = [f"SPM\n{header}\n{n}\n{english_page(n, lines=6)}\nThe ﬁrst agri-\nculture result.\n{english_page(n + 9)}"
             for n in range(1, 6)]
    text = clean_document(pages)
    assert header not in text and "SPM" not in text and "ﬁ" not in text
    assert text.count("The first agriculture result.") == 5
    assert english_page(3, lines=6) in text
    raw = clean_document(pages, CleanOptions(running_lines=False, ligatures=False, hyphenation=False))
    assert header in raw and "ﬁ" in raw and "agri-\nculture" in raw
