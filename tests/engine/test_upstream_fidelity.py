"""With the same template files and model replies, every seed alias is sent exactly what the
upstream script sends, and the log file is byte for byte upstream's.

The templates are upstream's own (../shared/upstream-templates) where that folder exists; in a
clone without it, the same comparisons run over this project's templates (same format, same
loop), and only a template that exists upstream alone is skipped, saying so.

Claude requests carry prompt-cache markers (issue 16): a message's string may become a single
text block with `cache_control`. The comparisons strip exactly that (cache_marks.unmarked), and
one test asserts that it is the only difference."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from backrooms_engine.providers.cache_marks import unmarked
from backrooms_engine.records import RunSpec
from backrooms_engine.templates import builtin_templates_dir
from tests.conftest import UPSTREAM_TEMPLATES, fake_env
from tests.engine import upstream_reference
from tests.helpers import run_to_end, runtime

TWO_PARTY = [
    "cli",
    "student",
    "science",
    "fugue",
    "gallery",
    "ethics",
    "spirituality",
    "meta-template",
]
# Every seed alias in both positions.
PAIRS = [
    ("opus", "gpt4o"),
    ("gpt4o", "sonnet"),
    ("o1-preview", "o1-mini"),
    ("o1-mini", "opus"),
    ("sonnet", "o1-preview"),
    ("opus", "opus"),
]
TURNS = 2
SOURCE = UPSTREAM_TEMPLATES if UPSTREAM_TEMPLATES.is_dir() else builtin_templates_dir()


@pytest.fixture
def upstream_templates() -> Path:
    """Upstream's templates, else ours: the comparison with upstream's loop holds for both."""
    return SOURCE


def _template(directory: Path, name: str) -> Path:
    path = directory / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{name}.jsonl exists only upstream, and {UPSTREAM_TEMPLATES} is absent here")
    return path


def _replies():
    # Braces, tags and blank lines must pass through untouched (no str.format on replies).
    return (f"reply {n}: {{lm1_actor}} <OOC>\n\n  $ ls -la\n" for n in itertools.count(1))


async def _run_ours(model_server, tmp_path, templates_dir: Path, template: str, aliases):
    env = fake_env(model_server, tmp_path)
    async with runtime(env, templates_dir) as rt:
        specs = rt.registry.resolve(aliases)
        replies = _replies()
        for _ in range(TURNS):
            for spec in specs:
                key = "world" if spec.is_world_interface else spec.api_id
                model_server.queue_reply(key, next(replies))
        run_id, end = await run_to_end(
            rt, RunSpec(models=tuple(aliases), template=template, max_turns=TURNS)
        )
        record = await rt.archive.get_run(run_id)
    return record, end, specs


def _sent(model_server):
    """(system, messages) per request, in order, as the wire carried them."""
    out = []
    for req in model_server.requests:
        if req.api == "anthropic":
            out.append((req.system, unmarked(req.messages)))
        elif req.api == "openai":
            msgs = req.messages
            system = None
            if msgs and msgs[0]["role"] in ("system", "developer"):
                system, msgs = msgs[0]["content"], msgs[1:]
            out.append((system, msgs))
        else:
            out.append((None, req.body["messages"]))
    return out


@pytest.mark.parametrize("template", TWO_PARTY)
@pytest.mark.parametrize("aliases", PAIRS, ids="-".join)
async def test_requests_and_log_match_upstream(
    model_server, tmp_path, upstream_templates, template, aliases
):
    _template(upstream_templates, template)
    record, end, _ = await _run_ours(model_server, tmp_path, upstream_templates, template, aliases)

    expected = upstream_reference.run(
        upstream_templates / f"{template}.jsonl", aliases, _replies(), TURNS
    )
    assert _sent(model_server) == [(s, m) for _, s, m in expected.requests]
    assert Path(record.log_path).read_text(encoding="utf-8") == expected.log
    assert end.reason == "max_turns"


@pytest.mark.parametrize("explorer", ["gpt4o", "opus"])
async def test_world_interface_gets_only_the_last_message(
    model_server, tmp_path, upstream_templates, explorer
):
    aliases = (explorer, "cli")
    record, _, _ = await _run_ours(
        model_server, tmp_path, upstream_templates, "cli_with_world_interface", aliases
    )
    expected = upstream_reference.run(
        upstream_templates / "cli_with_world_interface.jsonl", aliases, _replies(), TURNS
    )
    assert _sent(model_server) == [(s, m) for _, s, m in expected.requests]
    world = model_server.requests_for("world")
    assert [r.body for r in world] == [
        {"messages": m} for a, _, m in expected.requests if a == "cli"
    ]
    assert Path(record.log_path).read_text(encoding="utf-8") == expected.log
    assert Path(record.log_path).parent.name == (
        "GPT4oExplorations" if explorer == "gpt4o" else "OpusExplorations"
    )


async def test_ctrl_c_ends_the_log_like_upstream(model_server, tmp_path, upstream_templates):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply("claude-opus-5-5", "first")
    model_server.queue_reply("gpt-4o-2024-08-06", "second")
    model_server.queue_reply("claude-opus-5-5", "enough now ^C^C")
    async with runtime(env, upstream_templates) as rt:
        run_id, end = await run_to_end(
            rt, RunSpec(models=("opus", "gpt4o"), template="cli", max_turns=5)
        )
        record = await rt.archive.get_run(run_id)
    expected = upstream_reference.run(
        upstream_templates / "cli.jsonl",
        ("opus", "gpt4o"),
        iter(["first", "second", "enough now ^C^C"]),
        5,
    )
    assert Path(record.log_path).read_text(encoding="utf-8") == expected.log
    assert end.reason == "ctrl_c" and end.actor == "Claude 1"
    assert len(model_server.requests) == 3


async def test_wire_parameters_per_seed_alias(model_server, tmp_path, upstream_templates):
    """Output limits and temperature as upstream sent them, where today's APIs still accept them."""
    env = fake_env(model_server, tmp_path)
    async with runtime(env, upstream_templates) as rt:
        await run_to_end(rt, RunSpec(models=("gpt4o", "o1-mini"), template="student", max_turns=1))
        await run_to_end(
            rt, RunSpec(models=("sonnet", "o1-preview"), template="student", max_turns=1)
        )
    gpt4o, mini, sonnet, o1 = model_server.requests
    assert gpt4o.body["max_tokens"] == 1024 and gpt4o.body["temperature"] == 1.0
    # Reasoning models answer 400 to max_tokens and to a non-default temperature.
    assert mini.body["max_completion_tokens"] == 8192
    assert "max_tokens" not in mini.body and "temperature" not in mini.body
    assert o1.body["model"] == "o3" and o1.body["max_completion_tokens"] == 8192
    # The Anthropic SDK no longer accepts temperature. claude-sonnet-5-5 thinks before every
    # reply within max_tokens, so upstream's 1024 (meant for the text alone) is raised.
    assert sonnet.body["max_tokens"] == 4096 and "temperature" not in sonnet.body
    assert sonnet.body["model"] == "claude-sonnet-5-5"
    assert all(r.stream for r in model_server.requests)


