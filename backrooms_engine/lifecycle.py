"""`async with` for things that are opened elsewhere and closed once: stores, servers."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosesOnExit:
    """`async with thing:` where `thing` is already open: the block's end closes it."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class StartsOnEntry(ClosesOnExit):
    """`async with server:` starts it on entry and closes it on exit."""

    async def start(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self
