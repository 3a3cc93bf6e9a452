"""Text for the keyword index, folded the same way when it is stored and when it is searched.

PostgreSQL's `simple` text-search configuration does no stemming and no accent folding (the embedded
server ships no `unaccent`), so folding happens here: case-folded (ß -> ss) and accents stripped, so
"grosse mauer" finds "Große Mauer".

An object key becomes words the way people type names: folders and the file name, split on anything
that is not a letter or digit (`/ _ - .` and spaces), at camelCase humps and at letter/digit
boundaries, the extension dropped; the file name's words joined into one more word (`IMG_2041.jpg` ->
`img 2041 img2041`) so a whole name typed back is an exact match. A query is split the same way and
becomes a `tsquery` whose last word also matches as a prefix (`IMG_204` finds `IMG_2041`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# An extension is a short alphanumeric suffix that starts with a letter (`.jpg`, `.heic`, `.mp4`),
# so a query such as "version 2.5" keeps its number.
EXTENSION = re.compile(r"\.[^\W\d_]\w{0,4}$")
NOT_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Case- and accent-folded text: what the keyword index stores and what a keyword query looks for."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _humps(chunk: str) -> list[str]:
    """`myHolidayPhoto` -> my, Holiday, Photo; `HTMLParser` -> HTML, Parser; `IMG2041` -> IMG, 2041."""
    parts, start = [], 0
    for i in range(1, len(chunk)):
        before, here = chunk[i - 1], chunk[i]
        after = chunk[i + 1] if i + 1 < len(chunk) else ""
        if (before.isdigit() != here.isdigit()
                or (before.islower() and here.isupper())
                or (before.isupper() and here.isupper() and after.islower())):
            parts.append(chunk[start:i])
            start = i
    parts.append(chunk[start:])
    return parts


def split_words(text: str) -> list[str]:
    """Folded words of `text`: split on non-letters/digits, camelCase humps and letter/digit boundaries."""
    words = []
    for chunk in NOT_WORD.split(text):
        for part in _humps(chunk) if chunk else ():
            words += [word for word in NOT_WORD.split(fold(part)) if word]
    return words


def without_extension(name: str) -> str:
    return EXTENSION.sub("", name)


def name_words(key: str) -> str:
    """The `name_words` column of a key: its folders' and file name's words, then the name's words joined."""
    folders, _, file_name = key.rpartition("/")
    stem = split_words(without_extension(file_name))
    words = split_words(folders) + stem
    if len(stem) > 1:
        words.append("".join(stem))
    return " ".join(words)


def query_words(text: str) -> list[str]:
    """The words a keyword query looks for, split like a key (a typed file name loses its extension)."""
    return split_words(without_extension(text.strip()))


# A query's last word this long also matches as a prefix (IMG_204 finds IMG_2041); a shorter one would
# expand to a large part of the index for little meaning.
PREFIX_MIN = 3


@dataclass(frozen=True)
class TermWords:
    """The words of one query term."""

    words: list[str]
    negative: bool = False  # a minus term: matches must not have all these words
    prefix: bool = True  # typed text: its last word may match as a prefix (quoted terms are whole words)


@dataclass(frozen=True)
class WordQuery:
    """The `to_tsquery('simple', …)` texts of a query's words."""

    match: str  # every plus term's words and not all of any minus term's, as whole words
    match_prefix: str | None  # the same with each plus term's last word also as a prefix; None: no such word
    exact_name: str | None  # the one name the query spells (IMG_2041 -> img2041): such a match ranks first
    in_name: str  # any plus word, found in a name (weight A)
    in_text: str  # any plus word, found in the picture's text (weight B)
    in_place: str = ""  # any plus word, found in its place's names (weight C)
    in_tag: str = ""  # any plus word, found in its own tags or caption (weight D)


def _lexeme(word: str, *, prefix: bool = False, weight: str = "") -> str:
    # Words are letters and digits only (split_words), so quoting them is all tsquery needs.
    return f"'{word}'" + (":*" if prefix else ":" if weight else "") + weight


def _all_words(words: list[str], *, prefix_last: bool = False) -> str:
    return " & ".join(_lexeme(word, prefix=prefix_last and i == len(words) - 1) for i, word in enumerate(words))


def all_of(terms: list[TermWords], *, prefixes: bool = False) -> str | None:
    """tsquery text: each plus term's words, and not all of any minus term's; None when no term has words.
    With `prefixes`, a plus term's last word of PREFIX_MIN letters or more also matches as a prefix."""
    parts = []
    for term in terms:
        if term.words:
            prefix = prefixes and term.prefix and not term.negative and len(term.words[-1]) >= PREFIX_MIN
            parts.append(("!" if term.negative else "") + f"({_all_words(term.words, prefix_last=prefix)})")
    return " & ".join(parts) or None


def word_query(terms: list[TermWords]) -> WordQuery | None:
    """What keyword matching looks for; None when no plus term has a word (nothing to match)."""
    plus = [term for term in terms if term.words and not term.negative]
    match = all_of(terms)
    if not plus or match is None:
        return None
    match_prefix = all_of(terms, prefixes=True)
    words = [word for term in plus for word in term.words]
    return WordQuery(
        match=match,
        match_prefix=match_prefix if match_prefix != match else None,
        exact_name=_lexeme("".join(plus[0].words), weight="A") if len(plus) == 1 else None,
        in_name=" | ".join(_lexeme(word, prefix=True, weight="A") for word in words),
        in_text=" | ".join(_lexeme(word, prefix=True, weight="B") for word in words),
        in_place=" | ".join(_lexeme(word, prefix=True, weight="C") for word in words),
        in_tag=" | ".join(_lexeme(word, prefix=True, weight="D") for word in words),
    )
