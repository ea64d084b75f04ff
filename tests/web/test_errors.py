"""What the viewer answers to odd requests: never a 500 for a number, and every refusal a page of
the site for a browser (its style, a link back to the list), one plain line for a script."""

from __future__ import annotations

import dataclasses
import re

from tests.web.conftest import TOKEN, Site

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends
HUGE = [str(2**63), str(2**63 - 1), str(2**64 + 1), "9" * 40]


async def status_of(site: Site, path: str, **kwargs: object) -> int:
    async with site.http.get(path, **kwargs) as response:
        await response.read()
        return response.status


async def test_numbers_past_the_store_s_integers_are_404s(site: Site) -> None:
    run_id = await site.run("a", "b")
    for number in HUGE:
        for path in (f"/runs/{number}", f"/runs/{number}.txt", f"/runs/{number}/events"):
            assert await status_of(site, path) == 404, path
        stop = f"/runs/{number}/stop"
        async with site.http.post(stop, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 404, stop
    assert await status_of(site, f"/runs/{run_id}") == 200  # real ids still work


async def test_a_bad_before_is_a_400_that_says_what_it_wants(site: Site) -> None:
    await site.run("a", "b")
    for before in [*HUGE, "²", "abc", "-1"]:
        async with site.http.get("/", params={"before": before}) as response:
            assert response.status == 400, before
            assert "before= must be a run number" in await response.text()
    assert await status_of(site, "/?before=1") == 200


async def test_an_odd_resume_point_on_the_event_stream_replays_from_the_start(site: Site) -> None:
    run_id = await site.run("first", "second")
    for after in ["²", str(2**64)]:
        async with site.http.get(f"/runs/{run_id}/events", params={"after": after}) as response:
            assert response.status == 200
            body = await response.text()
        replies = re.findall(r"event: reply\nid: (\d+)", body)
        assert replies == ["1", "2"], after
        assert "event: end" in body


async def test_a_browser_gets_a_404_page_of_the_site_with_a_way_back(site: Site) -> None:
    run_id = await site.run("a", "b")
    cases = {
        "/runs/999": "There is no run 999.",
        "/runs/999.txt": "There is no run 999.",
        f"/runs/{run_id}.exe": "There is no .exe download; there are .txt, .md, .json.",
        "/no/such/page": "There is no page at /no/such/page.",
        f"/runs/{2**63}": f"There is no page at /runs/{2**63}.",
        "/static/nothing.css": "There is no page at /static/nothing.css.",
    }
    for path, message in cases.items():
        async with site.http.get(path, headers=HTML) as response:
            assert response.status == 404, path
            assert response.headers["content-type"].startswith("text/html")
            body = await response.text()
        assert "<title>Not Found · backrooms relay</title>" in body
        assert '<link rel="stylesheet" href="/static/style.css">' in body
        assert f'<p class="message">{message}</p>' in body
        assert '<a href="/">← all runs</a>' in body
        assert "backrooms runs" not in body  # no command-line hint on a web page


async def test_a_script_gets_one_plain_line_without_a_command_line_hint(site: Site) -> None:
    async with site.http.get("/runs/999") as response:
        assert response.status == 404
        assert response.headers["content-type"].startswith("text/plain")
        assert await response.text() == "There is no run 999.\n"


async def test_refused_forms_answer_a_page_the_browser_can_leave(site: Site) -> None:
    form = {"models": "offline offline", "max_turns": "500", "token": TOKEN}
    async with site.http.post("/runs", data=form, headers=HTML) as response:
        assert response.status == 400
        body = await response.text()
    assert "<title>Bad Request · backrooms relay</title>" in body
    assert "at most 50 turns for a run started from the web, asked for 500" in body
    assert '<a href="/">← all runs</a>' in body
    async with site.http.post("/runs", data={**form, "token": "wrong"}, headers=HTML) as r:
        assert r.status == 401
        assert "type the viewer&#39;s token (BACKROOMS_WEB_TOKEN)" in await r.text()
    async with site.http.delete("/runs", headers=HTML) as response:
        assert response.status == 405
        assert "<title>Method Not Allowed · backrooms relay</title>" in await response.text()
    assert await site.rt.archive.list_runs() == []


class _BrokenArchive:
    """The archive's queries failing as a bug would: the list page cannot be built."""

    async def version(self) -> None:
        return None

    async def find_runs(self, *args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug in the archive")


async def test_a_failure_of_ours_is_a_500_page_that_tells_nothing_inside(site: Site) -> None:
    assert site.surface.app is not None
    web = site.surface.app.state.web
    web.rt = dataclasses.replace(web.rt, archive=_BrokenArchive())
    async with site.http.get("/", headers=HTML) as response:
        assert response.status == 500
        body = await response.text()
    assert "<title>Internal Server Error · backrooms relay</title>" in body
    assert "Something went wrong on our side" in body and '<a href="/">' in body
    assert "RuntimeError" not in body and "a bug in the archive" not in body
