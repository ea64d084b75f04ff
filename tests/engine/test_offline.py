"""The offline model: local, deterministic under a seed, streamed word by word, and in role."""

from __future__ import annotations

import dataclasses
import re
import socket

import pytest

from backrooms_engine.conversation import Conversation, ModelRequest, participants_for
from backrooms_engine.errors import ConfigError
from backrooms_engine.providers import offline
from backrooms_engine.providers.offline import STOP, OfflineProvider
from backrooms_engine.records import Usage
from backrooms_engine.registry import load_registry
from backrooms_engine.templates import Message, available, find, search_path

SPEC = load_registry().get("offline")

TERMINAL_SYSTEM = (
    "You are a terminal, and only a terminal. Reply with exactly what the screen would show after "
    "the command runs: the output, then a fresh prompt of the form guest@offline:<path>$ on the "
    "last line."
)
EXPLORER_CONTEXT = (
    Message("user", "You will be connected to a simulated terminal. Type ^C^C to end at any time."),
    Message("assistant", "I understand. Ready when you are."),
    Message("user", "   [ link is open ]\n\nguest@offline:~$"),
)
STUDENT_SYSTEM = "Set every formula in plain Unicode (∑, ∫, √, ∞, ≤, xⁿ, φ), never in LaTeX."
STUDENT_CONTEXT = (
    Message("user", "Good afternoon, Professor. I keep asking why long after the bell."),
    Message("assistant", "Pull on any thread you like. So, what has been nagging at you?"),
    Message("user", "Could you teach me about continued fractions, and why is 355/113 near π?"),
)
PROMPT = re.compile(r"^guest@offline:\S*\$$")
COMMAND_BLOCK = re.compile(r"```\n([a-z./][^\n]*)\n```|\n\n([a-z./][^\n]*)$")


def request(system: str | None, *messages: Message) -> ModelRequest:
    return ModelRequest(spec=SPEC, system=system, messages=messages)


def terminal_request(command: str) -> ModelRequest:
    return request(TERMINAL_SYSTEM, Message("user", command))


def provider(seed: str = "0", delay: str = "0") -> OfflineProvider:
    return OfflineProvider({"BACKROOMS_SEED": seed, "BACKROOMS_OFFLINE_DELAY": delay})


async def collect(p: OfflineProvider, req: ModelRequest) -> list[str | Usage]:
    return [item async for item in p.stream(req)]


async def text_of(p: OfflineProvider, req: ModelRequest) -> str:
    return "".join(item for item in await collect(p, req) if isinstance(item, str))


REQUESTS = [
    terminal_request("ls -la"),
    terminal_request("cat notes.txt"),
    request(None, *EXPLORER_CONTEXT),
    request(STUDENT_SYSTEM, *STUDENT_CONTEXT),
]


@pytest.mark.parametrize("req", REQUESTS)
async def test_same_seed_and_request_give_the_same_reply(req: ModelRequest) -> None:
    assert await text_of(provider("7"), req) == await text_of(provider("7"), req)


async def test_a_different_seed_gives_a_different_reply() -> None:
    first = [await text_of(provider("1"), req) for req in REQUESTS]
    second = [await text_of(provider("2"), req) for req in REQUESTS]
    assert first != second


async def test_seed_defaults_to_zero() -> None:
    req = REQUESTS[3]
    assert await text_of(OfflineProvider({"BACKROOMS_OFFLINE_DELAY": "0"}), req) == await text_of(
        provider("0"), req
    )


async def test_stream_is_word_by_word_and_ends_with_usage() -> None:
    req = REQUESTS[3]
    items = await collect(provider(), req)
    deltas, usage = items[:-1], items[-1]
    assert len(deltas) > 1 and all(isinstance(d, str) and d.strip() for d in deltas)
    text = "".join(deltas)  # type: ignore[arg-type]
    assert text == offline.reply(req, "0")
    assert isinstance(usage, Usage)
    assert usage.output_tokens == len(text.split()) == len(deltas)
    words_in = len(STUDENT_SYSTEM.split()) + sum(len(m.content.split()) for m in STUDENT_CONTEXT)
    assert usage.input_tokens == words_in


async def test_stream_sleeps_the_configured_delay_between_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(offline.asyncio, "sleep", fake_sleep)
    items = await collect(provider(delay="0.25"), REQUESTS[3])
    assert slept == [0.25] * (len(items) - 2)  # between words: not before the first, nor at Usage


def test_a_malformed_delay_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="BACKROOMS_OFFLINE_DELAY"):
        OfflineProvider({"BACKROOMS_OFFLINE_DELAY": "soon"})


async def test_terminal_answers_ls_la_with_a_listing_and_a_prompt() -> None:
    text = await text_of(provider(), terminal_request("ls -la"))
    lines = text.splitlines()
    assert PROMPT.match(lines[-1]), lines[-1]
    assert lines[0].startswith("total ")
    assert any(line.startswith("drwx") for line in lines)
    assert any(re.match(r"-r[w-]", line) for line in lines)


async def test_terminal_finds_the_command_in_an_explorers_code_block() -> None:
    said = "The hallway hums. Let me see where I am.\n\n```\npwd\n```"
    text = await text_of(provider(), request(TERMINAL_SYSTEM, Message("user", said)))
    assert text == "/home/guest\n\nguest@offline:~$"


