"""Cleaning of pypdf page texts into training text: one small function per artefact, combined by `clean_document`.

Order matters: page-structure steps (headers, line numbers) run per page before the pages are joined, so that the
joined text can then repair hyphenation across page breaks.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from memfit.data.pdf.line_numbers import remove_line_numbers
from memfit.data.pdf.page_layout import find_running_lines, remove_running_lines

UNICODE_LIGATURES = {
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st",
}
_UNICODE_LIGATURE = re.compile("[" + "".join(UNICODE_LIGATURES) + "]")
# Glyph names pypdf emits when a font has no ToUnicode entry for a ligature ("a/f_ter", "shi/f_ts", "/f_f_i").
# Restricted to real ligature names so URL paths such as "/r_qt1812g" are left alone.
GLYPH_NAME_LIGATURE = re.compile(r"/((?:f_)+[fijlbhkt]|s_t|c_t|T_h)")
REPLACEMENT_CHARACTER = "\ufffd"
# Table-of-contents leaders: "Introduction ........ 3"; a real ellipsis has three dots and is kept.
DOT_LEADER = re.compile(r"(?:\.[ \t]?){4,}")
# LaTeX accents extracted as a spacing mark before the letter: "K¨ording", "Fr´ed´eric".
_DETACHED_ACCENTS = {"\u00a8": "\u0308", "\u00b4": "\u0301", "`": "\u0300", "\u02c6": "\u0302", "\u02dc": "\u0303"}
_DETACHED_ACCENT = re.compile(r"([\u00a8\u00b4\u02c6\u02dc])([A-Za-z])")
# A word broken at a line end: "agri-\nculture", "conse -\nquences" (scirep), "low- \ncarbon" (trailing spaces).
EOL_HYPHEN = re.compile(r"\b(\w+)([ \t]?)-[ \t]*\n[ \t]*(\w+)")
# Prefixes the IPCC and most style guides write hyphenated; used only when the document gives no evidence.
_HYPHENATED_PREFIXES = frozenset(
    "non multi pre post co inter intra socio cross self mid anti semi sub well low high long short large small".split())
_WIDE_SPACES = r"\u00a0\u2000-\u200a\u202f\u205f\u3000"  # no-break, en/em/thin, narrow no-break, ideographic
HORIZONTAL_SPACE_RUN = re.compile(rf"[ \t{_WIDE_SPACES}]{{2,}}|[{_WIDE_SPACES}]")
_INVISIBLE = re.compile(r"[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
REFERENCE_HEADING = re.compile(
    r"^[ \t]*(?:\d+(?:\.\d+)*\.?[ \t]+)?(?:References(?: and Notes)?|REFERENCES|Bibliography|BIBLIOGRAPHY"
    r"|Literature Cited|Works Cited)[ \t]*$", re.MULTILINE)


def replace_unicode_ligatures(text: str) -> str:
    """ﬁ -> fi, ﬂ -> fl, ... (explicit map: NFKC would also rewrite superscripts, fractions and units)."""
    return _UNICODE_LIGATURE.sub(lambda m: UNICODE_LIGATURES[m.group()], text)


def replace_glyph_name_ligatures(text: str) -> str:
    """"/f_i" -> "fi", "/f_f_i" -> "ffi": the glyph name's letters are the ligature's letters."""
    return GLYPH_NAME_LIGATURE.sub(lambda m: m.group(1).replace("_", ""), text)


def attach_detached_accents(text: str) -> str:
    """"K¨ording" -> "Körding": move the spacing accent onto the following letter and compose."""
    return unicodedata.normalize(
        "NFC", _DETACHED_ACCENT.sub(lambda m: m.group(2) + _DETACHED_ACCENTS[m.group(1)], text))


def remove_replacement_characters(text: str) -> str:
    """U+FFFD marks glyphs pypdf could not map (CCP7's dot leaders): there is no text to recover."""
    return text.replace(REPLACEMENT_CHARACTER, " ")


def remove_dot_leaders(text: str) -> str:
    return DOT_LEADER.sub(" ", text)


def word_counts(text: str) -> tuple[Counter[str], Counter[str]]:
    """Lower-cased words and inline hyphenated compounds of a text, ignoring words broken at line ends."""
    unbroken = EOL_HYPHEN.sub(" ", text)
    words = Counter(w.lower() for w in re.findall(r"[^\W\d_]+", unbroken))
    compounds = Counter(c.lower() for c in re.findall(r"[^\W\d_]+-[^\W\d_]+", unbroken))
    return words, compounds


def _keep_hyphen(left: str, right: str, words: Counter[str], compounds: Counter[str]) -> bool:
    if left[-1].isdigit() or right[0].isdigit() or right[0].isupper():
        return True  # "2026-\n2030", "yr-\n1", "Cross-\nChapter", "non-\nCO2"
    joined, hyphenated = words[(left + right).lower()], compounds[f"{left}-{right}".lower()]
    if joined != hyphenated:
        return hyphenated > joined  # the document itself spells the word one way elsewhere
    if left.lower() in _HYPHENATED_PREFIXES:
        return True
    # Two real words ("time -\nseries") form a compound; a fragment ("agri-", "com-") was a syllable break.
    return words[left.lower()] > 0 and words[right.lower()] > 0 and len(left) > 1 and len(right) > 1


def join_hyphenated_line_breaks(text: str, vocabulary: tuple[Counter[str], Counter[str]] | None = None) -> str:
    """Join words broken at line ends ("agri-\\nculture" -> "agriculture") but keep real compounds
    ("long-\\nterm" -> "long-term"), deciding from how the document spells the word elsewhere."""
    words, compounds = vocabulary or word_counts(text)

    def fix(m: re.Match[str]) -> str:
        left, space, right = m.groups()
        if not _keep_hyphen(left, right, words, compounds):
            return left + right
        return f"{left} - {right}" if space and right[0].isupper() else f"{left}-{right}"

    return EOL_HYPHEN.sub(fix, text)


def normalise_whitespace(text: str) -> str:
    """Non-breaking/thin spaces -> space, runs collapsed, invisible characters (soft hyphen, ZWSP) removed,
    trailing spaces stripped and blank-line runs reduced to one empty line."""
    text = _INVISIBLE.sub("", text)
    text = HORIZONTAL_SPACE_RUN.sub(" ", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def drop_reference_section(text: str, min_position: float = 0.3) -> str:
    """Cut from the last stand-alone "References"/"Bibliography" heading to the end.

    Only headings past `min_position` of the text count, so a table-of-contents entry never truncates a document;
    the last heading is used so that at most the final bibliography (and what follows it) is lost.
    """
    headings = [m for m in REFERENCE_HEADING.finditer(text) if m.start() >= min_position * len(text)]
    return text[: headings[-1].start()].rstrip() if headings else text


@dataclass(frozen=True)
class CleanOptions:
    """Switches for each cleaning step (all on, except dropping references)."""

    ligatures: bool = True
    glyph_names: bool = True
    detached_accents: bool = True
    running_lines: bool = True
    line_numbers: bool = True
    replacement_characters: bool = True
    dot_leaders: bool = True
    hyphenation: bool = True
    whitespace: bool = True
    drop_references: bool = False


def clean_pages(pages: Sequence[str], options: CleanOptions = CleanOptions()) -> list[str]:
    """The per-page steps; pages stay separate so header and line-number residue can be measured per page."""
    steps = [
        (options.ligatures, replace_unicode_ligatures),
        (options.glyph_names, replace_glyph_name_ligatures),
        (options.detached_accents, attach_detached_accents),
        (options.replacement_characters, remove_replacement_characters),
        (options.dot_leaders, remove_dot_leaders),
    ]
    cleaned = list(pages)
    for enabled, step in steps:
        if enabled:
            cleaned = [step(page) for page in cleaned]
    if options.line_numbers:
        cleaned, _ = remove_line_numbers(cleaned)
    if options.running_lines:
        running = find_running_lines(cleaned)
        cleaned = [remove_running_lines(page, running)[0] for page in cleaned]
    return cleaned


def join_pages(cleaned_pages: Sequence[str], options: CleanOptions = CleanOptions()) -> str:
    """The whole-text steps on pages from `clean_pages`: hyphenation is repaired after whitespace is normalised
    (so "yr-1  -\n" runs collapse first) and across page breaks."""
    text = "\n".join(cleaned_pages)
    if options.drop_references:
        text = drop_reference_section(text)
    if options.whitespace:
        text = normalise_whitespace(text)
    if options.hyphenation:
        text = join_hyphenated_line_breaks(text)
    return text


def clean_document(pages: Sequence[str], options: CleanOptions = CleanOptions()) -> str:
    """pypdf page texts of one document -> one clean training text."""
    return join_pages(clean_pages(pages, options), options)
