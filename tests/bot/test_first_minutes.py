"""What a new user meets in the first minutes, as a terminal shows it: settings checked in one
line, platforms that cannot be reached, folders that do not exist, nothing created by commands that
only read or refuse, and the wording of the messages."""

from __future__ import annotations

import fnmatch
import json
import socket
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import fake_env
from tests.helpers import backrooms

OPUS = "claude-opus-5-5"
REPO = Path(__file__).resolve().parents[2]
OFFLINE_RUN = ("run", "--lm", "offline", "offline", "--max-turns", "1")


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


# -- item 4: settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "command", "said"),
    [
        (
            "BACKROOMS_OFFLINE_DELAY",
            "-1",
            ("demo",),
            "BACKROOMS_OFFLINE_DELAY must not be negative",
        ),
        ("DISCORD_APPLICATION_ID", "hello", ("discord", "--invite-url"), "numeric Discord id"),
        ("SLACK_BOT_TOKEN", "xoxp-1234-secret", ("slack",), "starting with xoxb-"),
        ("BACKROOMS_RETRY_ATTEMPTS", "lots", OFFLINE_RUN, "must be a whole number"),
    ],
)
async def test_a_bad_setting_is_one_line_before_start_and_only_where_it_is_read(
    tmp_path, variable, value, command, said
):
    env = {"BACKROOMS_DB": str(tmp_path / "b.db"), variable: value}
    code, _, err = await backrooms(*command, env=env, cwd=tmp_path)
    assert code == 2
    line = one_line(err)
    assert variable in line and said in line
    assert "secret" not in line  # a token's body is never shown
    assert not (tmp_path / "b.db").exists()
    # A command that does not read it does not fail on it.
    reader = ("runs",) if variable.startswith("BACKROOMS_") else OFFLINE_RUN
    code, _, err = await backrooms(*reader, env=env, cwd=tmp_path)
    assert code == 0, err


# -- item 5: a platform that cannot be reached -----------------------------------------------------


async def test_slack_that_cannot_be_reached_is_one_line_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api/"
    env = {
        "BACKROOMS_DB": str(tmp_path / "b.db"),
        "SLACK_BOT_TOKEN": "xoxb-1-test",
        "SLACK_APP_TOKEN": "xapp-1-test",
        "SLACK_API_URL": url,
    }
    code, out, err = await backrooms("slack", env=env, cwd=tmp_path, limit=90)
    assert code == 1, err
    line = one_line(err)
    assert url in line and "(SLACK_API_URL)" in line and "connection refused" in line
    assert "Traceback" not in out


