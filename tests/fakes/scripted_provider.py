"""ScriptedProvider: the Provider port in memory, for tests of what the engine does with what a
model says (stop rules, retries, event order, backpressure, caps), whatever a socket would do to
the bytes on their way.

Each model alias has a queue of scripted answers, used in order. An answer is the exact pieces the
engine is given: text chunks ("bye ^C" then "^C now" are two deltas, every time) and gates, events
the stream waits on until the test sets them (a reply that is "still being written"). An answer can
end in a failure, transient or permanent, after any of its pieces. A request with nothing scripted
gets one chunk, "<alias> reply <n>", n counting that alias's requests from 1. Every request is kept
in `requests`, in the order the engine sent them.

The HTTP fake (model_server.py) stays the one for the adapters: status codes, stream framing,
headers, what goes over the wire.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from backrooms_engine.conversation import ModelRequest
from backrooms_engine.errors import PermanentProviderError, ProviderError, TransientProviderError
from backrooms_engine.records import Usage

Piece = str | asyncio.Event  # a text chunk, or a gate the stream waits on before going on


@dataclass(frozen=True)
class Failure:
    """How an answer fails once its pieces are out: the error the adapters would raise."""

    message: str = "scripted failure"
    transient: bool = True
    status: int | None = None
    retry_after: float | None = None

    def error(self, request: ModelRequest) -> ProviderError:
        model, provider = request.spec.alias, request.spec.provider.name
        if self.transient:
            return TransientProviderError(
                self.message,
                model=model,
                provider=provider,
                status=self.status,
                retry_after=self.retry_after,
            )
        return PermanentProviderError(
            self.message, model=model, provider=provider, status=self.status
        )


@dataclass(frozen=True)
class _Answer:
    pieces: tuple[Piece, ...]
    usage: Usage
    failure: Failure | None = None


class ScriptedProvider:
    """One provider for every model of a run (give `lambda spec: provider` as `provider_for`)."""

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []
        self.closed = False
        self._answers: dict[str, deque[_Answer]] = {}
        self._asked: Counter[str] = Counter()

    def reply(self, alias: str, *pieces: Piece, usage: Usage | None = None) -> None:
        """Queue an answer for `alias`: these chunks (and gates), then the usage."""
        spent = usage or Usage(input_tokens=10, output_tokens=len(pieces))
        self._queue(alias, _Answer(pieces, spent))

    def fail(self, alias: str, *pieces: Piece, failure: Failure | None = None) -> None:
        """Queue an answer for `alias` that sends `pieces`, then raises (transient by default)."""
        self._queue(alias, _Answer(pieces, Usage(), failure or Failure()))

    def asked(self, alias: str) -> int:
        """How many requests `alias` has been sent so far."""
        return self._asked[alias]

    def _queue(self, alias: str, answer: _Answer) -> None:
        self._answers.setdefault(alias, deque()).append(answer)

    def _next(self, alias: str) -> _Answer:
        queue = self._answers.get(alias)
        if queue:
            return queue.popleft()
        text = f"{alias} reply {self._asked[alias]}"
        return _Answer((text,), Usage(input_tokens=10, output_tokens=3))

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        alias = request.spec.alias
        self.requests.append(request)
        self._asked[alias] += 1
        answer = self._next(alias)
        for piece in answer.pieces:
            if isinstance(piece, asyncio.Event):
                await piece.wait()
            else:
                yield piece
                # The next chunk on a later turn of the loop, as chunks read from a socket come.
                await asyncio.sleep(0)
        if answer.failure is not None:
            raise answer.failure.error(request)
        yield answer.usage

    async def aclose(self) -> None:
        self.closed = True
