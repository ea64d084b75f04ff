"""Search words as SQLite FTS5 sees them (migration 003_search.sql), and its excerpts back.

The rules (backrooms_engine/ports.py, RunFilter): every word must appear in one reply, `word*`
matches a prefix, case and accents are ignored (unicode61 with remove_diacritics 2).
"""

from __future__ import annotations

import re

HIT_START, HIT_END = "\x02", "\x03"  # snippet() markers: control characters no reply contains
_MARKERS = re.compile(f"[{HIT_START}{HIT_END}]")


def fts_query(words: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear (`word*` matches a prefix).
    Each word is quoted, so FTS5 operators and punctuation in the box are only ever text.
    None when no word is left: punctuation alone matches nothing in unicode61's tokens."""
    terms = []
    for word in words.split():
        prefix = word.endswith("*") and len(word) > 1
        core = word.rstrip("*") if prefix else word
        if not re.search(r"[^\W_]", core):
            continue
        terms.append('"' + core.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms) or None


def excerpt_parts(excerpt: str) -> tuple[tuple[str, bool], ...]:
    """snippet()'s text cut at its markers: (text, is a matched word) in order."""
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(_MARKERS.split(excerpt)):
        if piece:
            parts.append((piece, i % 2 == 1))
    return tuple(parts)
