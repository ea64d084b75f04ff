"""Server-sent events read straight from a streamed HTTP body (the WHATWG event-stream format, as
far as the model APIs use it: `event:` and `data:` fields, a blank line ends an event).

The body is handled one network chunk at a time: every event in a chunk is decoded synchronously
and the text they carry goes up as one piece. Going through the SDKs' line and event iterators
instead cost several async hops per line, which was most of a reply's CPU under load (bench/).
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

# The SDKs' HTTP client (declared in pyproject.toml): a body read through an SDK's raw response
# raises its TransportError unwrapped, whatever transport is under it.
import httpx2

from ..conversation import ModelRequest
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors, _text

Event = tuple[str | None, str]  # (event name or None, data)


class EventDecoder:
    """Bytes in, whole events out. Lines end with CR LF, LF or CR; a chunk may end anywhere,
    even inside a UTF-8 character or between the CR and LF of one line break."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + self._utf8.decode(chunk)
        # A final CR may be the first half of CR LF: that line ends with the next chunk.
        end = len(buffer) - 1 if buffer.endswith("\r") else len(buffer)
        cut = max(buffer.rfind("\n", 0, end), buffer.rfind("\r", 0, end))
        if cut < 0:
            self._buffer = buffer
            return []
        whole, self._buffer = buffer[: cut + 1], buffer[cut + 1 :]
        lines = whole.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return self._lines(lines[:-1])

    def close(self) -> list[Event]:
        """What the body left undelimited: a last line without its break, an event without the
        blank line that should end it."""
        rest = self._buffer + self._utf8.decode(b"", final=True)
        self._buffer = ""
        events = self._lines([rest.rstrip("\r")] if rest else [])
        if self._data:
            events.append((self._name, "\n".join(self._data)))
        self._name, self._data = None, []
        return events

    def _lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._name, "\n".join(self._data)))
                self._name, self._data = None, []
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._name = value
        return events


class StreamReader(Protocol):
    """One API's events: text out of each, usage and the end marker remembered."""

    @property
    def finished(self) -> bool:
        """The API's end marker came: the body may end now without losing anything."""

    def event(self, name: str | None, data: str) -> str | None:
        """The text this event carries; raises the engine's errors for an error event."""

    def usage(self) -> Usage: ...


async def read_body(
    chunks: AsyncIterator[bytes], reader: StreamReader, request: ModelRequest, provider: str
) -> AsyncIterator[str | Usage]:
    """One text piece per network chunk that carried any, then the usage. A body that ends before
    the API's end marker is a lost connection: the reply may be incomplete. Surrogates in the
    text are mended (_text.py), a pair split across chunks joined."""
    decoder = EventDecoder()
    mender = _text.StreamMender()
    async for chunk in chunks:
        pieces = [text for event in decoder.feed(chunk) if (text := reader.event(*event))]
        if pieces and (text := mender.piece("".join(pieces))):
            yield text
    # Read to the end even after the end marker: a body read whole lets the connection be reused.
    pieces = [text for event in decoder.close() if (text := reader.event(*event))]
    if text := mender.piece("".join(pieces)) + mender.end():
        yield text
    if not reader.finished:
        raise _errors.connection_lost(
            "the stream ended before the reply did", model=request.spec.alias, provider=provider
        )
    yield reader.usage()


async def through_sdk(
    opening: AbstractAsyncContextManager[Any],
    reader: Callable[[], StreamReader],
    request: ModelRequest,
    provider: ProviderSpec,
    *,
    url: str,
    status_error: type[Exception],
    connection_error: type[Exception],
) -> AsyncIterator[str | Usage]:
    """The SDK sends the request (`opening`: its with_streaming_response call, to `url`) and
    raises its own HTTP errors; the body is read here. Failures become the engine's kinds of
    provider error."""
    try:
        async with opening as response:
            async for item in read_body(response.iter_bytes(), reader(), request, provider.name):
                yield item
    except status_error as exc:
        raise _errors.from_sdk(exc, request, provider) from exc
    except (connection_error, httpx2.TransportError) as exc:
        alias = request.spec.alias
        if (nobody := _errors.unreachable(exc, url, model=alias, provider=provider)) is not None:
            raise nobody from exc
        # The SDKs say only "Connection error."; the HTTP error under it says what happened.
        cause = exc.__cause__ if isinstance(exc.__cause__, httpx2.TransportError) else exc
        raise _errors.connection_lost(
            str(cause) or type(cause).__name__, model=request.spec.alias, provider=provider.name
        ) from exc