async def test_discord_that_cannot_be_reached_is_one_line_without_voice_warnings(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api/v10"
    env = {
        "BACKROOMS_DB": str(tmp_path / "b.db"),
        "DISCORD_TOKEN": "MTIz.test.token",
        "DISCORD_API_BASE_URL": url,
    }
    code, out, err = await backrooms("discord", env=env, cwd=tmp_path, limit=90)
    assert code == 1, err
    line = one_line(err)
    assert url in line and "(DISCORD_API_BASE_URL)" in line
    assert "PyNaCl" not in out + err and "davey" not in out + err


# -- item 6: folders -------------------------------------------------------------------------------


async def test_a_templates_dir_that_does_not_exist_is_named(tmp_path):
    for command in (
        ("run", "--templates-dir", "nowhere"),
        ("templates", "--templates-dir", "nowhere"),
    ):
        code, _, err = await backrooms(*command, env={}, cwd=tmp_path)
        assert code == 2 and "--templates-dir: nowhere does not exist" in err
    code, _, err = await backrooms(
        *OFFLINE_RUN, env={"BACKROOMS_TEMPLATES": "nowhere"}, cwd=tmp_path
    )
    assert code == 2 and "BACKROOMS_TEMPLATES names nowhere, which is not a folder" in one_line(err)


# -- item 7: nothing created by reading or refusing ------------------------------------------------


async def test_reading_and_refused_commands_create_nothing_here(tmp_path):
    for command in (
        ("runs",),
        ("show", "1"),
        ("export", "1", "--format", "json"),
        ("resume", "1"),
        ("continue", "1", "--turns", "2"),
        ("run", "--lm", "opus", "nosuchmodel"),
        ("run",),  # no key for opus
    ):
        code, _, err = await backrooms(*command, env={}, cwd=tmp_path)
        assert code in (0, 2), err
        assert sorted(p.name for p in tmp_path.iterdir()) == [], command
    code, _, err = await backrooms("show", "1", env={}, cwd=tmp_path)
    assert "no run with id 1" in one_line(err)


async def test_a_run_leaves_no_lock_file(tmp_path):
    """No lock keeps a second process off a database any more: runs are leased in the store."""
    code, _, err = await backrooms(*OFFLINE_RUN, env={}, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "backrooms.db").is_file()
    assert not (tmp_path / "backrooms.db.lock").exists()


def test_git_ignores_what_a_run_leaves_in_the_folder():
    patterns = [
        line.strip()
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in ("backrooms.db", "backrooms.db-wal", ".env"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


# -- item 8: wording -------------------------------------------------------------------------------


async def test_help_says_what_run_is_and_has_no_internal_words(tmp_path):
    code, top, _ = await backrooms("--help", env={}, cwd=tmp_path)
    assert code == 0 and "composition root" not in top and "backrooms demo" in top
    for command in ("show", "export", "resume", "continue"):
        code, out, _ = await backrooms(command, "--help", env={}, cwd=tmp_path)
        assert code == 0 and "RUN" in out and "`backrooms runs` lists them" in out
    code, out, _ = await backrooms("--version", env={}, cwd=tmp_path)
    assert code == 0 and out.startswith("backrooms ") and out.split()[1][0].isdigit()


async def test_unknown_names_suggest_the_closest(tmp_path):
    code, _, err = await backrooms("run", "--lm", "opsu", "offline", env={}, cwd=tmp_path)
    assert code == 2 and "unknown model 'opsu' (did you mean 'opus'?); available:" in one_line(err)
    code, _, err = await backrooms(*OFFLINE_RUN, "--template", "cil", env={}, cwd=tmp_path)
    assert code == 2 and "unknown template 'cil' (did you mean 'cli'?); available:" in one_line(err)


async def test_a_broken_template_is_listed_with_its_path_once(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "bad.jsonl").write_text("{not json\n")
    code, out, _ = await backrooms("templates", "--templates-dir", str(mine), env={}, cwd=tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("bad "))
    assert code == 0 and row.count(str(mine / "bad.jsonl")) == 1 and "malformed JSON" in row


async def test_one_attempt_and_no_retrying_in_0s(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_error(OPUS, 503)
    model_server.queue_error(OPUS, 503)
    env["BACKROOMS_RETRY_ATTEMPTS"] = "2"
    code, out, _ = await backrooms("run", "--max-turns", "1", env=env, cwd=tmp_path)
    assert code == 1
    assert "retrying now" in out and "retrying in 0s" not in out
    model_server.queue_error(OPUS, 503)
    env["BACKROOMS_RETRY_ATTEMPTS"] = "1"
    code, out, _ = await backrooms("run", "--max-turns", "1", env=env, cwd=tmp_path)
    assert code == 1 and "gave up after 1 attempt:" in out


async def test_a_registry_field_of_the_wrong_type_says_an_int(tmp_path):
    (tmp_path / "models.toml").write_text(
        '[models.big]\nprovider = "offline"\ndisplay_name = "Big"\ncompany = "x"\n'
        'max_tokens = "lots"\n'
    )
    code, _, err = await backrooms("models", env={}, cwd=tmp_path)
    assert code == 2 and "field 'max_tokens' must be an int, got 'lots'" in one_line(err)


# -- item 13: the first run ------------------------------------------------------------------------


async def test_no_key_for_the_default_run_suggests_the_offline_models(tmp_path):
    code, _, err = await backrooms("run", env={}, cwd=tmp_path)
    line = one_line(err)
    assert code == 2 and "ANTHROPIC_API_KEY" in line and "--lm offline offline" in line


async def test_models_toml_lists_every_missing_field_at_once(tmp_path):
    (tmp_path / "models.toml").write_text('[models.llama]\nprovider = "ollama"\n')
    code, _, err = await backrooms("models", env={}, cwd=tmp_path)
    line = one_line(err)
    assert code == 2 and "models.toml:1" in line
    assert "missing required fields 'display_name', 'company'" in line


async def _chat_server(seen: list[str]) -> web.AppRunner:
    """An OpenAI-compatible server at the root of its address, as Ollama serves one."""

    async def completions(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for delta, finish in (({"content": "hello from llama"}, None), ({}, "stop")):
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "llama3.3",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_an_ollama_base_url_without_a_path_gets_v1(tmp_path):
    seen: list[str] = []
    runner = await _chat_server(seen)
    try:
        port = runner.addresses[0][1]
        env = {"OLLAMA_BASE_URL": f"http://127.0.0.1:{port}", "BACKROOMS_RETRY_BASE_DELAY": "0"}
        code, out, err = await backrooms(
            "run", "--lm", "ollama-llama", "offline", "--max-turns", "1", env=env, cwd=tmp_path
        )
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert seen == ["/v1/chat/completions"] and "hello from llama" in out


async def test_seed_sets_the_offline_seats_and_needs_one(model_server, tmp_path):
    env = {"BACKROOMS_DB": str(tmp_path / "b.db"), "BACKROOMS_LOG_DIR": str(tmp_path / "logs")}

    async def transcript(seed: str) -> str:
        code, out, err = await backrooms(*OFFLINE_RUN, "--seed", seed, env=env, cwd=tmp_path)
        assert code == 0, err
        return out.split("\n", 1)[1]  # after the "run N started" line

    first, again, other = await transcript("7"), await transcript("7"), await transcript("8")
    assert first == again and first != other
    keyed = fake_env(model_server, tmp_path)
    code, _, err = await backrooms("run", "--seed", "7", env=keyed, cwd=tmp_path)
    assert code == 2 and "--seed" in one_line(err) and "no seat of opus opus is offline" in err
    assert model_server.requests == []