LONG = 3000  # characters a reply: the prefixes pass the 5.5 models' 512-token cache minimum


def _long_replies():
    return (f"reply {n}: " + "wall hum " * (LONG // 9) for n in itertools.count(1))


async def _claude_pair(model_server, tmp_path, upstream_templates, env_extra):
    env = fake_env(model_server, tmp_path) | env_extra
    replies = _long_replies()
    for _ in range(2 * 3):
        model_server.queue_reply("claude-opus-5-5", next(replies))
    async with runtime(env, upstream_templates) as rt:
        await run_to_end(rt, RunSpec(models=("opus", "opus"), template="cli", max_turns=3))
    return upstream_reference.run(
        upstream_templates / "cli.jsonl", ("opus", "opus"), _long_replies(), 3
    )


def _marked_string(sent, expected) -> bool:
    """`sent` is `expected` (a string content) as one text block carrying a cache marker."""
    return sent == [{"type": "text", "text": expected, "cache_control": {"type": "ephemeral"}}]


async def test_cache_markers_are_the_only_difference_from_upstream(
    model_server, tmp_path, upstream_templates
):
    expected = await _claude_pair(model_server, tmp_path, upstream_templates, {})
    requests = model_server.requests_for("anthropic")
    assert len(requests) == len(expected.requests) == 6
    marked = 0
    for req, (_, system, messages) in zip(requests, expected.requests, strict=True):
        assert req.system == system
        assert len(req.messages) == len(messages)
        for got, want in zip(req.messages, messages, strict=True):
            assert got["role"] == want["role"] and set(got) == {"role", "content"}
            if got["content"] != want["content"]:
                assert _marked_string(got["content"], want["content"])
                marked += 1
    assert marked >= 6  # every request leaves a marker; the later ones read one too


async def test_with_prompt_caching_off_claude_is_sent_upstream_s_request_exactly(
    model_server, tmp_path, upstream_templates
):
    off = {"BACKROOMS_PROMPT_CACHE": "0"}
    expected = await _claude_pair(model_server, tmp_path, upstream_templates, off)
    sent = [(r.system, r.messages) for r in model_server.requests_for("anthropic")]
    assert sent == [(s, m) for _, s, m in expected.requests]
