"""Which waiting runs a service claims, decided before it claims any (bot/claiming.py): its own
surfaces in its own spaces, room under its max runs, and only runs whose models, keys and
template it has. The processes that live by these rules are in tests/bot/test_workers.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from datetime import UTC, datetime

from backrooms_engine.ports import Observer
from backrooms_engine.records import ParticipantInfo, RunRecord, RunSpec
from backrooms_engine.store import SqliteStore
from bot.claiming import Choice, Claims, worker_claims
from bot.discord.surface import servers_shown
from bot.settings import DiscordSettings
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.helpers import dummy_keys, runtime, spawn_backrooms

T0 = datetime(2026, 1, 2, tzinfo=UTC)


def record(
    run_id: int, surface: str, space: str | None = None, models=("opus", "opus"), template="cli"
):
    cast = tuple(
        ParticipantInfo(i, alias, f"{alias} {i + 1}", alias, "anthropic")
        for i, alias in enumerate(models)
    )
    spec = RunSpec(models=tuple(models), template=template, surface=surface, space=space)
    return RunRecord(run_id, spec, cast, "running", T0, "log.txt")


class OneServer:
    """A chat surface connected to one space only."""

    name = "discord"

    def __init__(self, space: str) -> None:
        self.space = space

    def shows(self, record: RunRecord) -> bool:
        return record.spec.space == self.space

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        return []


def test_a_discord_bot_shows_the_servers_it_is_in_narrowed_by_its_settings() -> None:
    joined = [1, 2, 3]
    assert servers_shown(joined, DiscordSettings()) == {"1", "2", "3"}
    assert servers_shown(joined, DiscordSettings(guild_ids=(2, 9))) == {"2"}
    narrowed = DiscordSettings(guild_ids=(2, 3), allowed_guilds=frozenset({3, 4}))
    assert servers_shown(joined, narrowed) == {"3"}
    assert servers_shown([], DiscordSettings()) == frozenset()


def _env(tmp_path, *without: str) -> dict[str, str]:
    keys = {k: v for k, v in dummy_keys().items() if k not in without}
    return keys | {
        "BACKROOMS_DB": str(tmp_path / "b.db"),
        "BACKROOMS_LOG_DIR": str(tmp_path / "logs"),
    }


async def stored(
    rt, surface: str, space: str | None = None, models=("opus", "opus"), template="cli"
):
    """A run stored as a process that stored it before blueprints did (no blueprint): it is
    checked against this process's own models.toml and templates."""
    shape = record(0, surface, space, models, template)
    return await rt.transcript.create_run(shape.spec, shape.participants, "log.txt", T0)


async def test_a_chat_bot_claims_only_runs_of_its_own_surface_and_space(tmp_path) -> None:
    async with runtime(_env(tmp_path)) as rt:
        choice = Choice(
            rt, {"discord": OneServer("A")}, Claims("discord", frozenset({"discord"}), 5)
        )
        wanted = choice.fresh_round()
        assert await wanted(await stored(rt, "discord", "A"))
        assert not await wanted(await stored(rt, "discord", "B"))  # another server's: another bot's
        assert not await wanted(await stored(rt, "slack", "A"))
        assert not await wanted(await stored(rt, "terminal"))


async def test_a_worker_claims_every_run_no_chat_shows(tmp_path) -> None:
    async with runtime(_env(tmp_path)) as rt:
        wanted = Choice(rt, {}, worker_claims(5)).fresh_round()
        assert await wanted(await stored(rt, "terminal"))
        assert await wanted(await stored(rt, "web", "web"))
        assert not await wanted(await stored(rt, "discord", "A"))
        assert not await wanted(await stored(rt, "slack", "T1"))
        assert await Choice(rt, {}, worker_claims(5)).observers_for(record(1, "terminal")) == ()


async def test_no_run_is_claimed_whose_model_key_or_template_is_missing_here(tmp_path) -> None:
    async with runtime(_env(tmp_path, "OPENAI_API_KEY")) as rt:
        wanted = Choice(rt, {}, worker_claims(5)).fresh_round()
        assert not await wanted(await stored(rt, "terminal", models=("opus", "gpt4o")))  # no key
        assert not await wanted(await stored(rt, "terminal", models=("opus", "nosuchmodel")))
        assert not await wanted(await stored(rt, "terminal", template="nosuchtemplate"))
        assert await wanted(await stored(rt, "terminal", models=("opus", "opus")))
        assert not await wanted(record(99, "terminal"))  # a run the store does not hold


