"""Starting and stopping runs from the web: only with BACKROOMS_WEB_TOKEN, and only with it right."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.web.conftest import TOKEN, WAIT, Site, serve

START = {"models": "offline offline", "template": "cli", "max_turns": "2"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_a_configured_token_the_site_is_read_only(read_only_site: Site) -> None:
    site = read_only_site
    run_id = await site.run("a", "b")
    for path in ("/runs", f"/runs/{run_id}/stop"):
        async with site.http.post(path, data=START, headers=bearer("anything")) as response:
            assert response.status == 403
            assert (await response.text()).startswith("read-only")
    async with site.http.get("/") as response:
        body = await response.text()
    assert "read-only" in body and 'action="/runs"' not in body
    assert await site.rt.archive.list_runs() == [await site.rt.archive.get_run(run_id)]


async def test_a_missing_or_wrong_token_is_refused(site: Site) -> None:
    attempts = [
        {"data": START},
        {"data": START, "headers": bearer("wrong")},
        {"data": {**START, "token": "wrong"}},
        {"data": {**START, "token": TOKEN[:-1]}},
        {"data": START, "headers": {"Authorization": f"Basic {TOKEN}"}},
    ]
    for attempt in attempts:
        async with site.http.post("/runs", **attempt) as response:
            assert response.status == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert await site.rt.archive.list_runs() == []


async def test_the_right_bearer_token_starts_an_offline_run(site: Site) -> None:
    async with site.http.post("/runs", json=START, headers=bearer(TOKEN)) as response:
        assert response.status == 201
        answer = await response.json()
    run_id = answer["id"]
    assert answer["url"] == f"{site.url}/runs/{run_id}"
    end = await site.wait(run_id)
    assert end.reason == "max_turns" and end.turns == 2
    record = await site.rt.archive.get_run(run_id)
    assert record.spec.surface == "web" and record.spec.started_by == "web"
    assert [p.alias for p in record.participants] == ["offline", "offline"]


async def test_the_start_form_redirects_to_the_new_run(site: Site) -> None:
    form = {"models": "offline offline cli 1", "token": TOKEN}
    async with site.http.post("/runs", data=form, allow_redirects=False) as response:
        assert response.status == 303
        location = response.headers["location"]
    run_id = int(location.rsplit("/", 1)[1])
    assert location == f"/runs/{run_id}"
    assert (await site.wait(run_id)).turns == 1


async def test_a_bad_start_request_says_why(site: Site) -> None:
    cases = [
        ({"models": "nosuchmodel offline"}, 400, "unknown model 'nosuchmodel'"),
        ({"models": "offline"}, 400, "takes 2 participants"),
        ({"models": "offline offline", "max_turns": "many"}, 400, "whole number"),
        ({"models": "offline offline", "max_turns": "5000"}, 400, "at most 50 turns"),
        ({"models": "offline offline cli 51"}, 400, "(BACKROOMS_CHAT_MAX_TURNS=50)"),
        ({"models": "offline offline", "max_turns": str(2**64)}, 400, "at most 50 turns"),
        ({"models": "offline offline", "max_turns": "²"}, 400, "whole number"),
    ]
    for fields, status, message in cases:
        async with site.http.post("/runs", json=fields, headers=bearer(TOKEN)) as response:
            assert response.status == status
            assert message in await response.text()
    assert await site.rt.archive.list_runs() == []


async def test_a_full_service_is_a_429_and_says_which_cap(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    caps = {"BACKROOMS_WEB_TOKEN": TOKEN, "BACKROOMS_MAX_RUNS": "1"}
    async with serve(model_server, tmp_path, **caps) as site:
        site.models.chunk_count, site.models.chunk_delay = 50, 0.05  # a reply takes 2.5 s
        live = await site.run("slow " * 50, turns=3, wait=False)
        async with site.http.post("/runs", json=START, headers=bearer(TOKEN)) as response:
            assert response.status == 429
            assert "BACKROOMS_MAX_RUNS" in await response.text()
        await site.rt.manager.stop(live, by="test")


async def test_stop_ends_a_live_run_and_the_page_says_so(site: Site) -> None:
    site.models.chunk_count, site.models.chunk_delay = 50, 0.05  # a reply takes 2.5 s
    run_id = await site.run("a long reply " * 20, turns=5, wait=False)
    async with site.http.post(f"/runs/{run_id}/stop", headers=bearer(TOKEN)) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["stopped"] is True
    assert (
        answer["message"] == f"run {run_id}: Conversation stopped by the web viewer after 0 turns."
    )
    end = await asyncio.wait_for(site.rt.manager.wait(run_id), WAIT)
    assert end.reason == "stopped"
    async with site.http.get(f"/runs/{run_id}") as response:
        assert "Conversation stopped by the web viewer after 0 turns." in await response.text()
    # Stopping it again is a no-op that says so; the form posts redirect back to the page.
    form = {"token": TOKEN}
    async with site.http.post(f"/runs/{run_id}/stop", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["location"] == f"/runs/{run_id}"


async def test_the_page_offers_stop_only_to_a_live_run_with_a_token_configured(
    site: Site,
) -> None:
    site.models.chunk_count, site.models.chunk_delay = 50, 0.05
    live = await site.run("slow " * 50, turns=3, wait=False)
    async with site.http.get(f"/runs/{live}") as response:
        assert f'action="/runs/{live}/stop"' in await response.text()
    await site.rt.manager.stop(live, by="test")
    async with site.http.get(f"/runs/{live}") as response:
        assert "/stop" not in await response.text()


async def test_no_new_run_once_the_service_stops_accepting(site: Site) -> None:
    await site.surface.stop_accepting()
    async with site.http.post("/runs", json=START, headers=bearer(TOKEN)) as response:
        assert response.status == 503


async def test_the_new_runs_address_uses_the_public_url(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    public = {"BACKROOMS_WEB_TOKEN": TOKEN, "BACKROOMS_PUBLIC_URL": "https://rooms.example/"}
    async with serve(model_server, tmp_path, **public) as site:
        async with site.http.post("/runs", json=START, headers=bearer(TOKEN)) as response:
            answer = await response.json()
        assert answer["url"] == f"https://rooms.example/runs/{answer['id']}"
        await site.wait(answer["id"])
