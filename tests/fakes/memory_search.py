"""The archive's search rules (backrooms_engine/ports.py, RunFilter) done in memory, word by word.

Text is cut into words the way SQLite's unicode61 tokenizer cuts it (runs of letters and digits;
the underscore and all punctuation separate), and each word is folded: accents removed, lower
case. A search word becomes the folded words it holds, to be found in a row; `word*` lets its last
one match as a prefix. No substring matching: `caf` does not find `café`, `caf*` does.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from backrooms_engine.records import Reply

_WORD = re.compile(r"[^\W_]+")
EXCERPT_WORDS = 16  # as the SQLite store's snippet()


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@dataclass(frozen=True)
class Term:
    pieces: tuple[str, ...]  # folded words that must follow one another
    prefix: bool  # the last piece matches any word it begins


@dataclass(frozen=True)
class _Word:
    folded: str
    start: int
    end: int


def terms(words: str) -> list[Term] | None:
    """The search box's words as terms; None when none holds a letter or a digit."""
    found = []
    for word in words.split():
        prefix = word.endswith("*") and len(word) > 1
        pieces = tuple(fold(w) for w in _WORD.findall(word.rstrip("*") if prefix else word))
        if pieces:
            found.append(Term(pieces, prefix))
    return found or None


def _words(text: str) -> list[_Word]:
    return [_Word(fold(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def _matches_at(term: Term, words: list[_Word], at: int) -> bool:
    if at + len(term.pieces) > len(words):
        return False
    *whole, last = term.pieces
    here = [w.folded for w in words[at : at + len(term.pieces)]]
    if here[:-1] != whole:
        return False
    return here[-1].startswith(last) if term.prefix else here[-1] == last


def _spans(terms_: list[Term], words: list[_Word]) -> list[tuple[int, int]] | None:
    """(first word, word after the last) of every match; None unless every term matches."""
    spans: list[tuple[int, int]] = []
    for term in terms_:
        found = [
            (i, i + len(term.pieces)) for i in range(len(words)) if _matches_at(term, words, i)
        ]
        if not found:
            return None
        spans += found
    return sorted(set(spans))


def matches(terms_: list[Term], text: str) -> bool:
    return _spans(terms_, _words(text)) is not None


def excerpt(terms_: list[Term], reply: Reply) -> tuple[tuple[str, bool], ...]:
    """Up to EXCERPT_WORDS words from the first match on, `…` where the text was cut, the matched
    words marked. `reply` must match."""
    text, words = reply.text, _words(reply.text)
    spans = _spans(terms_, words) or [(0, 0)]
    start = max(0, min(spans[0][0], len(words) - EXCERPT_WORDS))
    end = min(len(words), start + EXCERPT_WORDS)
    cursor = words[start].start if start > 0 else 0
    parts: list[tuple[str, bool]] = [("…", False)] if start > 0 else []
    for first, after in spans:
        if first < start or after > end or words[first].start < cursor:
            continue  # outside the window, or overlapping a match already marked
        parts.append((text[cursor : words[first].start], False))
        parts.append((text[words[first].start : words[after - 1].end], True))
        cursor = words[after - 1].end
    cut = end < len(words)
    parts.append((text[cursor : words[end - 1].end if cut else len(text)], False))
    parts += [("…", False)] if cut else []
    return _merged(parts)


def _merged(parts: list[tuple[str, bool]]) -> tuple[tuple[str, bool], ...]:
    """Empty parts dropped and neighbouring plain parts joined, as the markers cut a snippet."""
    merged: list[tuple[str, bool]] = []
    for piece, marked in parts:
        if not piece:
            continue
        if merged and not marked and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + piece, False)
        else:
            merged.append((piece, marked))
    return tuple(merged)
