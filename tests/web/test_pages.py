"""The archive over HTTP: the run list with its filters and search, a run's page, the downloads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from markupsafe import escape

from backrooms_engine.records import ParticipantInfo, RunSpec
from backrooms_engine.store import SqliteStore
from tests.web.conftest import OPUS, Site

SCRIPT = "<script>alert(1)</script>"


async def page(site: Site, path: str, status: int = 200) -> str:
    async with site.http.get(path) as response:
        assert response.status == status, await response.text()
        return await response.text()


def run_links(body: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/runs/(\d+)">#', body)]


async def test_the_list_shows_runs_newest_first(site: Site) -> None:
    first = await site.run("one", "two")
    second = await site.run("three", "four")
    body = await page(site, "/")
    assert run_links(body) == [second, first]
    assert "Claude 1" in body and "turn limit" in body


async def test_the_list_filters_by_model_template_and_status(site: Site) -> None:
    opus_run = await site.run("a", "b")
    handle = await site.rt.manager.start(
        RunSpec(models=("offline", "offline"), template="cli", max_turns=1, surface="web")
    )
    await site.wait(handle.id)
    assert run_links(await page(site, "/?model=offline")) == [handle.id]
    assert run_links(await page(site, "/?model=opus")) == [opus_run]
    assert run_links(await page(site, "/?template=cli")) == [handle.id, opus_run]
    assert run_links(await page(site, "/?template=gallery")) == []
    assert run_links(await page(site, "/?status=ended")) == [handle.id, opus_run]
    assert run_links(await page(site, "/?status=running")) == []


def row_of(body: str, run_id: int) -> str:
    found = re.search(rf'<tr class="run[^"]*">\s*<td><a href="/runs/{run_id}">.*?</tr>', body, re.S)
    assert found, f"no row for run {run_id}"
    return found[0]


def turns_in(row: str) -> int:
    return int(re.search(r'data-label="turns">(\d+)<', row)[1])  # type: ignore[index]


async def test_the_list_shows_a_new_reply_an_end_and_a_new_run_on_the_next_load(
    site: Site,
) -> None:
    # Rows are rendered once and kept: what changes in a run must still show at once.
    site.models.chunk_count = 10
    for text, delay in (("one", None), ("two", None), ("three", 0.2), ("four", None)):
        site.models.queue_reply(OPUS, text, chunk_delay=delay)
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=2, surface="web")
    running = (await site.rt.manager.start(spec)).id
    seen: list[tuple[int, str]] = []
    while not seen or seen[-1] != (1, "live"):  # the first turn stored, the second streaming
        assert len(seen) < 500, seen
        row = row_of(await page(site, "/"), running)
        seen.append((turns_in(row), re.search(r'class="badge">([^<]+)<', row)[1]))  # type: ignore[index]
    await site.wait(running)
    row = row_of(await page(site, "/"), running)
    assert turns_in(row) == 2 and "turn limit" in row and "live" not in row
    newer = await site.run("five", "six")
    assert run_links(await page(site, "/")) == [newer, running]


async def test_an_unchanged_page_is_not_sent_again(site: Site) -> None:
    first = await site.run("one", "two")
    async with site.http.get("/") as response:
        tag = response.headers["etag"]
        assert response.headers["cache-control"] == "no-cache"  # the browser asks every time
    async with site.http.get("/", headers={"if-none-match": tag}) as response:
        assert response.status == 304 and await response.read() == b""
    newer = await site.run("three", "four")
    async with site.http.get("/", headers={"if-none-match": tag}) as response:
        assert response.status == 200 and response.headers["etag"] != tag
        assert run_links(await response.text()) == [newer, first]
    async with site.http.get(f"/runs/{first}") as response:
        run_tag = response.headers["etag"]
    async with site.http.get(f"/runs/{first}", headers={"if-none-match": run_tag}) as response:
        assert response.status == 304


async def test_search_finds_a_word_in_a_reply(site: Site) -> None:
    await site.run("nothing to see", "still nothing")
    wanted = await site.run("the fluorescent hum", "a xylophone in the walls")
    body = await page(site, "/?q=xylophone")
    assert run_links(body) == [wanted]
    # The excerpt links to the reply and marks the word.
    assert f'href="/runs/{wanted}#reply-1"' in body
    assert "<mark>xylophone</mark>" in body
    assert run_links(await page(site, "/?q=xylo*")) == [wanted]
    # Every word must appear in one reply.
    assert run_links(await page(site, "/?q=walls+xylophone")) == [wanted]
    assert run_links(await page(site, "/?q=fluorescent+xylophone")) == []


async def test_search_treats_operators_and_markup_as_text(site: Site) -> None:
    await site.run(f"look {SCRIPT}", "fine")
    for query in ('"unbalanced', "NOT AND OR", "col:umn", "*", "(", SCRIPT, "<b>"):
        body = await page(site, "/?" + urlencode({"q": query}))  # no 500 from FTS5's syntax
        assert SCRIPT not in body and "<b>" not in body
    body = await page(site, "/?q=alert")
    assert "&lt;script&gt;<mark>alert</mark>(1)&lt;/script&gt;" in body


async def test_the_run_page_shows_every_reply_under_its_actor_with_markup_escaped(
    site: Site,
) -> None:
    texts = [f"hello {SCRIPT}", '<img src=x onerror="alert(2)"> & friends', "third", "fourth"]
    run_id = await site.run(*texts, turns=2)
    body = await page(site, f"/runs/{run_id}")
    articles = re.findall(r'<article class="reply [^"]*" id="reply-(\d+)"', body)
    assert articles == ["0", "1", "2", "3"]
    for actor in ("Claude 1", "Claude 2"):
        assert f'<h2 class="actor">{actor}</h2>' in body
    assert SCRIPT not in body and "<img" not in body
    for text in texts:
        assert str(escape(text)) in body
    assert "Reached maximum number of turns (2). Conversation ended." in body
    assert "Participants" in body and "claude-opus-5-5" in body


async def test_the_page_carries_a_strict_content_security_policy(site: Site) -> None:
    run_id = await site.run("a", "b")
    async with site.http.get(f"/runs/{run_id}") as response:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_terminal_output_is_monospace_and_prose_is_not(site: Site) -> None:
    terminal = "simulator@backrooms:~$ ls -l\ntotal 8\ndrwxr-xr-x 2 root root 4096 hall/\n"
    run_id = await site.run("I wonder what is here.", terminal)
    body = await page(site, f"/runs/{run_id}")
    assert '<div class="prose">I wonder what is here.</div>' in body
    assert re.search(r'<pre class="mono">\nsimulator@backrooms:~\$ ls -l\ntotal 8\n', body)


async def test_colours_come_from_the_registry_stylesheet(site: Site) -> None:
    run_id = await site.run("a", "b")
    body = await page(site, f"/runs/{run_id}")
    colour_class = re.search(r'class="actor (c-[0-9a-f]+)"', body)[1]
    css = await page(site, "/colours.css")
    assert f".{colour_class} {{ --actor: #d97757; }}" in css  # opus's colour in models.toml


async def test_downloads(site: Site) -> None:
    run_id = await site.run(f"first {SCRIPT}", "second\nwith lines")
    log_path = Path((await site.rt.archive.get_run(run_id)).log_path)
    async with site.http.get(f"/runs/{run_id}.txt") as response:
        assert response.status == 200
        assert response.headers["content-disposition"] == (
            f'attachment; filename="{log_path.stem}.txt"'
        )
        assert await response.read() == log_path.read_bytes()
    async with site.http.get(f"/runs/{run_id}.json") as response:
        assert response.headers["content-type"] == "application/json"
        data = json.loads(await response.read())
    assert [r["text"] for r in data["replies"]] == [f"first {SCRIPT}", "second\nwith lines"]
    assert data["end"]["reason"] == "max_turns"
    async with site.http.get(f"/runs/{run_id}.md") as response:
        assert response.headers["content-type"].startswith("text/markdown")
        assert f"# Backrooms run {run_id}" in await response.text()
    await page(site, f"/runs/{run_id}.exe", status=404)


async def test_an_unknown_run_is_a_404(site: Site) -> None:
    for path in ("/runs/999", "/runs/999.txt", "/runs/999/events"):
        assert "There is no run 999." in await page(site, path, status=404)


async def test_the_run_page_shows_the_cost_what_caching_saved_and_a_cut_off_mark(
    site: Site,
) -> None:
    site.models.queue_reply(
        "claude-opus-5-5", "cut", stop_reason="max_tokens", input_tokens=100, output_tokens=50,
        cache_read_tokens=10_000, cache_write_tokens=0,
    )  # fmt: skip
    site.models.queue_reply("claude-opus-5-5", "whole", input_tokens=100, output_tokens=50)
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=1, surface="web")
    run_id = (await site.rt.manager.start(spec)).id
    await site.wait(run_id)
    body = await page(site, f"/runs/{run_id}")
    # 200 in at $4, 100 out at $20, 10,000 read at $0.20 per million: $0.0048.
    assert '<span id="cost">$0.0048</span>' in body
    # Uncached, the 10,000 would have cost $4 a million: $0.04 - $0.002 saved.
    assert "prompt caching saved about $0.0380 at today's prices" in body
    assert body.count('class="cut-off"') == 1
    listing = await page(site, "/")
    assert '<td class="num" data-label="cost">$0.0048</td>' in listing


async def test_runs_nobody_drives_show_as_queued_or_waiting_not_live(site: Site) -> None:
    """ARCHITECTURE.md's run states: queued (never claimed), and a running run with no live
    lease (its driver stopped or died) is *waiting* to be claimed, shown as such."""
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=2, surface="web")
    cast = [ParticipantInfo(i, "opus", f"Claude {i + 1}", OPUS, "anthropic") for i in (0, 1)]
    at = datetime.now(UTC)
    # Another process that drives nothing stores them, so no process holds their leases.
    async with await SqliteStore.open(site.rt.settings.db_path, owner=False) as other:
        queued = await other.create_run(spec, cast, "q.txt", at, queued=True)
        waiting = await other.create_run(spec, cast, "w.txt", at)
    index = await page(site, "/")
    assert 'class="badge">queued<' in row_of(index, queued.id)
    assert 'class="badge">waiting<' in row_of(index, waiting.id)
    assert run_links(await page(site, "/?status=queued")) == [queued.id]
    run_page = await page(site, f"/runs/{waiting.id}")
    assert "state-waiting" in run_page and 'data-live="0"' in run_page
    assert "waiting: no process drives it right now" in run_page
    assert "waiting for a driving process" in await page(site, f"/runs/{queued.id}")


async def test_two_models_of_one_registry_colour_wear_different_colours(site: Site) -> None:
    # opus and opus-5.5 share #d97757 in models.toml: the second seat gets a shade of its own.
    spec = RunSpec(models=("opus", "opus-5.5"), template="cli", max_turns=1, surface="web")
    handle = await site.rt.manager.start(spec)
    await site.wait(handle.id)
    body = await page(site, f"/runs/{handle.id}")
    seats = re.findall(r'<li><span class="actor (c-[0-9a-f]+(?:-\d+)?)">', body)
    css = await page(site, "/colours.css")
    rules = dict(re.findall(r"\.(c-[0-9a-f]+(?:-\d+)?) \{ --actor: (#[0-9a-f]{6}); \}", css))
    assert len(seats) == 2
    assert rules[seats[0]] == "#d97757" and rules[seats[1]] != rules[seats[0]]
