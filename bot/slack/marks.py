"""Our own mark on every message we post, so a restart can find what a crash left unrecorded.

Each post carries Slack message metadata (chat.postMessage `metadata`: an `event_type` and an
`event_payload`): the root message names its run, each reply part its (run, reply, part), the
closing line its run. A process killed between Slack's answer and the store's record of the ts
leaves a message no stored post names; the next start reads the run's thread once
(conversations.replies with include_all_metadata, scope channels:history) and adopts each such
message as the exact part it was, instead of posting it again. A root message whose thread was
never recorded is found the same way among the channel's newest messages (conversations.history).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from . import texts

log = logging.getLogger(__name__)

ROOT, PART, CLOSING = "backrooms_root", "backrooms_part", "backrooms_closing"
PAGE = 200  # messages per page of conversations.replies / history (Slack allows up to 1,000)
MAX_PAGES = 20  # a run of 50 turns of 2 long replies fits in a few pages; bounded anyway
ROOT_PAGES = 2  # the newest 400 messages of a channel, for a root a crash left unrecorded


def root_mark(run_id: int) -> dict[str, Any]:
    return {"event_type": ROOT, "event_payload": {"run": run_id}}


def part_mark(run_id: int, seq: int, part: int) -> dict[str, Any]:
    return {"event_type": PART, "event_payload": {"run": run_id, "reply": seq, "part": part}}


def closing_mark(run_id: int, max_turns: int | None, turns: int) -> dict[str, Any]:
    """A run given more turns ends again in the same thread: its limit and turns tell the
    closing lines of its stretches apart."""
    return {
        "event_type": CLOSING,
        "event_payload": {"run": run_id, "max_turns": max_turns, "turns": turns},
    }


@dataclass(frozen=True)
class Found:
    """What a run's thread holds by our marks."""

    parts: dict[tuple[int, int], str] = field(default_factory=dict)  # (reply, part) -> ts
    closings: frozenset[tuple[int | None, int]] = frozenset()  # (max_turns, turns) of each


def _payload(message: dict[str, Any], kind: str, run_id: int) -> dict[str, Any] | None:
    meta = message.get("metadata") or {}
    payload = meta.get("event_payload") or {}
    if meta.get("event_type") != kind or payload.get("run") != run_id:
        return None
    return payload


async def _thread(client: AsyncWebClient, channel: str, root_ts: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        response = await client.conversations_replies(
            channel=channel, ts=root_ts, include_all_metadata=True, limit=PAGE, cursor=cursor
        )
        messages += response.get("messages") or []
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not response.get("has_more") or not cursor:
            break
    return messages


async def read_thread(client: AsyncWebClient, run_id: int, channel: str, root_ts: str) -> Found:
    """Our marked messages in a run's thread; nothing found when Slack refuses to show it (the
    restart then trusts the store alone, as before)."""
    try:
        messages = await _thread(client, channel, root_ts)
    except SlackApiError as exc:
        why = texts.error_code(exc)
        log.warning("run %s: thread not read (%s); unrecorded posts may repeat", run_id, why)
        return Found()
    parts: dict[tuple[int, int], str] = {}
    closings: set[tuple[int | None, int]] = set()
    for message in messages:
        payload = _payload(message, PART, run_id)
        if payload is not None:
            key = (int(payload["reply"]), int(payload["part"]))
            parts.setdefault(key, str(message["ts"]))  # the first one, should two exist
        payload = _payload(message, CLOSING, run_id)
        if payload is not None:
            closings.add((payload.get("max_turns"), int(payload.get("turns") or 0)))
    return Found(parts, frozenset(closings))


async def find_root(client: AsyncWebClient, run_id: int, channel: str) -> str | None:
    """The ts of a run's root message among the newest of `channel`, if it is there. The root
    of a run left unrecorded by a crash was posted just before it, so a few pages suffice."""
    cursor = None
    for _ in range(ROOT_PAGES):
        try:
            response = await client.conversations_history(
                channel=channel, include_all_metadata=True, limit=PAGE, cursor=cursor
            )
        except SlackApiError as exc:
            log.warning("run %s: channel history not read (%s)", run_id, texts.error_code(exc))
            return None
        for message in response.get("messages") or []:
            if _payload(message, ROOT, run_id) is not None:
                return str(message["ts"])
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not response.get("has_more") or not cursor:
            return None
    return None