async def test_a_run_with_a_blueprint_needs_neither_the_template_nor_the_models_here(
    tmp_path,
) -> None:
    """A run queued by a process with a template and a model of its own: a worker that has
    neither (but the key) can drive it from what the run stored."""
    starter_dir = tmp_path / "starter"
    (starter_dir / "templates").mkdir(parents=True)
    (starter_dir / "templates" / "only-here.jsonl").write_text(
        '{"system_prompt": "You are {lm1_actor}.", "context": []}\n'
        '{"system_prompt": "You are {lm2_actor}.", "context": []}\n',
        encoding="utf-8",
    )
    (starter_dir / "models.toml").write_text(
        '[models.house]\nprovider = "anthropic"\napi_id = "claude-house-1"\n'
        'display_name = "House"\ncompany = "anthropic"\n',
        encoding="utf-8",
    )
    env = _env(tmp_path) | {"BACKROOMS_MODELS": str(starter_dir / "models.toml")}
    async with runtime(env, templates_dir=starter_dir / "templates") as starter:
        queued = await starter.manager.queue(
            RunSpec(models=("house", "opus"), template="only-here", surface="terminal")
        )
    async with runtime(_env(tmp_path)) as worker:  # shipped models and templates only
        wanted = Choice(worker, {}, worker_claims(5)).fresh_round()
        assert await wanted(await worker.archive.get_run(queued.id))
        # The same run stored without its blueprint could not be served here.
        assert not await wanted(
            await stored(worker, "terminal", models=("house", "opus"), template="only-here")
        )


async def test_the_room_is_what_this_process_drives_under_max_runs(tmp_path) -> None:
    async with runtime(_env(tmp_path)) as rt:
        full = Choice(rt, {}, worker_claims(0)).fresh_round()
        assert not await full(await stored(rt, "terminal"))
        # Nothing is driven here yet: each run asked finds the room free (a claim lost to
        # another process takes none; one made does, as the manager then drives it).
        wanted = Choice(rt, {}, worker_claims(2)).fresh_round()
        runs = [await stored(rt, "terminal") for _ in range(3)]
        assert [await wanted(r) for r in runs] == [True, True, True]


async def test_a_discord_bot_leaves_the_waiting_runs_of_servers_it_is_not_for(
    model_server, tmp_path
) -> None:
    """Without the filter the bot would claim the other server's run and, finding no thread of
    its own for it, end it; with it, it ends only its own server's threadless run."""
    async with FakeDiscord() as fake:
        ours, theirs = fake.add_guild("Ours"), fake.add_guild("Theirs")
        fake.add_text_channel(ours, "relay")
        env = fake_env(model_server, tmp_path) | {
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_BASE_URL": fake.rest_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_GUILD_IDS": str(ours),
            "BACKROOMS_LEASE_SECONDS": "2",
        }
        path = tmp_path / "backrooms.db"
        async with await SqliteStore.open(path, owner=False) as store:  # queued: nobody's
            for space in (theirs, ours):
                spec = RunSpec(models=("opus", "opus"), surface="discord", space=str(space))
                await store.create_run(spec, record(0, "discord").participants, "x.txt", T0)
        bot = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
        try:
            assert bot.stdout is not None
            async with asyncio.timeout(120):
                while b"discord ready" not in await bot.stdout.readline():
                    pass

            async def ended(run_id: int) -> bool:
                async with await SqliteStore.open(path, owner=False) as store:
                    return (await store.get_run(run_id)).end is not None

            for _ in range(300):  # bounded: a minute at most
                if await ended(2):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # three more looks at the waiting runs
            bot.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(bot.communicate(), 60)
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
    assert bot.returncode == 0, out.decode()[-2000:]
    async with await SqliteStore.open(path, owner=False) as store:
        theirs_run, ours_run = await store.get_run(1), await store.get_run(2)
        assert await store.processes.holders([1, 2]) == {}
    assert (theirs_run.status, theirs_run.end) == ("running", None)  # left for its own bot
    assert ours_run.end is not None and "thread" in (ours_run.end.detail or "")
