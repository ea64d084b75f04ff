"""Cache breakpoints for Anthropic requests: where they go, where they do not, and that the text
sent is unchanged (issue 16, item 1); then measured on the fake's cache accounting."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from backrooms_engine.providers.cache_marks import (
    LIFETIME_SECONDS,
    MAX_BREAKPOINTS,
    SeatRequest,
    mark_request,
    unmarked,
)

EPHEMERAL = {"type": "ephemeral"}
LONG = "the corridor hums " * 200  # 3,600 characters: 1,200 estimated tokens
MIN = 1024


def convo(*texts: str) -> list[dict[str, Any]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]


def markers(messages: list[dict[str, Any]]) -> list[int]:
    """Indices of the messages that carry a cache_control anywhere."""
    return [
        i
        for i, m in enumerate(messages)
        if isinstance(m["content"], list) and any("cache_control" in b for b in m["content"])
    ]


def assert_only_markers_differ(sent: list[dict[str, Any]], original: list[dict[str, Any]]) -> None:
    """The fidelity rule: with cache_control stripped and a lone text block read as its string,
    the request is the original; and where they differ, that is all that differs."""
    assert unmarked(sent) == unmarked(original)
    assert len(sent) == len(original)
    for got, want in zip(sent, original, strict=True):
        if got == want:
            continue
        assert {k: v for k, v in got.items() if k != "content"} == {
            k: v for k, v in want.items() if k != "content"
        }
        if isinstance(want["content"], str):
            assert got["content"] == [
                {"type": "text", "text": want["content"], "cache_control": EPHEMERAL}
            ]
        else:
            assert got["content"][:-1] == want["content"][:-1]
            assert got["content"][-1] == {**want["content"][-1], "cache_control": EPHEMERAL}


# --------------------------------------------------------------------------- where markers go


def test_first_request_marks_its_end_for_the_next() -> None:
    messages = convo(LONG)
    got = mark_request(None, messages, min_tokens=MIN, previous=None, now=0.0)
    assert markers(got.messages) == [0]
    assert (got.read_at, got.write_at) == (None, 0)
    assert got.messages[0]["content"] == [
        {"type": "text", "text": LONG, "cache_control": EPHEMERAL}
    ]


def test_next_request_reads_where_the_previous_ended_and_writes_its_end() -> None:
    messages = convo(LONG, "a reply", "another reply")
    previous = SeatRequest(sent_at=100.0, message_count=1)
    got = mark_request("be brief", messages, min_tokens=MIN, previous=previous, now=160.0)
    assert markers(got.messages) == [0, 2]
    assert (got.read_at, got.write_at) == (0, 2)
    assert_only_markers_differ(got.messages, messages)


def test_a_seat_slower_than_the_lifetime_sends_no_marker() -> None:
    messages = convo(LONG, "a reply", "another reply")
    previous = SeatRequest(sent_at=0.0, message_count=1)
    got = mark_request(None, messages, min_tokens=MIN, previous=previous, now=LIFETIME_SECONDS)
    assert got.messages == messages
    assert (got.read_at, got.write_at) == (None, None)


def test_prefixes_under_the_minimum_are_not_marked() -> None:
    short = convo("hello", "hi")
    assert markers(mark_request(None, short, min_tokens=MIN, previous=None, now=0).messages) == []
    growing = convo("hello", "hi", LONG)
    previous = SeatRequest(sent_at=0.0, message_count=2)
    got = mark_request(None, growing, min_tokens=MIN, previous=previous, now=1.0)
    assert markers(got.messages) == [2]  # nothing cached to read; this one can be written


def test_the_system_prompt_counts_toward_the_minimum() -> None:
    got = mark_request(LONG, convo("hello"), min_tokens=MIN, previous=None, now=0)
    assert markers(got.messages) == [0]
    got = mark_request(None, convo("hello"), min_tokens=MIN, previous=None, now=0)
    assert markers(got.messages) == []


def test_never_more_than_four_breakpoints_counting_those_already_there() -> None:
    marked_system = [
        {"type": "text", "text": f"s{i}", "cache_control": EPHEMERAL} for i in range(3)
    ]
    messages = convo(LONG, "a", "b")
    previous = SeatRequest(sent_at=0.0, message_count=1)
    got = mark_request(marked_system, messages, min_tokens=MIN, previous=previous, now=1.0)
    assert markers(got.messages) == [0]  # one place left: the read, which pays at once
    full = [*marked_system, {"type": "text", "text": "s3", "cache_control": EPHEMERAL}]
    got = mark_request(full, messages, min_tokens=MIN, previous=previous, now=1.0)
    assert got.messages == messages


def test_a_block_list_has_its_last_block_marked_and_inputs_are_not_mutated() -> None:
    blocks = [{"type": "text", "text": LONG}, {"type": "text", "text": "and more"}]
    messages = [{"role": "user", "content": blocks}]
    before = copy.deepcopy(messages)
    got = mark_request(None, messages, min_tokens=MIN, previous=None, now=0)
    assert messages == before
    assert got.messages[0]["content"] == [blocks[0], {**blocks[1], "cache_control": EPHEMERAL}]
    assert_only_markers_differ(got.messages, messages)


# --------------------------------------------------------------------------- properties

texts = st.text(st.characters(codec="utf-8"), max_size=3000)
blocky = st.lists(st.builds(lambda t: {"type": "text", "text": t}, texts), min_size=1, max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]], SeatRequest | None, float]:
    contents = draw(st.lists(texts | blocky, min_size=1, max_size=8))
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    system = draw(st.none() | texts)
    previous = draw(
        st.none() | st.builds(SeatRequest, st.floats(0, 1000), st.integers(0, len(messages) + 1))
    )
    return system, messages, previous, draw(st.floats(0, 2000))


@given(requests(), st.integers(0, 2000))
def test_marking_changes_nothing_but_markers(
    request: tuple[Any, list[dict[str, Any]], SeatRequest | None, float], minimum: int
) -> None:
    system, messages, previous, now = request
    now = max(now, previous.sent_at) if previous else now
    before = json.dumps(messages)
    got = mark_request(system, messages, min_tokens=minimum, previous=previous, now=now)
    assert json.dumps(messages) == before
    assert_only_markers_differ(got.messages, messages)
    assert len(markers(got.messages)) <= 2 <= MAX_BREAKPOINTS
    assert set(markers(got.messages)) <= {got.read_at, got.write_at} - {None}
    if previous is not None and now - previous.sent_at >= LIFETIME_SECONDS:
        assert got.messages == messages
