"""The run list is kept while the store has not changed (bot/web/cache.py), and shows at once
what another connection or process committed: a new run, a new reply, an end. The writes here
go through a second store on the same file, as another `backrooms` process would make them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec
from backrooms_engine.store import SqliteStore
from bot.web.cache import WhileUnchanged

from .conftest import Site, sse_events

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CAST = (
    ParticipantInfo(0, "opus", "Claude 1", "claude-opus", "anthropic"),
    ParticipantInfo(1, "opus", "Claude 2", "claude-opus", "anthropic"),
)


@pytest.fixture
async def other(site: Site, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """Another writer on the site's database file: its commits are not this process's."""
    async with await SqliteStore.open(site.rt.settings.db_path, owner=False) as store:
        yield store


def reply(run_id: int, seq: int, text: str) -> Reply:
    at = T0 + timedelta(seconds=seq)
    return Reply(run_id, seq, seq // 2 + 1, seq % 2, CAST[seq % 2].actor, text, at, at)


async def page(site: Site, path: str = "/") -> str:
    async with site.http.get(path) as response:
        assert response.status == 200
        return await response.text()


def row(html: str, run_id: int) -> str:
    """The list's row of one run (empty if the list does not show it)."""
    found = re.search(rf'<tr class="run[^"]*">\s*<td><a href="/runs/{run_id}">.*?</tr>', html, re.S)
    return found.group(0) if found else ""


def turns(html: str, run_id: int) -> str:
    found = re.search(r'data-label="turns">([^<]*)<', row(html, run_id))
    return found.group(1) if found else ""


async def test_the_list_shows_another_process_s_new_run_reply_and_end_on_the_next_load(
    site: Site, other: SqliteStore
) -> None:
    before = await page(site)
    assert await page(site) == before  # unchanged store: the same page (kept or not)
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=2, surface="cli")
    run = await other.create_run(spec, CAST, "BackroomsLogs/other.txt", T0)
    assert row(before, run.id) == ""

    listed = await page(site)
    assert row(listed, run.id) and turns(listed, run.id) == "0"
    assert row(await page(site, "/?q=lighthouse"), run.id) == ""

    await other.append_reply(reply(run.id, 0, "a lighthouse at the end of the corridor"))
    await other.append_reply(reply(run.id, 1, "and another"))
    listed = await page(site)
    assert turns(listed, run.id) == "1"
    found = await page(site, "/?q=lighthouse")
    assert row(found, run.id) and "<mark>lighthouse</mark>" in found

    ended = row(listed, run.id)
    await other.finish_run(run.id, RunEnd(reason="max_turns", turns=1, max_turns=2), T0)
    listed = await page(site)
    assert row(listed, run.id) != ended and "turn limit" in row(listed, run.id)


async def test_a_run_s_page_shows_a_reply_another_process_wrote_on_the_next_load(
    site: Site, other: SqliteStore
) -> None:
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=2, surface="cli")
    run = await other.create_run(spec, CAST, "BackroomsLogs/other.txt", T0)
    await page(site)  # the list, kept now
    assert "the corridor goes on" not in await page(site, f"/runs/{run.id}")
    await other.append_reply(reply(run.id, 0, "the corridor goes on"))
    assert "the corridor goes on" in await page(site, f"/runs/{run.id}")
    await other.finish_run(run.id, RunEnd(reason="max_turns", turns=1, max_turns=2), T0)
    assert "turn limit" in row(await page(site), run.id)


async def test_a_run_this_process_drives_shows_its_end_on_the_list(site: Site) -> None:
    """The process's own writes go through its writer connection: they move the version too."""
    first = await site.run("one", "two", wait=False)
    await page(site)
    await site.wait(first)
    listed = await page(site)
    assert "turn limit" in row(listed, first) and turns(listed, first) == "1"
    second = await site.run("three", "four")
    assert row(await page(site), second)


async def test_a_kept_page_is_made_again_when_the_version_moves_or_it_grows_old() -> None:
    """What the version cannot tell (a lease that runs out with no commit) shows within
    max_age; a store without a version keeps nothing."""
    now = [0.0]
    kept: WhileUnchanged[str, int] = WhileUnchanged(4, max_age=1.0, clock=lambda: now[0])
    made: list[int] = []

    async def make() -> int:
        made.append(len(made))
        return made[-1]

    assert [await kept.get("/", 7, make) for _ in range(3)] == [0, 0, 0]
    assert await kept.get("/", 8, make) == 1  # another connection committed
    now[0] = 0.9
    assert await kept.get("/", 8, make) == 1
    now[0] = 1.6
    assert await kept.get("/", 8, make) == 2  # over a second old
    assert [await kept.get("/", None, make) for _ in range(2)] == [3, 4]


async def test_viewers_of_a_run_another_process_drives_all_see_it_live_to_its_end(
    site: Site, tmp_path: Path
) -> None:
    """Three browsers on one run that another process drives: one poll of the store serves them
    all (bot/web/polled.py), and each sees the live text, both replies and the end, in order."""
    async with await SqliteStore.open(site.rt.settings.db_path) as driver:
        assert driver.leases is not None
        spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=1, surface="cli")
        run = await driver.create_run(spec, CAST, "BackroomsLogs/driven.txt", T0)
        await driver.leases.claim(run.id)
        streams = [
            await site.http.get(f"/runs/{run.id}/events", headers={"accept": "text/event-stream"})
            for _ in range(3)
        ]
        try:
            await driver.live_text.write_live(run.id, 0, "Claude 1", "the corridor")
            firsts = [await _next(stream, "delta") for stream in streams]
            assert [data["text"] for data in firsts] == ["the corridor"] * 3
            await driver.append_reply(reply(run.id, 0, "the corridor goes on"))
            await driver.append_reply(reply(run.id, 1, "and on"))
            await driver.finish_run(run.id, RunEnd(reason="max_turns", turns=1, max_turns=1), T0)
            for stream in streams:
                rest = [(kind, data) async for kind, data in sse_events(stream)]
                assert [kind for kind, _ in rest] == ["reply", "reply", "end"]
                assert [data["text"] for _, data in rest[:2]] == ["the corridor goes on", "and on"]
        finally:
            for stream in streams:
                stream.close()


async def _next(stream: aiohttp.ClientResponse, kind: str) -> dict[str, object]:
    async for found, data in sse_events(stream):
        if found == kind:
            return dict(data)
    pytest.fail(f"the stream ended before a {kind} event")
