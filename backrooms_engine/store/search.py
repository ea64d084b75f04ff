"""Search words as the box gives them (both stores), as SQLite FTS5 sees them (migration
003_search.sqlite.sql), and excerpts back.

The rules (backrooms_engine/ports.py, RunFilter): every word must appear in one reply, `word*`
matches a prefix, case and accents are ignored (unicode61 with remove_diacritics 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HIT_START, HIT_END = "\x02", "\x03"  # snippet() markers: control characters no reply contains
_MARKERS = re.compile(f"[{HIT_START}{HIT_END}]")


@dataclass(frozen=True)
class SearchWord:
    core: str  # the word as typed, without a trailing `*`
    prefix: bool  # `word*`: matches any word that begins with `core`'s last piece


def search_words(words: str) -> list[SearchWord]:
    """The box's words (split at white space) that hold a letter or a digit: punctuation alone
    matches nothing, on every store."""
    found = []
    for word in words.split():
        prefix = word.endswith("*") and len(word) > 1
        core = word.rstrip("*") if prefix else word
        if re.search(r"[^\W_]", core):
            found.append(SearchWord(core, prefix))
    return found


def fts_query(words: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear (`word*` matches a prefix).
    Each word is quoted, so FTS5 operators and punctuation in the box are only ever text.
    None when no word is left."""
    terms = [
        '"' + w.core.replace('"', '""') + '"' + ("*" if w.prefix else "")
        for w in search_words(words)
    ]
    return " ".join(terms) or None


def excerpt_parts(excerpt: str) -> tuple[tuple[str, bool], ...]:
    """snippet()'s text cut at its markers: (text, is a matched word) in order."""
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(_MARKERS.split(excerpt)):
        if piece:
            parts.append((piece, i % 2 == 1))
    return tuple(parts)
