"""Server-sent events from the lines of a streamed HTTP body (the WHATWG event-stream format, as far
as the model APIs use it: `event:` and `data:` fields, a blank line ends an event)."""

from __future__ import annotations

from collections.abc import AsyncIterator


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
