"""What `/backrooms start|stop|resume|list|templates|models|streaming` and `/stop` do, once the cog
has turned the interaction into an Invocation. Each returns the text the invoking user alone sees,
or raises Refusal with it; what everyone sees (the starter message, the thread) is the relay's and
the posters' job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from backrooms_engine import startspec, templates
from backrooms_engine.errors import BackroomsError, ConfigError
from backrooms_engine.records import RunRecord, RunSpec

from .. import messages
from .permissions import missing_for_run
from .poster import SURFACE
from .relay import Place, Relay

log = logging.getLogger(__name__)

STOP_HINT = "Stop it with `/stop` in its thread or `/backrooms stop {id}`."
RunChannel = discord.TextChannel | discord.ForumChannel


class Refusal(Exception):
    """The request is refused; the message says why, for the invoking user."""


@dataclass(frozen=True)
class Invocation:
    """Who asked, from where: what the commands need of a Discord interaction."""

    guild_id: int
    channel: discord.abc.GuildChannel | discord.Thread | None
    channel_id: int
    parent_id: int  # the channel, or the thread's channel
    user_id: int
    user_name: str
    user_mention: str
    user_roles: frozenset[str]  # role names and ids
    manages_threads: bool
    manages_guild: bool
    me: discord.Member  # the bot, in this guild


class Commands:
    def __init__(self, relay: Relay):
        self.relay = relay
        self.rt = relay.rt
        self.config = relay.settings.discord
        self.accepting = True

    def refusal(self, inv: Invocation) -> str | None:
        """Why this user may not start or resume a run here, if they may not."""
        config = self.config
        if not self.accepting:
            return "The bot is restarting; try again in a minute."
        if config.allowed_guilds and inv.guild_id not in config.allowed_guilds:
            return "This bot does not run conversations in this server."
        if config.allowed_channels and inv.parent_id not in config.allowed_channels:
            allowed = ", ".join(f"<#{c}>" for c in sorted(config.allowed_channels))
            return f"Runs can be started in {allowed} only."
        if config.starter_role and config.starter_role not in inv.user_roles:
            return f"Starting a run needs the role `{config.starter_role}`."
        return None

    def template_sizes(self) -> dict[str, int]:
        return templates.sizes(self.rt.template_dirs)

    # -- start ------------------------------------------------------------------------------

    async def start(
        self, inv: Invocation, words: str, template: str | None, max_turns: int | None
    ) -> str:
        """Parse, check, create the run, open its thread, then launch it."""
        request = startspec.parse(
            words,
            registry=self.rt.registry,
            template_sizes=self.template_sizes(),
            template=template,
            max_turns=max_turns,
        )
        channel = run_channel(inv)
        forum = isinstance(channel, discord.ForumChannel)
        missing = missing_for_run(channel.permissions_for(inv.me), forum=forum)
        if missing:
            raise ConfigError(
                f"the bot needs {', '.join(missing)} in {channel.mention}; "
                "ask a moderator to grant it"
            )
        spec = RunSpec(
            models=request.models,
            template=request.template,
            max_turns=request.max_turns,
            started_by=inv.user_name,
            surface=SURFACE,
            space=str(inv.guild_id),
            place=str(channel.id),
        )
        record = await self.rt.manager.create(spec)
        try:
            thread = await self._open_thread(inv, channel, record)
            poster = await self.relay.poster(record, thread.id, channel.id)
        except (discord.HTTPException, BackroomsError) as exc:
            # Nothing may linger: a created run counts against the caps until it is ended.
            why = exc.text if isinstance(exc, discord.HTTPException) else str(exc)
            await self.rt.manager.abandon(record, f"could not open its thread: {why}")
            raise ConfigError(f"could not open the run's thread: {why}") from exc
        self.rt.manager.launch(record, [poster])
        return f"Run {record.id} started in {thread.mention}."

    async def _open_thread(
        self, inv: Invocation, channel: RunChannel, record: RunRecord
    ) -> discord.Thread:
        """The starter message and the public thread; the webhook; all remembered."""
        starter = messages.starter_text(
            record,
            inv.user_mention,
            bold="**",
            stop_hint=STOP_HINT.format(id=record.id),
            public_url=self.relay.settings.public_url,
        )
        none = discord.AllowedMentions.none()
        try:
            if isinstance(channel, discord.ForumChannel):
                made = await channel.create_thread(
                    name=messages.thread_name(record), content=starter, allowed_mentions=none
                )
                thread, message = made.thread, made.message
            else:
                message = await channel.send(starter, allowed_mentions=none)
                thread = await message.create_thread(
                    name=messages.thread_name(record), auto_archive_duration=1440
                )
            hook = await self.relay.webhooks.get(channel.id)
        except discord.Forbidden as exc:
            raise ConfigError(f"Discord refused: {exc.text} (check the bot's permissions)") from exc
        place = Place(
            thread=thread.id,
            channel=channel.id,
            guild=inv.guild_id,
            starter_channel=channel.id if message.channel.id == channel.id else thread.id,
            starter_message=message.id,
            starter_user=inv.user_id,
            webhook_id=hook.id,
            webhook_token=hook.token or "",
        )
        await self.relay.remember(record.id, place)
        return thread

    # -- stop / resume ----------------------------------------------------------------------

    async def stoppable(self, inv: Invocation, run_id: int | None) -> int:
        """The run this user may stop (None: the run of this thread); else Refusal."""
        if run_id is None:
            run_id = self.relay.threads.get(inv.channel_id)
            if run_id is None:
                raise Refusal(
                    "No run is going in this thread; `/backrooms list` shows the runs here."
                )
        try:
            record = await self.rt.transcript.get_run(run_id)
        except ConfigError as exc:
            raise Refusal(str(exc)) from None
        if not self._of_this_guild(inv, record):
            raise Refusal(f"Run {run_id} is not a run of this server.")
        if not await self._may_control(inv, run_id):
            raise Refusal(
                f"Only the person who started run {run_id} or someone with Manage Threads "
                "can stop it."
            )
        return run_id

    async def stop(self, inv: Invocation, run_id: int) -> str:
        result = await self.rt.manager.stop(run_id, by=inv.user_name)
        return result.message

    async def resume(self, inv: Invocation, run_id: int) -> str:
        record = await self.rt.transcript.get_run(run_id)
        if not self._of_this_guild(inv, record):
            raise ConfigError("it is not a run of this server")
        if self.rt.manager.get(run_id) is not None:
            raise ConfigError("it is running already")
        if not await self._may_control(inv, run_id):
            raise ConfigError("only the person who started it or someone with Manage Threads can")
        place = await self.relay.place_of(run_id)
        thread_id, channel_id = (place.thread, place.channel) if place else (0, 0)
        if record.end is not None and record.end.reason == "gone":
            channel = run_channel(inv)
            thread = await self._open_thread(inv, channel, record)
            thread_id, channel_id = thread.id, channel.id
        poster = await self.relay.poster(record, thread_id, channel_id)
        if record.status == "running":
            await self.rt.manager.resume(run_id, [poster])
        else:
            limit = record.spec.max_turns or self.rt.settings.chat_max_turns
            started = -(-record.replies // len(record.participants))
            await self.rt.manager.extend(run_id, max(1, limit - started), [poster])
        return f"Run {run_id} goes on in <#{thread_id}>."

    @staticmethod
    def _of_this_guild(inv: Invocation, record: RunRecord) -> bool:
        return record.spec.surface == SURFACE and record.spec.space == str(inv.guild_id)

    async def _may_control(self, inv: Invocation, run_id: int) -> bool:
        if inv.manages_threads:
            return True
        place = await self.relay.place_of(run_id)
        return place is not None and place.starter_user == inv.user_id

    # -- information and settings -----------------------------------------------------------

    def runs_text(self, inv: Invocation) -> str:
        records = [h.record for h in self.rt.manager.active(str(inv.guild_id))]
        where = {run_id: f"<#{thread}>" for thread, run_id in self.relay.threads.items()}
        return messages.runs_list(records, where)

    def templates_text(self) -> str:
        return messages.templates_text(self.template_sizes())[:2000]

    @staticmethod
    def help_text() -> str:
        return messages.help_text("**", "`/stop`")

    def models_text(self) -> str:
        return messages.models_text(self.rt.registry, self.rt.settings.env)[:2000]

    async def set_streaming(self, inv: Invocation, on: bool) -> str:
        if not inv.manages_guild:
            raise Refusal("Changing this needs Manage Server.")
        await self.relay.set_streaming(str(inv.guild_id), on)
        return f"Streaming is {'on' if on else 'off'} for runs started from now on."

    def model_choices(self, current: str) -> list[str]:
        """Completions of the last word of a start request: model aliases and templates."""
        words = current.split(" ")
        done, partial = " ".join(words[:-1]), words[-1].lower()
        names = [*self.rt.registry.aliases(), *self.template_sizes()]
        found = [n for n in names if n.lower().startswith(partial)] or names
        return [f"{done} {n}".strip() for n in found]

    def template_choices(self, current: str) -> list[tuple[str, str]]:
        """(label, template name) of the templates whose name contains `current`."""
        return [
            (f"{name} ({n} participants)", name)
            for name, n in self.template_sizes().items()
            if current.lower() in name.lower()
        ]


def run_channel(inv: Invocation) -> RunChannel:
    """The channel a run started here goes in: this one, or the thread's channel."""
    channel = inv.channel
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
        raise ConfigError("runs can be started in text channels and forums")
    return channel
