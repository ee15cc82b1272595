"""Cheap English detection: the share of words that are common English function words.

Running English prose scores about 0.3-0.5; French, German or Spanish text scores well under 0.1 (they share only
a handful of short words such as "a", "on", "in"), and so does text a PDF's broken font encoding turned into
garbage. No dependency and no model: good enough to flag a document for a human, not to identify a language.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ENGLISH_FUNCTION_WORDS = frozenset("""
a about above after again against all also an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just may might more most must my no nor not of off on once only or other
our out over own same shall she should so some such than that the their theirs them then there these they this
those through to too under until up upon very was we were what when where which while who whom why will with
would you your
""".split())
MIN_ENGLISH_RATIO = 0.15
MIN_WORDS = 50  # below this the ratio is noise; such documents are not flagged
# Chinese and Japanese are written without spaces, so a whole CJK sentence would count as one "word" and a short
# Chinese document would slip under MIN_WORDS: each CJK character (hanzi, kana, hangul syllable) counts as a word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W\d_])+")


def english_ratio(text: str) -> tuple[float, int]:
    """(share of words that are English function words, number of words)."""
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0, 0
    return sum(word in ENGLISH_FUNCTION_WORDS for word in words) / len(words), len(words)


@dataclass(frozen=True)
class LanguageCheck:
    ratio: float
    words: int

    @property
    def is_english(self) -> bool:
        return self.words < MIN_WORDS or self.ratio >= MIN_ENGLISH_RATIO

    def describe(self) -> str:
        return (f"{self.ratio:.1%} of its {self.words} words are common English words "
                f"(English text scores over {MIN_ENGLISH_RATIO:.0%})")


def check_language(text: str) -> LanguageCheck:
    return LanguageCheck(*english_ratio(text))
