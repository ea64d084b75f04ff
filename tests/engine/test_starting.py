"""One way in (issue 14 item 5) and runs any process can drive (issue 15 item 3): a start is
checked once and stored with its template and model specs; `queued` until a driving process
claims it; a process without the templates folder or models.toml drives it from the store."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backrooms_engine import export
from backrooms_engine.errors import ConfigError
from backrooms_engine.records import ParticipantInfo, RunEnd, RunSpec
from backrooms_engine.store import SqliteStore
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings
from tests.conftest import fake_env
from tests.helpers import by_message_count

DUET = (
    '{"system_prompt": "You are {lm1_actor}, talking with {lm2_actor} of {lm2_company}.", '
    '"context": [{"role": "user", "content": "begin, {lm1_actor}"}]}\n'
    "\n"  # a blank line: skipped, as upstream's loader skips it
    '{"system_prompt": "You are {lm2_actor}; {{braces}} stay braces.", "context": []}\n'
)
MODELS_TOML = """
[models.muse]
provider = "anthropic"
api_id = "claude-muse-test"
display_name = "Muse"
company = "museco"
max_tokens = 77
"""
SPEC = RunSpec(models=("muse", "gpt4o"), template="duet", max_turns=2, surface="web")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the run was asked for: its own templates folder and models.toml."""
    (tmp_path / "mine" / "templates").mkdir(parents=True)
    (tmp_path / "mine" / "templates" / "duet.jsonl").write_text(DUET, encoding="utf-8")
    (tmp_path / "mine" / "models.toml").write_text(MODELS_TOML, encoding="utf-8")
    (tmp_path / "empty").mkdir()
    return tmp_path


@contextlib.asynccontextmanager
async def process(env: dict[str, str], *, drives: bool = True) -> AsyncIterator[Runtime]:
    async with open_runtime(Settings.from_mapping(env), drives=drives) as rt:
        yield rt


def asker(model_server, folder: Path, db: str = "backrooms.db") -> dict[str, str]:
    env = fake_env(model_server, folder)
    env["BACKROOMS_DB"] = str(folder / db)
    env["BACKROOMS_TEMPLATES"] = str(folder / "mine" / "templates")
    env["BACKROOMS_MODELS"] = str(folder / "mine" / "models.toml")
    return env


def elsewhere(model_server, folder: Path) -> dict[str, str]:
    """A process on the same database with an empty templates folder and no models.toml."""
    env = fake_env(model_server, folder)
    env["BACKROOMS_TEMPLATES"] = str(folder / "empty")
    return env


def sent(model_server) -> list[tuple[str, object, object]]:
    return [(r.model, r.body.get("system"), r.body.get("messages")) for r in model_server.requests]


async def test_a_run_stored_here_is_driven_elsewhere_from_its_stored_template_and_models(
    model_server, folder
):
    model_server.set_responder(by_message_count)
    async with process(asker(model_server, folder, "alone.db")) as rt:  # uninterrupted, here
        handle = await rt.manager.start(SPEC)
        await rt.manager.wait(handle.id)
        alone = [(r.actor, r.text) for r in await rt.archive.replies(handle.id)]
    requests_alone = sent(model_server)
    model_server.requests.clear()

    async with process(asker(model_server, folder), drives=False) as rt:
        queued = await rt.manager.queue(SPEC)
        assert (await rt.archive.get_run(queued.id)).status == "queued"
    assert model_server.requests == []  # nothing drives it where it was asked for

    async with process(elsewhere(model_server, folder)) as rt:
        assert "muse" not in rt.registry.models  # this process has never heard of it
        with pytest.raises(ConfigError, match="unknown model 'muse'"):
            rt.manager.prepare(SPEC)
        with pytest.raises(ConfigError, match="unknown template 'duet'"):
            rt.manager.prepare(RunSpec(models=("opus", "gpt4o"), template="duet"))
        [handle] = await rt.manager.resume_all()
        end = await rt.manager.wait(handle.id)
        replies = await rt.archive.replies(handle.id)
        record = await rt.archive.get_run(handle.id)

    assert end.reason == "max_turns" and record.status == "ended"
    assert [(r.actor, r.text) for r in replies] == alone
    assert sent(model_server) == requests_alone  # the same prompts, to the same model ids
    assert requests_alone[0][0] == "claude-muse-test"
    assert requests_alone[0][1] == "You are Muse 1, talking with GPT4o 2 of openai."
    assert (
        Path(record.log_path)
        .read_text(encoding="utf-8")
        .endswith("Reached maximum number of turns (2). Conversation ended.\n")
    )


