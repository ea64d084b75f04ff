"""The `/backrooms` subcommands and the Stop button, after their ack.

Answers go to the invoking user only (the response_url, ephemeral), which works even where the
bot is not a member. What everyone sees (the root message, the thread) is the posters' job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from backrooms_engine import startspec, templates
from backrooms_engine.errors import ConfigError, UnknownRunError
from backrooms_engine.records import RunRecord, RunSpec

from .. import messages
from ..text import slack_escape
from . import texts
from .poster import Thread
from .relay import Relay

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]
Work = Callable[["Invocation"], Awaitable[None]]


@dataclass(frozen=True)
class Invocation:
    """Who asked, from where, and how to answer them alone."""

    team: str
    channel: str
    user: str
    user_name: str
    domain: str | None
    respond: Respond

    @classmethod
    def from_command(cls, command: Mapping[str, Any], respond: Respond) -> Invocation:
        return cls(
            team=str(command.get("team_id", "")),
            channel=str(command.get("channel_id", "")),
            user=str(command.get("user_id", "")),
            user_name=str(command.get("user_name") or command.get("user_id", "")),
            domain=command.get("team_domain"),
            respond=respond,
        )

    @classmethod
    def from_action(cls, body: Mapping[str, Any], respond: Respond) -> Invocation:
        user, team = body.get("user") or {}, body.get("team") or {}
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        return cls(
            team=str(team.get("id") or user.get("team_id", "")),
            channel=str(channel),
            user=str(user.get("id", "")),
            user_name=str(user.get("username") or user.get("name") or user.get("id", "")),
            domain=team.get("domain"),
            respond=respond,
        )

    async def tell(self, text: str) -> None:
        try:
            await self.respond(text=text, response_type="ephemeral", replace_original=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not answer %s: %s", self.user, exc)


def template_sizes(dirs: Sequence[Path]) -> dict[str, int]:
    return templates.sizes(dirs)


class Commands:
    def __init__(self, relay: Relay):
        self.relay = relay
        self.rt = relay.rt

    def route(self, text: str) -> str | Work:
        """The answer itself when it needs no I/O (it goes in the ack), else the work to do."""
        word, _, rest = text.strip().partition(" ")
        match word.lower():
            case "" | "help":
                return texts.help_text()
            case "models":
                return messages.models_text(self.rt.registry, self.rt.settings.env)
            case "start":
                return lambda inv: self.start(inv, rest)
            case "stop":
                return lambda inv: self.stop(inv, rest)
            case "resume":
                return lambda inv: self.resume(inv, rest)
            case "list":
                return self.list_runs
            case "templates":
                return self.list_templates
            case _:
                return "I don't know that subcommand.\n" + texts.help_text()

    async def _sizes(self) -> dict[str, int]:
        return await asyncio.to_thread(template_sizes, self.rt.template_dirs)

    # -- start --------------------------------------------------------------------------------

    async def start(self, inv: Invocation, text: str) -> None:
        try:
            request = startspec.parse(
                text, registry=self.rt.registry, template_sizes=await self._sizes()
            )
            spec = RunSpec(
                models=request.models,
                template=request.template,
                max_turns=request.max_turns,
                started_by=inv.user_name,
                surface="slack",
                space=inv.team,
                place=inv.channel,
            )
            record = await self.rt.manager.create(spec)
        except ConfigError as exc:
            await inv.tell(f"Cannot start: {slack_escape(str(exc))}")
            return
        # Who may stop it is known before its Stop button can be seen, and it is launched as
        # soon as the root message exists, so no press finds it neither going nor ended.
        await self.relay.remember_starter(record.id, team=inv.team, starter=inv.user)
        thread = await self._open_thread(inv, record)
        if thread is not None:
            self.rt.manager.launch(record, [self.relay.new_poster(record, thread, {})])
            await self.relay.remember_thread(record.id, thread)

    async def _open_thread(self, inv: Invocation, record: RunRecord) -> Thread | None:
        """The root message, or None when Slack refused it: the run then ends unstarted."""
        try:
            return await self.relay.post_root(inv.channel, record)
        except SlackApiError as exc:
            why, answer = texts.error_code(exc), texts.refusal(exc, self.relay.bot_name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            why, answer = str(exc) or type(exc).__name__, "Slack could not be reached; try again."
        await self.rt.manager.abandon(record, f"its first Slack message failed ({why})")
        await inv.tell(answer)
        return None

    # -- stop ---------------------------------------------------------------------------------

    async def stop(self, inv: Invocation, rest: str) -> None:
        record = await self._target(inv, rest.strip().lstrip("#"))
        if record is None:
            return
        if not await self._may_stop(inv, record.id):
            await inv.tell(self._refused(record.id))
            return
        result = await self.rt.manager.stop(record.id, by=inv.user_name)
        await inv.tell(slack_escape(result.message))

    async def stop_button(self, inv: Invocation, value: str) -> None:
        record = await self._going(int(value)) if value.isdigit() else None
        if record is None or record.spec.space != inv.team:
            await inv.tell(f"Run {value} is not going any more.")
        elif not await self._may_stop(inv, record.id):
            await inv.tell(self._refused(record.id))
        else:
            await self.rt.manager.stop(record.id, by=inv.user_name)

    async def _going(self, run_id: int) -> RunRecord | None:
        """The run, if it has not ended: driven here, or by another process sharing the store
        (the manager's stop then asks that process through the store: stopping.py)."""
        handle = self.rt.manager.get(run_id)
        if handle is not None:
            return handle.record
        try:
            record = await self.rt.archive.get_run(run_id)
        except UnknownRunError:
            return None
        return record if record.end is None else None

    async def _target(self, inv: Invocation, word: str) -> RunRecord | None:
        """The run named, or the one run going in this channel (in any process)."""
        if word:
            record = await self._going(int(word)) if word.isdigit() else None
            if record is None or record.spec.space != inv.team:
                await inv.tell(f"No run `{slack_escape(word)}` is going in this workspace.")
                return None
            return record
        here = [r for r in await self._going_in(inv.team) if r.spec.place == inv.channel]
        if len(here) == 1:
            return here[0]
        if not here:
            await inv.tell("No run is going in this channel; `/backrooms list` shows them all.")
        else:
            ids = ", ".join(str(r.id) for r in here)
            await inv.tell(f"Runs {ids} are going here; say which: `/backrooms stop {here[0].id}`.")
        return None

    async def _going_in(self, team: str) -> list[RunRecord]:
        """The runs of this workspace that have not ended, wherever they are driven, oldest
        first."""
        going = {h.id: h.record for h in self.rt.manager.active(team)}
        for status in ("running", "queued"):
            for record in await self.rt.archive.list_runs(status=status, space=team):
                going.setdefault(record.id, record)
        return [going[i] for i in sorted(going)]

    async def _may_stop(self, inv: Invocation, run_id: int) -> bool:
        if inv.user in self.relay.settings.slack.admins:
            return True
        return inv.user == await self.relay.starter_of(run_id)

    @staticmethod
    def _refused(run_id: int) -> str:
        return (
            f"Only the person who started run {run_id} or a relay admin (SLACK_ADMINS) can stop it."
        )

    # -- resume -------------------------------------------------------------------------------

    async def resume(self, inv: Invocation, rest: str) -> None:
        words = rest.replace("#", " ").split()
        if not words or not all(w.isdigit() for w in words[:2]):
            await inv.tell("Say which run: `/backrooms resume RUN [turns]`.")
            return
        extra = int(words[1]) if len(words) > 1 else None
        try:
            record = await self._resumable(inv, int(words[0]))
            turns = None if record.status == "running" else self._extra_turns(record, extra)
        except ConfigError as exc:
            await inv.tell(slack_escape(str(exc)))
            return
        thread = await self.relay.thread_of(record.id)
        if thread is None:
            await inv.tell(f"Run {record.id} has no thread to continue in.")
            return
        poster = await self.relay.poster(record, thread, reopen_root=turns is not None)
        try:
            if turns is None:
                await self.rt.manager.resume(record.id, [poster])
            else:
                await self.rt.manager.extend(record.id, turns, [poster])
        except ConfigError as exc:
            await inv.tell(slack_escape(str(exc)))

    async def _resumable(self, inv: Invocation, run_id: int) -> RunRecord:
        record = await self.rt.archive.get_run(run_id)  # UnknownRunError names the id
        if record.spec.surface != "slack" or record.spec.space != inv.team:
            raise ConfigError(f"run {run_id} was not started in this workspace")
        if self.rt.manager.get(run_id) is not None:
            raise ConfigError(f"run {run_id} is going already")
        return record  # the manager applies the concurrent-run caps when it resumes

    def _extra_turns(self, record: RunRecord, extra: int | None) -> int:
        cap = self.rt.manager.limits.chat_max_turns
        if extra is None:
            limit = record.spec.max_turns
            started = -(-record.replies // max(1, len(record.participants)))  # as extend counts
            extra = limit - started if limit is not None else cap
            if extra < 1:
                raise ConfigError(
                    f"run {record.id} reached its limit of {limit} turns; "
                    f"`/backrooms resume {record.id} 10` gives it 10 more"
                )
        if not 1 <= extra <= cap:
            raise ConfigError(f"give between 1 and {cap} more turns (BACKROOMS_CHAT_MAX_TURNS)")
        return extra

    # -- listings -----------------------------------------------------------------------------

    async def list_runs(self, inv: Invocation) -> None:
        records, where = [], {}
        for handle in self.rt.manager.active(inv.team):
            records.append(await self.rt.archive.get_run(handle.id))
            thread = await self.relay.thread_of(handle.id)
            if thread is not None:
                where[handle.id] = texts.permalink(inv.domain, thread.channel, thread.root_ts)
        await inv.tell(messages.runs_list(records, where))

    async def list_templates(self, inv: Invocation) -> None:
        await inv.tell(messages.templates_text(await self._sizes()))
