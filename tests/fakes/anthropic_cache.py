"""Anthropic's prompt-cache accounting, as the fake model server applies it.

The rules (PLATFORM_NOTES, "Checked for the second round"; the API's own error text for the limit):

* ``cache_control: {"type": "ephemeral"}`` on a content block of ``system`` or of a message marks a
  *breakpoint*: the prefix up to and including that block can be cached. ``"ttl": "5m"`` (the
  default) or ``"ttl": "1h"`` sets the entry's lifetime.
* At most four breakpoints a request; a fifth is a 400 ``invalid_request_error`` reading
  ``A maximum of 4 blocks with cache_control may be provided. Found 5.``
* A prefix shorter than the model's minimum is silently not cached (512 tokens on the 5.5 models,
  1,024 on the others; :func:`default_min_tokens`).
* An entry lives for its lifetime from the last request that wrote or read it.
* ``usage``: ``cache_read_input_tokens`` is the longest cached prefix this request begins with
  (looked up at its breakpoints); ``cache_creation_input_tokens`` what lies between that and the
  last cacheable breakpoint (written now); ``input_tokens`` the uncached remainder.

Our stricter simplification: the fake looks prefixes up only at this request's breakpoints (the
real API also looks back some blocks before each one), so a caller must mark where its previous
prefix ended to read it; a real API reads it then too.

Token counting, our own deterministic rule: a prefix counts its text characters // 4 (the ``text``
of text blocks; a string content is one text block); the whole request counts all its characters
// 4 + 1 (:func:`tests.fakes.model_server.estimate_input_tokens`), so the uncached remainder is
always at least one token. A string content and a single text block with the same text are the
same prefix; the marker itself is not part of what is cached.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_BREAKPOINTS: Final = 4
TTL_SECONDS: Final[dict[str, float]] = {"5m": 300.0, "1h": 3600.0}
_FIVE_FIVE: Final = re.compile(r"-5-5(?:$|-)")  # claude-opus-5-5, claude-sonnet-5-5-20261101...


def default_min_tokens(model: str) -> int:
    """The shortest cacheable prefix: 512 tokens on the 5.5 models, 1,024 on the others."""
    return 512 if _FIVE_FIVE.search(model) else 1024


class CacheRequestError(ValueError):
    """A request the real API refuses with a 400 (its message is the error's text)."""


@dataclass(frozen=True)
class CacheUsage:
    """The three input counts (their sum is the request's input) and the write split by lifetime."""

    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


@dataclass(frozen=True)
class Breakpoint:
    """A marked block: the digest and token count of the prefix ending there, and its lifetime."""

    key: str
    tokens: int
    ttl: str  # "5m" or "1h"

    @property
    def seconds(self) -> float:
        return TTL_SECONDS[self.ttl]


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _linear(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every block in prompt order, with the segment it belongs to (system, or message N's role)."""
    for block in _blocks(body.get("system")):
        yield "system", block
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, dict):
            for block in _blocks(message.get("content")):
                yield f"{index}:{message.get('role')}", block


def _ttl(marker: Any) -> str:
    if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
        raise CacheRequestError("cache_control.type: Input should be 'ephemeral'")
    ttl = marker.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise CacheRequestError("cache_control.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict):
        return {key: value for key, value in block.items() if key != "cache_control"}
    return block


def breakpoints(body: Mapping[str, Any]) -> list[Breakpoint]:
    """The request's breakpoints in prompt order; raises CacheRequestError as the API would 400."""
    digest = hashlib.sha256(json.dumps(body.get("model")).encode())
    chars, found = 0, []
    for segment, block in _linear(body):
        plain = _unmarked(block)
        digest.update(json.dumps([segment, plain], sort_keys=True).encode())
        text = plain.get("text") if isinstance(plain, dict) else None
        chars += len(text) if isinstance(text, str) else 0
        if isinstance(block, dict) and "cache_control" in block:
            marker = _ttl(block["cache_control"])
            found.append(Breakpoint(digest.copy().hexdigest(), chars // 4, marker))
    if len(found) > MAX_BREAKPOINTS:
        raise CacheRequestError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    return found


class AnthropicCache:
    """One account's prompt cache: prefix digests and when each expires."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_tokens: Callable[[str], int] = default_min_tokens,
    ) -> None:
        self._clock = clock
        self._min_tokens = min_tokens
        self._expiry: dict[str, float] = {}

    def check(self, body: Mapping[str, Any]) -> None:
        """Raise CacheRequestError for a request the API would refuse; change nothing."""
        breakpoints(body)

    def account(self, body: Mapping[str, Any], total_input_tokens: int) -> CacheUsage:
        """Read and write the cache for one answered request; return how its input splits."""
        now = self._clock()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        model = body.get("model")
        minimum = self._min_tokens(model if isinstance(model, str) else "")
        marks = [b for b in breakpoints(body) if b.tokens >= minimum]
        hits = [b for b in marks if b.key in self._expiry]
        read = max((b.tokens for b in hits), default=0)
        for hit in hits:  # a hit refreshes the entry's lifetime
            self._expiry[hit.key] = max(self._expiry[hit.key], now + hit.seconds)
        written = dict.fromkeys(TTL_SECONDS, 0)
        edge = read
        for mark in marks:
            if mark.tokens > edge:
                written[mark.ttl] += mark.tokens - edge
                edge = mark.tokens
            if mark.key not in self._expiry:
                self._expiry[mark.key] = now + mark.seconds
        creation = edge - read
        return CacheUsage(
            input_tokens=total_input_tokens - read - creation,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=creation,
            ephemeral_5m_input_tokens=written["5m"],
            ephemeral_1h_input_tokens=written["1h"],
        )

    def entries(self) -> int:
        """How many prefixes are cached and unexpired now (for tests)."""
        now = self._clock()
        return sum(1 for t in self._expiry.values() if t > now)
