"""The slash commands as discord.py sees them: `/backrooms ...` and `/stop`. Each turns its
interaction into an Invocation, calls Commands, and answers the invoking user alone. Anything
that may take a while is deferred first (Discord's limit for the first answer is 3 s)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from backrooms_engine.errors import ConfigError

from .commands import Commands, Invocation, Refusal

EPHEMERAL_NO_PINGS: dict[str, Any] = {
    "ephemeral": True,
    "allowed_mentions": discord.AllowedMentions.none(),
}
MAX_CHOICES, MAX_CHOICE_NAME = 25, 100  # Discord's limits on autocomplete


def invocation(interaction: discord.Interaction) -> Invocation:
    guild = interaction.guild
    if guild is None:  # the commands are guild_only; Discord never sends one without a guild
        raise ConfigError("backrooms commands work in servers only")
    channel = interaction.channel
    user = interaction.user
    roles = getattr(user, "roles", [])
    return Invocation(
        guild_id=guild.id,
        channel=channel if isinstance(channel, discord.abc.GuildChannel | discord.Thread) else None,
        channel_id=interaction.channel_id or 0,
        parent_id=getattr(channel, "parent_id", None) or interaction.channel_id or 0,
        user_id=user.id,
        user_name=user.display_name,
        user_mention=user.mention,
        user_roles=frozenset({r.name for r in roles} | {str(r.id) for r in roles}),
        manages_threads=interaction.permissions.manage_threads,
        manages_guild=interaction.permissions.manage_guild,
        me=guild.me,
    )


async def tell(interaction: discord.Interaction, text: str) -> None:
    """The answer to the invoking user: the first response, or a followup after a defer."""
    if interaction.response.is_done():
        await interaction.followup.send(text, **EPHEMERAL_NO_PINGS)
    else:
        await interaction.response.send_message(text, **EPHEMERAL_NO_PINGS)


async def stop_run(runs: Commands, interaction: discord.Interaction, run: int | None) -> None:
    inv = invocation(interaction)
    try:
        run_id = await runs.stoppable(inv, run)
    except Refusal as refusal:
        await tell(interaction, str(refusal))
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    await tell(interaction, await runs.stop(inv, run_id))


@app_commands.guild_only()
class BackroomsCog(commands.GroupCog, group_name="backrooms"):
    """AI-to-AI backrooms conversations, each in its own thread."""

    def __init__(self, runs: Commands):
        self.runs = runs
        super().__init__()

    async def _refused(self, interaction: discord.Interaction) -> bool:
        refusal = self.runs.refusal(invocation(interaction))
        if refusal:
            await tell(interaction, refusal)
        return refusal is not None

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
        if await self._refused(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await self.runs.start(invocation(interaction), models, template, max_turns)
        except ConfigError as exc:
            text = f"Could not start: {exc}"
        await tell(interaction, text)

    @start.autocomplete("models")
    async def _models_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        found = [c[:MAX_CHOICE_NAME] for c in self.runs.model_choices(current)]
        return [app_commands.Choice(name=c, value=c) for c in found[:MAX_CHOICES]]

    @start.autocomplete("template")
    async def _template_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=label[:MAX_CHOICE_NAME], value=name)
            for label, name in self.runs.template_choices(current)
        ][:MAX_CHOICES]

    @app_commands.command(name="stop", description="Stop a run (in its thread, no id needed)")
    @app_commands.describe(run="The run's number (default: the run of this thread)")
    async def stop(self, interaction: discord.Interaction, run: int | None = None) -> None:
        await stop_run(self.runs, interaction, run)

    @app_commands.command(name="resume", description="Continue an interrupted run")
    async def resume(self, interaction: discord.Interaction, run: int) -> None:
        if await self._refused(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await self.runs.resume(invocation(interaction), run)
        except ConfigError as exc:
            text = f"Could not resume run {run}: {exc}"
        await tell(interaction, text)

    @app_commands.command(name="list", description="Runs going in this server")
    async def list_runs(self, interaction: discord.Interaction) -> None:
        await tell(interaction, self.runs.runs_text(invocation(interaction)))

    @app_commands.command(name="templates", description="Conversation templates")
    async def list_templates(self, interaction: discord.Interaction) -> None:
        await tell(interaction, self.runs.templates_text())

    @app_commands.command(name="models", description="Models this bot can run")
    async def list_models(self, interaction: discord.Interaction) -> None:
        await tell(interaction, self.runs.models_text())

    @app_commands.command(name="help", description="How to run backrooms conversations")
    async def help(self, interaction: discord.Interaction) -> None:
        await tell(interaction, self.runs.help_text())

    @app_commands.command(name="streaming", description="Show replies as they are written")
    @app_commands.default_permissions(manage_guild=True)
    async def streaming(self, interaction: discord.Interaction, on: bool) -> None:
        try:
            text = await self.runs.set_streaming(invocation(interaction), on)
        except Refusal as refusal:
            text = str(refusal)
        await tell(interaction, text)


def stop_command(runs: Commands) -> app_commands.Command[Any, Any, None]:
    """`/stop`, typed in a run's thread."""

    @app_commands.command(name="stop", description="Stop the run of this thread")
    @app_commands.guild_only()
    async def stop_here(interaction: discord.Interaction) -> None:
        await stop_run(runs, interaction, None)

    return stop_here
