"""The `backrooms` command as a user runs it: a real subprocess, from a directory of its own."""

from __future__ import annotations

import asyncio
import io

import pytest

from bot import eventloop
from bot.terminal import TerminalPrinter, colour_enabled
from tests.conftest import fake_env
from tests.helpers import backrooms

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"


async def test_run_streams_replies_under_actor_headers(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "ls -la")
    model_server.queue_reply(GPT4O, "total 0\ndrwxr-xr-x  .")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    code, out, err = await backrooms(
        "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=workdir
    )
    assert code == 0, err
    assert "\n### Claude 1 ###\nls -la\n" in out
    assert "\n### GPT4o 2 ###\ntotal 0\ndrwxr-xr-x  .\n" in out
    assert out.rstrip().endswith("Reached maximum number of turns (1). Conversation ended.")
    assert "\033[" not in out  # not a terminal: no colour
    assert "transcript:" in err
    logs = list((tmp_path / "BackroomsLogs" / "OpusExplorations").glob("opus_gpt4o_cli_*.txt"))
    assert len(logs) == 1


async def test_defaults_are_upstreams(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "one")
    model_server.queue_reply(OPUS, "two ^C^C")
    code, out, _ = await backrooms("run", env=env, cwd=tmp_path)
    assert code == 0
    assert "### Claude 1 ###" in out and "### Claude 2 ###" in out
    assert "Claude 2 has ended the conversation with ^C^C." in out
    assert {r.model for r in model_server.requests} == {OPUS}


async def test_unknown_model_exits_2_with_the_list(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    code, _, err = await backrooms("run", "--lm", "opus", "gpt-9", env=env, cwd=tmp_path)
    assert code == 2
    assert "unknown model 'gpt-9'" in err and "; available:" in err and "gpt4o" in err
    assert model_server.requests == []


async def test_missing_key_names_the_variable(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    env.pop("OPENAI_API_KEY")
    code, _, err = await backrooms("run", "--lm", "opus", "gpt4o", env=env, cwd=tmp_path)
    assert code == 2 and "OPENAI_API_KEY (needed by gpt4o)" in err


async def test_models_lists_key_state_never_the_key(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    env["ANTHROPIC_API_KEY"] = "sk-ant-very-secret-value"
    env.pop("OPENAI_API_KEY")
    code, out, _ = await backrooms("models", env=env, cwd=tmp_path)
    assert code == 0
    assert "sk-ant-very-secret-value" not in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "ANTHROPIC_API_KEY set" in lines["opus"] and "claude-opus-5-5" in lines["opus"]
    assert "OPENAI_API_KEY missing" in lines["gpt4o"]
    assert "not needed" in lines["offline"]


async def test_templates_lists_participant_counts(tmp_path):
    code, out, _ = await backrooms("templates", env={}, cwd=tmp_path)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "2 participants" in rows["cli"] and "3 participants" in rows["trio_cli"]


async def test_dotenv_in_the_working_directory_is_read(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    key = env.pop("ANTHROPIC_API_KEY")
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={key}\n")
    code, _, err = await backrooms(
        "run", "--lm", "opus", "--max-turns", "1", "--lm", "opus", "opus", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert model_server.requests[0].headers["authorization"] == f"Bearer {key}"


async def test_printer_colours_headers_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert colour_enabled(Tty(), {}) is True
    assert colour_enabled(Tty(), {"NO_COLOR": "1"}) is False
    assert colour_enabled(io.StringIO(), {}) is False
    printer = TerminalPrinter({"Claude 1": "#d97757"}, stream=Tty(), colour=True)
    assert printer.header("Claude 1") == "\033[1;38;2;217;119;87m### Claude 1 ###\033[0m"


def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_commands_run_on_uvloop_where_it_is_installed_unless_asked_not_to():
    pytest.importorskip("uvloop")
    assert eventloop.run(_loop_name(), "auto").startswith("uvloop")
    assert eventloop.run(_loop_name(), "uvloop").startswith("uvloop")
    assert eventloop.run(_loop_name(), "asyncio").startswith("asyncio")


async def _loop_name() -> str:
    return _loop_module()


async def test_an_unknown_event_loop_setting_is_refused_with_the_choices(tmp_path):
    code, _, err = await backrooms(
        "runs",
        env={"BACKROOMS_EVENT_LOOP": "trio", "BACKROOMS_DB": str(tmp_path / "b.db")},
        cwd=tmp_path,
    )
    assert code == 2
    assert "BACKROOMS_EVENT_LOOP must be one of auto, uvloop, asyncio, got 'trio'" in err
    assert not (tmp_path / "b.db").exists()
