"""What the bot needs where, and how to say what is missing."""

from __future__ import annotations

import discord

# The OAuth2 invite asks for exactly these (PLATFORM_NOTES.md, Discord).
NEEDED = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    manage_webhooks=True,
    read_message_history=True,
    embed_links=True,
    manage_threads=True,
)

_NAMES = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "create_public_threads": "Create Public Threads",
    "manage_webhooks": "Manage Webhooks",
    "read_message_history": "Read Message History",
}

# Manage Threads only lets the bot lock or archive; a run goes on without it.
_FOR_A_RUN = tuple(_NAMES)


def missing_for_run(have: discord.Permissions, *, forum: bool = False) -> list[str]:
    """Names (as Discord shows them) of the permissions a run needs in its channel. In a forum,
    a post is a thread made with Send Messages, so Create Public Threads is not needed."""
    flags = [f for f in _FOR_A_RUN if not (forum and f == "create_public_threads")]
    return [_NAMES[flag] for flag in flags if not getattr(have, flag)]


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id,
        permissions=NEEDED,
        scopes=("bot", "applications.commands"),
    )
