"""The scripted provider keeps its script: chunks as given, gates that hold, failures that raise
what the adapters raise, and a default answer for anything unscripted."""

from __future__ import annotations

import asyncio

import pytest

from backrooms_engine.conversation import ModelRequest
from backrooms_engine.errors import PermanentProviderError, TransientProviderError
from backrooms_engine.records import Usage
from backrooms_engine.registry import load_registry
from tests.fakes.scripted_provider import Failure, ScriptedProvider


def request(alias: str) -> ModelRequest:
    return ModelRequest(load_registry().get(alias), None, ())


async def collect(provider: ScriptedProvider, alias: str) -> list[str | Usage]:
    return [item async for item in provider.stream(request(alias))]


async def test_chunks_come_as_scripted_and_unscripted_requests_get_a_default() -> None:
    provider = ScriptedProvider()
    provider.reply("opus", "a ", "b", usage=Usage(5, 2))
    assert await collect(provider, "opus") == ["a ", "b", Usage(5, 2)]
    assert await collect(provider, "opus") == ["opus reply 2", Usage(10, 3)]
    assert await collect(provider, "gpt4o") == ["gpt4o reply 1", Usage(10, 3)]
    assert [r.spec.alias for r in provider.requests] == ["opus", "opus", "gpt4o"]
    assert (provider.asked("opus"), provider.asked("sonnet")) == (2, 0)


async def test_a_gate_holds_the_rest_of_the_reply() -> None:
    provider = ScriptedProvider()
    gate = asyncio.Event()
    provider.reply("opus", "first ", gate, "rest")
    got: list[str | Usage] = []

    async def read() -> None:
        async for item in provider.stream(request("opus")):
            got.append(item)

    reader = asyncio.create_task(read())
    for _ in range(10):
        await asyncio.sleep(0)
    assert got == ["first "] and not reader.done()
    gate.set()
    await asyncio.wait_for(reader, 5)
    assert got[:2] == ["first ", "rest"]


@pytest.mark.parametrize(
    ("transient", "kind"), [(True, TransientProviderError), (False, PermanentProviderError)]
)
async def test_a_failure_raises_after_its_chunks(transient: bool, kind: type[Exception]) -> None:
    provider = ScriptedProvider()
    provider.fail("gpt4o", "par", failure=Failure("HTTP 529", transient=transient, status=529))
    got: list[str | Usage] = []
    with pytest.raises(kind) as raised:
        async for item in provider.stream(request("gpt4o")):
            got.append(item)
    assert got == ["par"]
    assert str(raised.value) == "HTTP 529"
    assert getattr(raised.value, "reason", None) == "gpt4o (openai): HTTP 529"
