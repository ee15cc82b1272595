"""dedupe.py: exact and near duplicates (case, spacing, punctuation) name the kept document; other texts pass."""
from memfit.data.text.dedupe import Duplicates, near_text


def test_exact_and_near_duplicates_name_the_first_copy_and_different_texts_pass():
    seen = Duplicates()
    assert seen.duplicate_of("Sea ice is thinning.") is None
    seen.keep("Sea ice is thinning.", "a.txt")
    assert "same text as a.txt" in seen.duplicate_of("Sea ice is thinning.")
    assert "nearly the same text as a.txt" in seen.duplicate_of("SEA  ice, is thinning!")
    assert seen.duplicate_of("Sea ice is thickening.") is None
    assert near_text("A-b  C\n") == "a b c"
