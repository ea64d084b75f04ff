"""Slash commands: /backrooms start|stop|resume|list|templates|models|help|streaming, and /stop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from backrooms_engine import startspec, templates
from backrooms_engine.errors import BackroomsError, ConfigError
from backrooms_engine.records import RunRecord, RunSpec

from .. import messages
from .permissions import missing_for_run
from .poster import SURFACE

if TYPE_CHECKING:
    from .surface import DiscordSurface

log = logging.getLogger(__name__)

STOP_HINT = "Stop it with `/stop` in its thread or `/backrooms stop {id}`."
EPHEMERAL_NO_PINGS = {"ephemeral": True, "allowed_mentions": discord.AllowedMentions.none()}


def template_sizes(surface: DiscordSurface) -> dict[str, int]:
    assert surface.rt is not None
    return templates.sizes(surface.rt.template_dirs)


@app_commands.guild_only()
class BackroomsCog(commands.GroupCog, group_name="backrooms"):
    """AI-to-AI backrooms conversations, each in its own thread."""

    def __init__(self, surface: DiscordSurface):
        self.surface = surface
        super().__init__()

    # -- start -----------------------------------------------------------------------------

    @app_commands.command(name="start", description="Start a conversation between models")
    @app_commands.describe(
        models="Models in turn order, optionally then a template and a turn limit: opus gpt4o cli",
        template="Conversation template (default cli)",
        max_turns="Stop after this many turns",
    )
    async def start(
        self,
        interaction: discord.Interaction,
        models: str,
        template: str | None = None,
        max_turns: app_commands.Range[int, 1, 10_000] | None = None,
    ) -> None:
        refusal = self._refusal(interaction)
        if refusal:
            await interaction.response.send_message(refusal, **EPHEMERAL_NO_PINGS)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await open_run(self.surface, interaction, models, template, max_turns)
        except ConfigError as exc:
            text = f"Could not start: {exc}"
        await interaction.followup.send(text, **EPHEMERAL_NO_PINGS)

    @start.autocomplete("models")
    async def _models_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        assert self.surface.rt is not None
        words = current.split(" ")
        done, partial = " ".join(words[:-1]), words[-1].lower()
        names = [*self.surface.rt.registry.aliases(), *template_sizes(self.surface)]
        found = [n for n in names if n.lower().startswith(partial)] or names
        choices = [(f"{done} {n}".strip())[:100] for n in found]
        return [app_commands.Choice(name=c, value=c) for c in choices[:25]]

    @start.autocomplete("template")
    async def _template_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        sizes = template_sizes(self.surface)
        return [
            app_commands.Choice(name=f"{name} ({n} participants)"[:100], value=name)
            for name, n in sizes.items()
            if current.lower() in name.lower()
        ][:25]

    def _refusal(self, interaction: discord.Interaction) -> str | None:
        config = self.surface.config
        if not self.surface.accepting:
            return "The bot is restarting; try again in a minute."
        if config.allowed_guilds and interaction.guild_id not in config.allowed_guilds:
            return "This bot does not run conversations in this server."
        channel = interaction.channel
        parent = getattr(channel, "parent_id", None) or interaction.channel_id
        if config.allowed_channels and parent not in config.allowed_channels:
            allowed = ", ".join(f"<#{c}>" for c in sorted(config.allowed_channels))
            return f"Runs can be started in {allowed} only."
        if config.starter_role and not _has_role(interaction.user, config.starter_role):
            return f"Starting a run needs the role `{config.starter_role}`."
        return None

    # -- stop / resume ---------------------------------------------------------------------

    @app_commands.command(name="stop", description="Stop a run (in its thread, no id needed)")
    @app_commands.describe(run="The run's number (default: the run of this thread)")
    async def stop(self, interaction: discord.Interaction, run: int | None = None) -> None:
        await stop_run(self.surface, interaction, run)

    @app_commands.command(name="resume", description="Continue an interrupted run")
    async def resume(self, interaction: discord.Interaction, run: int) -> None:
        refusal = self._refusal(interaction)
        if refusal:
            await interaction.response.send_message(refusal, **EPHEMERAL_NO_PINGS)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await resume_run(self.surface, interaction, run)
        except ConfigError as exc:
            text = f"Could not resume run {run}: {exc}"
        await interaction.followup.send(text, **EPHEMERAL_NO_PINGS)

    # -- information -----------------------------------------------------------------------

    @app_commands.command(name="list", description="Runs going in this server")
    async def list_runs(self, interaction: discord.Interaction) -> None:
        assert self.surface.rt is not None
        space = str(interaction.guild_id)
        records = [h.record for h in self.surface.rt.manager.active(space)]
        where = {run_id: f"<#{thread}>" for thread, run_id in self.surface.threads.items()}
        await interaction.response.send_message(
            messages.runs_list(records, where), **EPHEMERAL_NO_PINGS
        )

    @app_commands.command(name="templates", description="Conversation templates")
    async def list_templates(self, interaction: discord.Interaction) -> None:
        text = messages.templates_text(template_sizes(self.surface))
        await interaction.response.send_message(text[:2000], **EPHEMERAL_NO_PINGS)

    @app_commands.command(name="models", description="Models this bot can run")
    async def list_models(self, interaction: discord.Interaction) -> None:
        assert self.surface.rt is not None
        rt = self.surface.rt
        text = messages.models_text(rt.registry, rt.settings.env)
        await interaction.response.send_message(text[:2000], **EPHEMERAL_NO_PINGS)

    @app_commands.command(name="help", description="How to run backrooms conversations")
    async def help(self, interaction: discord.Interaction) -> None:
        text = messages.help_text("**", "`/stop`")
        await interaction.response.send_message(text, **EPHEMERAL_NO_PINGS)

    @app_commands.command(name="streaming", description="Show replies as they are written")
    @app_commands.default_permissions(manage_guild=True)
    async def streaming(self, interaction: discord.Interaction, on: bool) -> None:
        assert self.surface.rt is not None
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                "Changing this needs Manage Server.", **EPHEMERAL_NO_PINGS
            )
            return
        value = "on" if on else "off"
        await self.surface.rt.surface_state.set_space_setting(
            str(interaction.guild_id), "discord_streaming", value
        )
        await interaction.response.send_message(
            f"Streaming is {value} for runs started from now on.", **EPHEMERAL_NO_PINGS
        )


def stop_command(surface: DiscordSurface) -> app_commands.Command:
    @app_commands.command(name="stop", description="Stop the run of this thread")
    @app_commands.guild_only()
    async def stop(interaction: discord.Interaction) -> None:
        await stop_run(surface, interaction, None)

    return stop


def _has_role(member: discord.abc.User, wanted: str) -> bool:
    roles = getattr(member, "roles", [])
    return any(wanted in (role.name, str(role.id)) for role in roles)


async def open_run(
    surface: DiscordSurface,
    interaction: discord.Interaction,
    words: str,
    template: str | None,
    max_turns: int | None,
) -> str:
    """Parse, check, create the run, open its thread, then launch it. Returns the answer."""
    assert surface.rt is not None and interaction.guild is not None
    rt = surface.rt
    request = startspec.parse(
        words,
        registry=rt.registry,
        template_sizes=template_sizes(surface),
        template=template,
        max_turns=max_turns,
    )
    channel = _run_channel(interaction)
    forum = isinstance(channel, discord.ForumChannel)
    missing = missing_for_run(channel.permissions_for(interaction.guild.me), forum=forum)
    if missing:
        raise ConfigError(
            f"the bot needs {', '.join(missing)} in {channel.mention}; ask a moderator to grant it"
        )
    spec = RunSpec(
        models=request.models,
        template=request.template,
        max_turns=request.max_turns,
        started_by=interaction.user.display_name,
        surface=SURFACE,
        space=str(interaction.guild_id),
        place=str(channel.id),
    )
    record = await rt.manager.create(spec)
    try:
        thread = await _open_thread(surface, interaction, channel, record)
        poster = await surface.poster(record, thread.id, channel.id)
    except (discord.HTTPException, BackroomsError) as exc:
        # Nothing may linger: a created run counts against the caps until it is ended.
        why = exc.text if isinstance(exc, discord.HTTPException) else str(exc)
        await rt.manager.abandon(record, f"could not open its thread: {why}")
        raise ConfigError(f"could not open the run's thread: {why}") from exc
    rt.manager.launch(record, [poster])
    return f"Run {record.id} started in {thread.mention}."


def _run_channel(interaction: discord.Interaction) -> discord.TextChannel | discord.ForumChannel:
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
        raise ConfigError("runs can be started in text channels and forums")
    return channel


async def _open_thread(
    surface: DiscordSurface,
    interaction: discord.Interaction,
    channel: discord.TextChannel | discord.ForumChannel,
    record: RunRecord,
) -> discord.Thread:
    """The starter message and the public thread; the webhook; all remembered in the store."""
    assert surface.rt is not None
    store = surface.rt.surface_state
    starter = messages.starter_text(
        record,
        interaction.user.mention,
        bold="**",
        stop_hint=STOP_HINT.format(id=record.id),
        public_url=surface.settings.public_url,
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
        hook = await surface.webhooks.get(channel.id)
    except discord.Forbidden as exc:
        raise ConfigError(f"Discord refused: {exc.text} (check the bot's permissions)") from exc
    meta = {
        "discord_thread": thread.id,
        "discord_channel": channel.id,
        "discord_guild": interaction.guild_id,
        "discord_starter_channel": channel.id if message.channel.id == channel.id else thread.id,
        "discord_starter_message": message.id,
        "discord_starter_user": interaction.user.id,
        "discord_webhook_id": hook.id,
        "discord_webhook_token": hook.token,
    }
    for key, value in meta.items():
        await store.set_meta(record.id, key, str(value))
    return thread


async def stop_run(
    surface: DiscordSurface, interaction: discord.Interaction, run_id: int | None
) -> None:
    assert surface.rt is not None
    rt = surface.rt
    if run_id is None:
        run_id = surface.threads.get(interaction.channel_id or 0)
        if run_id is None:
            await interaction.response.send_message(
                "No run is going in this thread; `/backrooms list` shows the runs here.",
                **EPHEMERAL_NO_PINGS,
            )
            return
    try:
        record = await rt.archive.get_run(run_id)
    except ConfigError as exc:
        await interaction.response.send_message(str(exc), **EPHEMERAL_NO_PINGS)
        return
    if record.spec.surface != SURFACE or record.spec.space != str(interaction.guild_id):
        await interaction.response.send_message(
            f"Run {run_id} is not a run of this server.", **EPHEMERAL_NO_PINGS
        )
        return
    starter = await rt.surface_state.get_meta(run_id, "discord_starter_user")
    if starter != str(interaction.user.id) and not interaction.permissions.manage_threads:
        await interaction.response.send_message(
            f"Only the person who started run {run_id} or someone with Manage Threads can stop it.",
            **EPHEMERAL_NO_PINGS,
        )
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    result = await rt.manager.stop(run_id, by=interaction.user.display_name)
    await interaction.followup.send(result.message, **EPHEMERAL_NO_PINGS)


async def resume_run(surface: DiscordSurface, interaction: discord.Interaction, run_id: int) -> str:
    assert surface.rt is not None
    rt = surface.rt
    record = await rt.archive.get_run(run_id)
    if record.spec.surface != SURFACE or record.spec.space != str(interaction.guild_id):
        raise ConfigError("it is not a run of this server")
    if rt.manager.get(run_id) is not None:
        raise ConfigError("it is running already")
    starter = await rt.surface_state.get_meta(run_id, "discord_starter_user")
    if starter != str(interaction.user.id) and not interaction.permissions.manage_threads:
        raise ConfigError("only the person who started it or someone with Manage Threads can")
    thread_id = int(await rt.surface_state.get_meta(run_id, "discord_thread") or 0)
    channel_id = int(await rt.surface_state.get_meta(run_id, "discord_channel") or 0)
    if record.end is not None and record.end.reason == "gone":
        channel = _run_channel(interaction)
        thread = await _open_thread(surface, interaction, channel, record)
        thread_id, channel_id = thread.id, channel.id
    poster = await surface.poster(record, thread_id, channel_id)
    if record.status == "running":
        await rt.manager.resume(run_id, [poster])
    else:
        limit = record.spec.max_turns or rt.settings.chat_max_turns
        started = -(-record.replies // len(record.participants))
        await rt.manager.extend(run_id, max(1, limit - started), [poster])
    return f"Run {run_id} goes on in <#{thread_id}>."


__all__ = ["BackroomsCog", "stop_command"]
