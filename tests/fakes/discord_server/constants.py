"""Discord's numbers: permission bits, intents, channel types and limits
(https://discord.com/developers/docs/topics/permissions, .../topics/gateway)."""

from __future__ import annotations

import re
from typing import Final

API_PREFIX: Final = "/api/v10"
JSON_CONTENT_TYPE: Final = "application/json"
DISCORD_EPOCH_MS: Final = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR: Final = 1 << 3
MANAGE_CHANNELS: Final = 1 << 4
VIEW_CHANNEL: Final = 1 << 10
SEND_MESSAGES: Final = 1 << 11
MANAGE_MESSAGES: Final = 1 << 13
EMBED_LINKS: Final = 1 << 14
ATTACH_FILES: Final = 1 << 15
READ_MESSAGE_HISTORY: Final = 1 << 16
MENTION_EVERYONE: Final = 1 << 17
MANAGE_WEBHOOKS: Final = 1 << 29
USE_APPLICATION_COMMANDS: Final = 1 << 31
MANAGE_THREADS: Final = 1 << 34
CREATE_PUBLIC_THREADS: Final = 1 << 35
CREATE_PRIVATE_THREADS: Final = 1 << 36
SEND_MESSAGES_IN_THREADS: Final = 1 << 38
ALL_PERMISSIONS: Final = (1 << 51) - 1
ALL_NEEDED: Final = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | MANAGE_WEBHOOKS
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | ATTACH_FILES
    | MANAGE_THREADS
    | USE_APPLICATION_COMMANDS
)
"""What the relay bot asks for in its invite (see PLATFORM_NOTES, Discord section)."""
MEMBER_PERMISSIONS: Final = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | USE_APPLICATION_COMMANDS
)

# Gateway intents.
INTENT_GUILDS: Final = 1 << 0
INTENT_GUILD_MEMBERS: Final = 1 << 1
INTENT_GUILD_WEBHOOKS: Final = 1 << 5
INTENT_GUILD_PRESENCES: Final = 1 << 8
INTENT_GUILD_MESSAGES: Final = 1 << 9
INTENT_MESSAGE_CONTENT: Final = 1 << 15
PRIVILEGED_INTENTS: Final = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Channel types.
TEXT: Final = 0
PUBLIC_THREAD: Final = 11
PRIVATE_THREAD: Final = 12
FORUM: Final = 15
THREAD_TYPES: Final = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})

AUTO_ARCHIVE_DURATIONS: Final = frozenset({60, 1440, 4320, 10080})
MAX_WEBHOOKS_PER_CHANNEL: Final = 15
MAX_CONTENT: Final = 2000
MAX_USERNAME: Final = 80
FORBIDDEN_NAME_PARTS: Final = ("discord", "clyde")
INTERACTION_ROUTES: Final = {
    "execute_webhook": "interaction_followup",
    "get_webhook_message": "interaction_get_message",
    "edit_webhook_message": "interaction_edit_message",
    "delete_webhook_message": "interaction_delete_message",
}
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
