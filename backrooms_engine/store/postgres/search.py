"""PgArchive: the archive (archive.SqlArchive) with PostgreSQL's own full-text search.

Migration 003_search.postgres.sql keeps a tsvector of every reply (`replies.search`, GIN-indexed)
made of its words as the rules cut them (runs of letters and digits, accents and case folded, with
`unaccent` where the server has it), and defines `backrooms_query(cores, prefixes)`: every word,
`word*` as a prefix, a word with punctuation inside as its pieces in a row. The excerpt is
ts_headline's, through the `backrooms_search` configuration, so `cafe` marks `Café`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ...ports import Hit
from ..archive import Clause, SqlArchive
from ..search import HIT_END, HIT_START, excerpt_parts, search_words

_QUERY = "backrooms_query(?::text[], ?::boolean[])"
_MATCHING = f"id IN (SELECT run_id FROM replies WHERE search @@ {_QUERY})"
EXCERPT_WORDS = 16  # as the SQLite store's snippet()
_HEADLINE_OPTIONS = (
    f"StartSel={HIT_START}, StopSel={HIT_END}, MaxWords={EXCERPT_WORDS}, MinWords=8, ShortWord=0"
)
# The best-ranked matching reply of each of the runs, with ts_headline's excerpt.
_HITS = f"""
SELECT DISTINCT ON (run_id) run_id, seq, text,
       ts_headline('backrooms_search', text, wanted, ?) AS excerpt
FROM replies, {_QUERY} AS wanted
WHERE search @@ wanted AND run_id = ANY(?::integer[])
ORDER BY run_id, ts_rank(search, wanted) DESC, seq
"""


def _arguments(words: str) -> list[list[str] | list[bool]] | None:
    found = search_words(words)
    if not found:
        return None
    return [[w.core for w in found], [w.prefix for w in found]]


def _with_ellipses(excerpt: str, text: str) -> str:
    """ts_headline gives a piece of the text as it is; say `…` where it was cut, as snippet()."""
    shown = excerpt.replace(HIT_START, "").replace(HIT_END, "")
    before = "" if text.startswith(shown) else "…"
    after = "" if text.endswith(shown) else "…"
    return before + excerpt + after


class PgArchive(SqlArchive):
    async def version(self) -> Hashable | None:
        """The server's current snapshot (`xmin:xmax:in-progress ids`): it changes whenever a
        transaction that writes begins or ends anywhere on the server, so it changes at least
        whenever a commit may have changed what the archive reads (and more often: other
        databases' writes count too, which only costs a page rendered again)."""
        rows = await self._db.fetch("SELECT pg_current_snapshot()::text AS snapshot")
        return str(rows[0]["snapshot"])

    def matching(self, words: str) -> Clause | None:
        arguments = _arguments(words)
        return None if arguments is None else (_MATCHING, list(arguments))

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        arguments = _arguments(words)
        if arguments is None or not run_ids:
            return {}
        rows = await self._db.fetch(_HITS, [_HEADLINE_OPTIONS, *arguments, list(run_ids)])
        return {
            int(row["run_id"]): Hit(
                int(row["run_id"]),
                int(row["seq"]),
                excerpt_parts(_with_ellipses(row["excerpt"], row["text"])),
            )
            for row in rows
        }
