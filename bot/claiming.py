"""Which waiting runs a driving service claims (ARCHITECTURE.md, "Runs owned by leases").

A service claims only what it can serve, and decides before it claims (a run claimed and then
dropped would be held, for nothing, by a process that cannot drive it; one it could not rebuild
would even be ended):
- `bot`, `discord` and `slack` claim the runs of their own surfaces in their own spaces: a
  Discord bot the servers it is in (and those DISCORD_GUILD_IDS or DISCORD_ALLOWED_GUILDS name,
  when set), a Slack app its workspace (issue 14);
- `worker` claims the runs of every surface no chat shows (chat surfaces posting from workers
  are a later issue, 15);
- nobody claims more than its `max_runs` at once, nor a run whose models, keys or template it
  lacks (the run's stored blueprint against its own environment; a run stored before there were
  blueprints against its own models.toml and templates).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backrooms_engine.manager import Wanted
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunRecord

from .runtime import Runtime

if TYPE_CHECKING:
    from .service import Surface

log = logging.getLogger(__name__)

CHAT_SURFACES = frozenset({"discord", "slack"})
WORKER_SURFACES = frozenset({"terminal", "web"})  # the surfaces no chat shows


@dataclass(frozen=True)
class Claims:
    role: str  # what `backrooms workers` calls the process: bot, discord, slack, serve, worker
    surfaces: frozenset[str]  # the surfaces whose waiting runs it claims
    max_runs: int  # the most runs it drives at once


class Choice:
    """Asked by the claim loop, once a round, which waiting runs to take."""

    def __init__(self, rt: Runtime, surfaces: Mapping[str, Surface], claims: Claims) -> None:
        self._rt = rt
        self._surfaces = surfaces
        self._claims = claims
        self._told: set[int] = set()  # runs already logged as left alone

    def fresh_round(self) -> Wanted:
        """The manager's `wanted` for one look at the waiting runs. The room is counted anew
        for each run, from the runs this process drives by then: a claim another process won
        takes no room here."""

        async def wanted(record: RunRecord) -> bool:
            if len(self._rt.manager.active()) >= self._claims.max_runs:
                return False
            return await self._can_serve(record)

        return wanted

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        surface = self._surfaces.get(record.spec.surface)
        if surface is not None:
            return await surface.observers_for(record)
        if record.spec.surface in self._claims.surfaces:
            return ()  # a worker's run: the log file and the live text, no chat
        return None

    async def _can_serve(self, record: RunRecord) -> bool:
        if record.spec.surface not in self._claims.surfaces:
            return False
        surface = self._surfaces.get(record.spec.surface)
        if surface is not None and not surface.shows(record):
            return False
        why = await self._rt.manager.unservable(record)
        if why is not None and record.id not in self._told:
            self._told.add(record.id)
            log.info("run %s: left for another process: %s", record.id, why)
        return why is None


def worker_claims(max_runs: int) -> Claims:
    return Claims("worker", WORKER_SURFACES, max_runs)
