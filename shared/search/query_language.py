"""The search box's language, compatible with rclip: terms joined by ` + ` and ` - `, each with an optional
weight.

    red car                      one text term
    2:red car + beach - night    weights: the query vector is 2·red car + beach − night, re-normalised
    similar:holiday/IMG_2041.jpg a stored image of the collection (left out of the results)
    "tax return"                 a keyword-only term: the words must be in the name or text (minus: must not)
    person:"Grace Hopper"        a named person must be in the photo (several: all of them); alone, that
                                 person's photos newest first; with other terms, it narrows their search

A text term is embedded by the model's text tower and, in hybrid and keyword modes, also matched as words.
`parse` turns `q` into terms; `combine` adds the unit vectors of the vector terms. Every refusal is a
QueryError whose message says what to change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

TermKind = Literal["text", "image", "keyword", "person"]
SIMILAR_PREFIX = "similar:"
PERSON_PREFIX = "person:"
MAX_WEIGHT = 100.0
# rclip's multiplier: digits with an optional decimal point, then a colon. Anything that starts like a
# number but is not one (2x:, 1.2.3:, 1e5:) is a malformed weight, not text.
WEIGHT = re.compile(r"^(?P<weight>[0-9.][^\s:]*):(?P<rest>.*)$", re.DOTALL)
NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")


class QueryError(ValueError):
    """A query the language cannot read; the message names the term and what to change."""


@dataclass(frozen=True)
class Term:
    kind: TermKind
    value: str
    weight: float  # negative for a minus term

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "value": self.value, "weight": self.weight}


def _split(q: str) -> list[tuple[int, str]]:
    """(sign, text) of each term: a `+` or `-` standing alone between spaces separates terms, except
    inside double quotes."""
    terms: list[tuple[int, list[str]]] = [(1, [])]
    quoted = False
    for token in q.split():
        if not quoted and token in ("+", "-"):
            terms.append((1 if token == "+" else -1, []))
        else:
            terms[-1][1].append(token)
        quoted ^= token.count('"') % 2 == 1
    if len(terms) > 1 and not terms[0][1]:
        terms.pop(0)  # a leading sign belongs to the first term ("- night")
    return [(sign, " ".join(words)) for sign, words in terms]


def _weight(text: str) -> tuple[float, str]:
    match = WEIGHT.match(text)
    if not match:
        return 1.0, text
    raw = match.group("weight")
    if not NUMBER.match(raw) or not (0 < float(raw) <= MAX_WEIGHT):
        raise QueryError(f"the weight {raw!r} in {text!r} is not a number from above 0 to {MAX_WEIGHT:g}: "
                         "write it like 2:red car or 0.5:red car")
    return float(raw), match.group("rest").strip()


def _term(sign: int, text: str) -> Term:
    if not text:
        raise QueryError("a term is empty: write something between the + and - signs")
    weight, body = _weight(text)
    if not body:
        raise QueryError(f"the term {text!r} has a weight but nothing to search for")
    if body.lower().startswith(SIMILAR_PREFIX):
        key = body[len(SIMILAR_PREFIX):].strip()
        if not key:
            raise QueryError(f"the term {text!r} is similar: without a key: write similar:<key of a stored image>")
        return Term("image", key, sign * weight)
    if body.lower().startswith(PERSON_PREFIX):
        return _person(text, body[len(PERSON_PREFIX):].strip(), sign, weight)
    if len(body) >= 2 and body.startswith('"') and body.endswith('"'):
        words = body[1:-1].strip()
        if not words:
            raise QueryError('a quoted term is empty: put the words to find between the quotes, e.g. "tax return"')
        return Term("keyword", words, sign * weight)
    return Term("text", body, sign * weight)


def _person(text: str, name: str, sign: int, weight: float) -> Term:
    """person:Name or person:"Full Name": a filter, so it takes neither a minus nor a weight."""
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = name[1:-1].strip()
    if not name or '"' in name:
        raise QueryError(f'the term {text!r} names no person: write person:Grace or person:"Grace Hopper" '
                         "(join other terms with +)")
    if sign < 0 or weight != 1.0:
        raise QueryError(f"the term {text!r} is a person: it takes no minus sign or weight")
    return Term("person", name, 1.0)


def parse(q: str) -> list[Term]:
    """The terms of `q`, in order. QueryError for an empty query or term, or a malformed weight (what a
    mode can do with the terms is shared/search/hybrid.py's `plan`)."""
    if not q.strip():
        raise QueryError("it is blank: type what to look for")
    return [_term(sign, text.strip()) for sign, text in _split(q)]


def combine(weighted: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """The re-normalised weighted sum of unit vectors; QueryError when the terms cancel out."""
    total = np.zeros_like(np.asarray(weighted[0][1], dtype=np.float32))
    for weight, vector in weighted:
        unit = np.asarray(vector, dtype=np.float32)
        total += weight * unit / max(float(np.linalg.norm(unit)), 1e-12)
    norm = float(np.linalg.norm(total))
    if not math.isfinite(norm) or norm < 1e-4:
        raise QueryError("the terms cancel out (e.g. cat - cat): change a weight or a term")
    return (total / norm).astype(np.float32)
