"""Every persona has a face with no configuration: by company, a variant per further seat of the
same company, served by the web viewer, pointed at by Slack posts (emoji without a public URL)."""

from __future__ import annotations

import struct
import zlib

import pytest_asyncio

from bot import faces
from bot.faces import distinct_colours
from tests.bot.slack_harness import CLAUDE_ICON, serving, slack_env
from tests.fakes.slack_server import GENERAL_CHANNEL_ID as GENERAL
from tests.fakes.slack_server import FakeSlack
from tests.web.conftest import serve


@pytest_asyncio.fixture
async def fake():
    async with FakeSlack() as server:
        yield server


def pixels(png: bytes) -> bytes:
    """The raw RGBA rows of one of our PNGs (one IDAT chunk)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    return zlib.decompress(png[41 : 41 + length])


def test_no_two_seats_of_a_run_share_a_picture_or_a_colour():
    seats = faces.seat_faces(["anthropic", "anthropic", "openai", "anthropic", "local"])
    assert [f.name for f in seats] == [
        "anthropic-0",
        "anthropic-1",
        "openai-0",
        "anthropic-2",
        "local-0",
    ]
    assert len({pixels(faces.png(f)) for f in seats}) == len(seats)
    assert len({f.colour for f in seats}) == len(seats)
    assert len({f.emoji() for f in seats}) == len(seats)
    assert len(pixels(faces.png(seats[0]))) == 64 * (1 + 64 * 4)


def test_companies_come_from_the_registry_company_and_provider():
    assert faces.company_of("anthropic", "anthropic") == "anthropic"
    assert faces.company_of("Google", "gemini") == "google"
    assert faces.company_of("meta", "ollama") == "local"
    assert faces.company_of("DeepSeek", "deepseek") == "deepseek"
    assert faces.company_of("CLI", "world") == "other"


def test_repeated_registry_colours_are_shaded_apart_for_the_terminal():
    colours = faces.distinct_colours(["#d97757", "#d97757", "#10a37f", "#d97757"])
    assert len(set(colours)) == 4 and colours[0] == "#d97757" and colours[2] == "#10a37f"


def test_discord_default_avatars_differ_per_seat():
    urls = [faces.discord_default_avatar(p) for p in range(6)]
    assert urls[0] == "https://cdn.discordapp.com/embed/avatars/0.png" and len(set(urls)) == 6


async def test_the_web_viewer_serves_each_face_at_a_stable_url(model_server, tmp_path):
    async with serve(model_server, tmp_path) as site:
        async with site.http.get("/faces/openai-1.png") as response:
            assert response.status == 200
            assert response.content_type == "image/png"
            body = await response.read()
        async with site.http.get("/faces/nosuch-0.png") as missing:
            assert missing.status == 404
    assert body == faces.png(faces.Face("openai", 1))


async def test_slack_posts_carry_an_emoji_per_company_without_a_public_url(
    model_server, fake, tmp_path
):
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("gpt4o gpt4o cli 1")
        await svc.wait_end(run_id)
        thread = svc.thread(svc.root(run_id))
    assert [(m["icon_emoji"], m["icon_url"]) for m in thread[:2]] == [
        (":large_green_circle:", None),
        (":large_green_square:", None),
    ]


async def test_slack_posts_point_at_our_pictures_with_a_public_url_and_the_users_wins(
    model_server, fake, tmp_path
):
    env = slack_env(model_server, fake, tmp_path, BACKROOMS_PUBLIC_URL="https://relay.example")
    async with serving(env, fake) as svc:
        twins = await svc.start("gpt4o gpt4o cli 1")
        await svc.wait_end(twins)
        mixed = await svc.start("opus gpt4o cli 1")
        await svc.wait_end(mixed)
        icons = {
            r: [m["icon_url"] for m in fake.thread(GENERAL, svc.root(r)["ts"])[:2]]
            for r in (twins, mixed)
        }
    assert icons[twins] == [
        "https://relay.example/faces/openai-0.png",
        "https://relay.example/faces/openai-1.png",
    ]
    assert icons[mixed] == [CLAUDE_ICON, "https://relay.example/faces/openai-0.png"]


async def test_discord_posts_wear_a_different_default_avatar_per_seat(model_server, tmp_path):
    from tests.bot.discord_world import discord_world

    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "gpt4o gpt4o", "max_turns": 1}))
        await w.run_ended(1)
        posts = w.fake.webhook_executes(await w.thread_of(1))
    assert [c.json.get("avatar_url") for c in posts] == [
        "https://cdn.discordapp.com/embed/avatars/0.png",
        "https://cdn.discordapp.com/embed/avatars/1.png",
    ]


def test_many_seats_of_a_grey_model_get_their_colours_without_hanging() -> None:
    """A grey has no channel to turn once its shades are used: the search stops, and every seat
    the shades can tell apart is told apart."""
    colours = distinct_colours(["#9e9e9e"] * 12)
    assert len(colours) == 12 and len(set(colours[:5])) == 5
