"""What the fake records and stores: REST calls, interactions and their responses, messages,
guilds, and the snowflakes that name them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .constants import DISCORD_EPOCH_MS


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Call:
    """One REST request as the fake received it. ``json`` is the JSON body, or the parsed
    ``payload_json`` part of a multipart body (then ``files`` names the file parts)."""

    seq: int
    method: str
    path: str
    route: str | None
    query: Mapping[str, str]
    json: Any
    files: tuple[str, ...]
    headers: Mapping[str, str]
    time: float
    status: int
    response: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class Interaction:
    """An interaction the fake dispatched; ``payload`` is the INTERACTION_CREATE ``d``."""

    id: int
    token: str
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class InteractionResponse:
    type: int
    data: Any
    time: float


@dataclass
class InteractionState:
    record: Interaction
    created: float
    responses: list[InteractionResponse] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class Message:
    payload: dict[str, Any]
    edits: list[dict[str, Any]] = field(default_factory=list)
    old_edits: int = 0  # edits accepted once the message was old (the 30046 limit)

    def age(self) -> float:
        """Seconds since the message was made, from its snowflake as Discord would."""
        created_ms = (int(self.payload["id"]) >> 22) + DISCORD_EPOCH_MS
        return time.time() - created_ms / 1000


@dataclass
class Guild:
    id: int
    name: str
    roles: dict[int, dict[str, Any]]
    members: dict[int, dict[str, Any]]  # user id -> member payload without "user"
    channel_ids: list[int]
    bot_role_id: int
    joined_at: str


class Snowflakes:
    """Increasing snowflakes with real timestamps, so ``discord.utils.snowflake_time`` works."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last
