"""Where an Anthropic request marks prompt-cache breakpoints (issue 16, item 1); pure.

A relay seat's next request is its previous one plus the replies since, so each request can read
its previous prefix from the cache and leave its own for the next. Two markers do it:

* *read*: on the last message the seat's previous request sent; that prefix was written then, so
  it is read now (at the cache-read price instead of the input price);
* *write*: on the last message of this request, so the next one reads it.

No marker where it cannot pay: a prefix under the model's minimum is not cached by the API (so
it is not marked), and when the seat's previous request is older than the cache's lifetime its
prefix has expired and, the run being paced that slowly, the next request would come too late
for a write (1.25x the input price) to be read: such a request goes out unmarked.

Tokens are estimated at characters / 3, rounded up: more than most text holds, on purpose, since
a marker on a prefix that turns out to be under the minimum costs nothing (the API ignores it).
A request never carries more than the API's four breakpoints, counting any it already had.

The text sent is unchanged: a string content becomes one text block carrying the marker, a list
of blocks has its last block marked; nothing else changes, and inputs are never mutated.
:func:`unmarked` undoes exactly this, for comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MAX_BREAKPOINTS: Final = 4
LIFETIME_SECONDS: Final = 300.0  # "ephemeral", 5 minutes, refreshed on each hit
EPHEMERAL: Final[Mapping[str, str]] = {"type": "ephemeral"}

TokenCount = Callable[[str], int]
Messages = list[dict[str, Any]]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 3)


@dataclass(frozen=True)
class SeatRequest:
    """What the marks need to remember of a seat's previous request."""

    sent_at: float  # seconds on the clock that `now` is read from (monotonic)
    message_count: int


@dataclass(frozen=True)
class MarkedRequest:
    messages: Messages
    read_at: int | None  # index of the message marked to read the previous prefix
    write_at: int | None  # index of the message marked for the next request


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _prefix_tokens(
    system: Any, messages: Sequence[Mapping[str, Any]], count: TokenCount
) -> list[int]:
    """Estimated tokens of the prefix ending with each message (the system prompt included)."""
    total = count(_text(system))
    out = []
    for message in messages:
        total += count(_text(message.get("content")))
        out.append(total)
    return out


def _markers_in(system: Any, messages: Sequence[Mapping[str, Any]]) -> int:
    blocks = [*(system if isinstance(system, list) else [])]
    for message in messages:
        content = message.get("content")
        blocks.extend(content if isinstance(content, list) else [])
    return sum(1 for b in blocks if isinstance(b, dict) and "cache_control" in b)


def mark_request(
    system: str | list[dict[str, Any]] | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    min_tokens: int,
    previous: SeatRequest | None,
    now: float,
    lifetime: float = LIFETIME_SECONDS,
    count_tokens: TokenCount = estimate_tokens,
) -> MarkedRequest:
    """This request's messages with its read and write markers (see the module doc)."""
    fresh = previous is None or now - previous.sent_at < lifetime
    prefix = _prefix_tokens(system, messages, count_tokens)
    wanted: list[int] = []
    if fresh and previous is not None and 0 < previous.message_count <= len(messages):
        wanted.append(previous.message_count - 1)
    if fresh and messages:
        wanted.append(len(messages) - 1)
    room = MAX_BREAKPOINTS - _markers_in(system, messages)
    eligible = {i for i in wanted if prefix[i] >= min_tokens and _can_carry(messages[i])}
    chosen = sorted(eligible)[: max(0, room)]
    marked = [dict(m) for m in messages]
    for index in chosen:
        marked[index]["content"] = _marked_content(marked[index].get("content"))
    read = previous.message_count - 1 if previous is not None else None
    return MarkedRequest(
        messages=marked,
        read_at=read if read in chosen and read != len(messages) - 1 else None,
        write_at=len(messages) - 1 if len(messages) - 1 in chosen else None,
    )


def _can_carry(message: Mapping[str, Any]) -> bool:
    """The API refuses a marker on an empty text block (and empty text blocks at all)."""
    content = message.get("content")
    if isinstance(content, str):
        return bool(content)
    last = content[-1] if isinstance(content, list) and content else None
    return isinstance(last, dict) and (last.get("type") != "text" or bool(last.get("text")))


def _marked_content(content: Any) -> Any:
    if isinstance(content, str):
        return [{"type": "text", "text": content, "cache_control": dict(EPHEMERAL)}]
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        return [*content[:-1], {**content[-1], "cache_control": dict(EPHEMERAL)}]
    return content  # nothing to carry a marker


def unmarked(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """The messages with every cache_control removed and a lone text block read as its string:
    what a fidelity comparison holds equal to the unmarked request."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [_without_marker(block) for block in content]
            if len(content) == 1 and _is_plain_text(content[0]):
                content = content[0]["text"]
        out.append({**message, "content": content})
    return out


def _without_marker(block: Any) -> Any:
    if isinstance(block, dict):
        return {key: value for key, value in block.items() if key != "cache_control"}
    return block


def _is_plain_text(block: Any) -> bool:
    return isinstance(block, dict) and set(block) == {"type", "text"} and block["type"] == "text"