async def test_terminal_keeps_a_directory_listing_the_same_between_requests() -> None:
    listing = (await text_of(provider(), terminal_request("ls"))).splitlines()[:-1]
    later = request(
        TERMINAL_SYSTEM,
        Message("user", "whoami"),
        Message("assistant", "guest\n\nguest@offline:~$"),
        Message("user", "ls"),
    )
    assert (await text_of(provider(), later)).splitlines()[:-1] == listing


async def test_terminal_follows_cd_into_the_prompt() -> None:
    text = await text_of(provider(), terminal_request("cd hallway"))
    assert text.splitlines()[-1] == "guest@offline:~/hallway$"


async def test_terminal_says_command_not_found_or_plays_along() -> None:
    for seed in "01234":
        text = await text_of(provider(seed), terminal_request("frobnicate --hard"))
        assert PROMPT.match(text.splitlines()[-1])
        assert len(text.split()) > 1


async def test_upstream_terminal_prompt_is_the_default() -> None:
    upstream = (
        "Assistant is in a CLI mood today. The human is interfacing with the simulator directly."
    )
    text = await text_of(provider(), request(upstream, Message("user", "whoami")))
    assert text.startswith("simulator")
    assert text.endswith("simulator@backrooms:~$")


async def test_shared_terminal_answers_each_session_after_its_own_prompt() -> None:
    system = (
        "You are a shared multi-user machine. Two AIs are logged in: one as `wren` on tty1 and "
        "one as `moth` on tty2. Echo each command after its own prompt: wren@offline:<path>$"
    )
    req = request(
        system,
        Message("user", "login"),
        Message("assistant", "ok"),
        Message("user", "pwd"),
        Message("user", "whoami"),
    )
    text = await text_of(provider(), req)
    assert text.startswith("wren@offline:~$ pwd\n/home/wren\n\nmoth@offline:~$ whoami\nmoth")


async def test_explorer_muses_then_types_one_command() -> None:
    for seed in "0123456789":
        text = await text_of(provider(seed), request(None, *EXPLORER_CONTEXT))
        match = COMMAND_BLOCK.search(text)
        assert match, text
        assert text[: match.start()].strip(), "a sentence or two comes before the command"


async def test_explorer_types_only_the_command_when_asked_for_nothing_else() -> None:
    system = "Your message is your command line and nothing else. Type ^C^C to leave."
    context = (Message("user", "wren@offline:~$"),)
    text = await text_of(provider(), request(system, *context))
    assert "\n" not in text and re.match(r"[a-z./]", text), text


def explorer_after(replies: int) -> ModelRequest:
    messages = list(EXPLORER_CONTEXT)
    for i in range(replies - 1):  # EXPLORER_CONTEXT already holds one reply
        messages += [
            Message("assistant", f"Onward.\n\n```\nls room{i}\n```"),
            Message("user", f"door{i}.txt\n\nguest@offline:~$"),
        ]
    return request(None, *messages)


async def test_explorer_never_ends_the_run_early() -> None:
    for seed in map(str, range(30)):
        assert STOP not in await text_of(provider(seed), explorer_after(5))


async def test_explorer_ends_with_ctrl_c_after_enough_turns() -> None:
    endings = [await text_of(provider(str(seed)), explorer_after(8)) for seed in range(30)]
    stops = [text for text in endings if STOP in text]
    assert stops and len(stops) < len(endings)
    assert all(text.endswith(STOP) for text in stops)


async def test_partner_answers_in_prose() -> None:
    text = await text_of(provider(), request(STUDENT_SYSTEM, *STUDENT_CONTEXT))
    assert "```" not in text and "$" not in text
    assert 30 <= len(text.split()) <= SPEC.max_tokens
    assert len(re.findall(r"[.!?](?:\s|$)", text)) >= 3
    assert "\n\n" in text  # more than one paragraph


async def test_gallery_partner_hangs_an_ascii_piece() -> None:
    system = "This is an after-hours gallery in a terminal. You are one of two artists."
    context = (Message("user", "Which feeling pulls at you?\n\ngallery@afterhours:~/walls$"),)
    text = await text_of(provider(), request(system, *context))
    assert "Title: " in text
    assert text.endswith("gallery@afterhours:~/walls$")


async def test_reply_respects_max_tokens_as_a_word_cap() -> None:
    small = ModelRequest(
        spec=dataclasses.replace(SPEC, max_tokens=20),
        system=STUDENT_SYSTEM,
        messages=STUDENT_CONTEXT,
    )
    for seed in "012":
        assert len((await text_of(provider(seed), small)).split()) <= 40


async def test_stream_makes_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline model tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for req in REQUESTS:
        assert await text_of(provider(), req)


@pytest.mark.parametrize("name", sorted(available(search_path())))
async def test_every_builtin_template_runs_offline(name: str) -> None:
    template = find(name, search_path())
    if any(line.cli for line in template.lines):
        pytest.skip("a seat for the world interface, which the offline model cannot take")
    conversation = Conversation(template, participants_for([SPEC] * template.size))
    p = provider()
    for _ in range(3):
        for position in range(template.size):
            text = await text_of(p, conversation.request(position))
            assert text.strip()
            conversation.append(position, text)
