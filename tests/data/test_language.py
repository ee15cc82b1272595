"""The cheap English check: the share of common English function words, CJK characters counted one word each, and
too few words never flagged."""
from __future__ import annotations

from memfit.data.text.language import MIN_ENGLISH_RATIO, MIN_WORDS, check_language, english_ratio

FRENCH = ("La Conférence des Parties, rappelant sa décision sur l'établissement du groupe de travail spécial de la "
          "plateforme de Durban pour une action renforcée, rappelant également les articles de la Convention. ")


def test_the_ratio_counts_function_words_among_all_words():
    assert english_ratio("the ocean and the ice") == (3 / 5, 5)
    assert english_ratio("") == (0.0, 0) and english_ratio("1234 5678 -- !!") == (0.0, 0)  # digits are no words
    assert english_ratio("The OCEAN") == (0.5, 2)  # case does not matter


def test_french_is_flagged_and_english_prose_is_not():
    french = check_language(FRENCH * 3)
    assert french.words >= MIN_WORDS and french.ratio < MIN_ENGLISH_RATIO and not french.is_english
    assert "English text scores over 15%" in french.describe()
    assert check_language("Warming of the ocean is faster than it was in the past decades. " * 6).is_english


def test_too_few_words_are_never_flagged():
    text = "Bonjour le monde"
    assert check_language(text).words < MIN_WORDS and check_language(text).is_english


def test_a_short_chinese_document_is_not_english():
    text = "气候变化是人类面临的最严峻挑战之一，全球变暖导致极端天气事件频发。" * 10  # ~340 characters, one "run"
    check = check_language(text)
    assert check.words >= MIN_WORDS and not check.is_english
    assert check_language("Hello 世界, the climate is changing " * 20).words > 100
    assert check_language("The ocean is warming and the ice is melting. " * 10).is_english
