"""Server-sent events from the lines of a streamed HTTP body (the WHATWG event-stream format, as far
as the model APIs use it: `event:` and `data:` fields, a blank line ends an event)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2  # the SDKs' HTTP client; a dropped stream surfaces as its TransportError

from ..conversation import ModelRequest
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors

Reader = Callable[[ModelRequest, AsyncIterator[str]], AsyncIterator[str | Usage]]


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """(event name or None, data) for each event; comments and other fields are skipped."""
    name: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:  # a body that ends without the final blank line
        yield name, "\n".join(data)


async def through_sdk(
    opening: AbstractAsyncContextManager[Any],
    read: Reader,
    request: ModelRequest,
    provider: ProviderSpec,
    *,
    status_error: type[Exception],
    connection_error: type[Exception],
) -> AsyncIterator[str | Usage]:
    """The SDK sends the request (`opening`: its with_streaming_response call) and raises its own
    HTTP errors; `read` turns the body's lines into text and usage. Failures become the engine's
    two kinds of provider error."""
    try:
        async with opening as response:
            async for item in read(request, response.iter_lines()):
                yield item
    except status_error as exc:
        raise _errors.from_sdk(exc, request, provider) from exc
    except (connection_error, httpx2.TransportError) as exc:
        raise _errors.connection_lost(
            str(exc) or type(exc).__name__, model=request.spec.alias, provider=provider.name
        ) from exc