async def test_a_stored_run_holds_its_specs_and_template_but_no_key(model_server, folder):
    env = asker(model_server, folder)
    async with process(env, drives=False) as rt:
        record = await rt.manager.queue(SPEC)
        blueprint = await rt.transcript.blueprint(record.id)
    assert blueprint is not None
    assert [json.loads(line) for line in blueprint.template.splitlines()] == [
        json.loads(line) for line in DUET.splitlines() if line.strip()
    ]
    models = json.loads(blueprint.models)
    assert [(m["alias"], m["api_id"], m["max_tokens"]) for m in models] == [
        ("muse", "claude-muse-test", 77),
        ("gpt4o", "gpt-4o-2024-08-06", models[1]["max_tokens"]),
    ]
    assert models[0]["provider"]["key_env"] == "ANTHROPIC_API_KEY"
    for key in (v for k, v in env.items() if k.endswith("_API_KEY")):
        assert key not in blueprint.models


async def test_a_run_stored_before_runs_kept_a_blueprint_is_rebuilt_from_the_folder(
    model_server, folder
):
    model_server.set_responder(by_message_count)
    env = asker(model_server, folder)
    async with process(env) as rt:
        t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        cast = [
            ParticipantInfo(0, "muse", "Muse 1", "claude-muse-test", "anthropic"),
            ParticipantInfo(1, "gpt4o", "GPT4o 2", "gpt-4o-2024-08-06", "openai"),
        ]
        old = await rt.transcript.create_run(SPEC, cast, str(folder / "old.txt"), t0)
        assert await rt.transcript.blueprint(old.id) is None
        handle = await rt.manager.resume(old.id)
        end = await rt.manager.wait(handle.id)
    assert end.reason == "max_turns"
    assert sent(model_server)[0][:2] == (
        "claude-muse-test",
        "You are Muse 1, talking with GPT4o 2 of openai.",
    )


@pytest.mark.parametrize(
    ("models", "drop_key", "message"),
    [
        (("muse", "nosuch"), None, "unknown model 'nosuch'"),
        (("muse", "gpt4o"), "OPENAI_API_KEY", "missing API key: set OPENAI_API_KEY"),
    ],
)
async def test_a_refused_start_stores_nothing_and_says_one_line(
    model_server, folder, models, drop_key, message
):
    env = asker(model_server, folder)
    env.pop(drop_key or "", None)
    spec = RunSpec(models=models, template="duet", max_turns=2)
    async with process(env, drives=False) as rt:
        for attempt in (rt.manager.queue, rt.manager.create):
            with pytest.raises(ConfigError, match=message) as refused:
                await attempt(spec)
            assert "\n" not in str(refused.value)
        assert await rt.archive.list_runs() == []
    assert not (folder / "BackroomsLogs").exists() or not any((folder / "BackroomsLogs").iterdir())


async def test_waiting_lists_queued_runs_oldest_first_and_a_claim_makes_one_running(
    model_server, folder
):
    env = asker(model_server, folder)
    async with process(env, drives=False) as asking:
        ids = [(await asking.manager.queue(SPEC)).id for _ in range(3)]
    db = folder / "backrooms.db"
    async with await SqliteStore.open(db) as driver:
        assert driver.leases is not None
        assert await driver.leases.waiting(frozenset({"web"})) == ids
        await driver.leases.claim(ids[1])  # the claim itself ends the queue, on SQLite
        assert await driver.leases.waiting(frozenset({"web"})) == [ids[0], ids[2]]
        statuses = [(await driver.get_run(i)).status for i in ids]
        assert statuses == ["queued", "running", "queued"]
        assert [r.id for r in await driver.list_runs(status="queued")] == [ids[2], ids[0]]
        assert [r.id for r in await driver.list_runs(status="running")] == [ids[1]]


async def test_export_json_gives_each_run_state_and_an_end_only_when_ended(model_server, folder):
    env = asker(model_server, folder)
    async with process(env, drives=False) as asking:
        ids = [(await asking.manager.queue(SPEC)).id for _ in range(4)]
    async with await SqliteStore.open(folder / "backrooms.db") as store:
        assert store.leases is not None
        for run_id in ids[1:]:
            await store.leases.claim(run_id)
            await store.claimed(run_id)
        await store.pause_run(ids[2], datetime.now(UTC))
        await store.finish_run(ids[3], RunEnd("max_turns", turns=2, max_turns=2), datetime.now(UTC))
        shown = []
        for run_id in ids:
            text = export.render(await store.get_run(run_id), [], "json")
            data = json.loads(text)
            shown.append((data["status"], data["end"] is None))
    assert shown == [("queued", True), ("running", True), ("paused", True), ("ended", False)]
