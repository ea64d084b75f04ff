"""Model text made safe to store, show and send again: UTF-16 surrogates mended.

JSON escapes a character outside the Basic Multilingual Plane (an emoji) as a pair of UTF-16
surrogates (`\\ud83c\\udf00`), and an API that streams tokens may cut the pair across two events;
a model may also send a lone surrogate. json.loads keeps each half as a lone surrogate in the
string, which no UTF-8 encoder accepts: the next request to any model, the store's write or the
terminal's print would fail on it. A pair split across pieces is joined; a lone surrogate becomes
U+FFFD, the replacement character. Nothing else in the text changes.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_FIRST, _HIGH_LAST = "\ud800", "\udbff"  # the first half of a pair


def mend(text: str) -> str:
    """Surrogate pairs joined into their character, lone surrogates replaced by U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text  # the common case, at the speed of one regex scan
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class StreamMender:
    """`mend` over a stream of pieces: a piece that ends with the first half of a pair holds it
    back until the next piece, which may bring the second half."""

    def __init__(self) -> None:
        self._held = ""

    def piece(self, text: str) -> str:
        text, self._held = self._held + text, ""
        if text and _HIGH_FIRST <= text[-1] <= _HIGH_LAST:
            text, self._held = text[:-1], text[-1]
        return mend(text)

    def end(self) -> str:
        """What is still held at the end of the stream: a first half whose pair never came."""
        held, self._held = self._held, ""
        return mend(held)
