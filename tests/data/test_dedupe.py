"""dedupe.py: exact and near duplicates (case, spacing, punctuation) name the kept document; other texts pass."""
from memfit.data.text.dedupe import Duplicates, near_text


def test_exact_and_near_duplicates_name_the_first_copy_and_different_texts_pass():
    seen = Duplicates()
    assert seen.check("Sea ice is thinning.", "a.txt") is None
    assert "same text as a.txt" in seen.check("Sea ice is thinning.", "b.txt")
    assert "nearly the same text as a.txt" in seen.check("SEA  ice, is thinning!", "c.txt")
    assert seen.check("Sea ice is thickening.", "d.txt") is None
    assert "same text as d.txt" in seen.check("Sea ice is thickening.", "e.txt")
    assert near_text("A-b  C\n") == "a b c"
