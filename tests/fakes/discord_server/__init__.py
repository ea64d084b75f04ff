"""A Discord API emulator on 127.0.0.1 that the real discord.py 2.7 client logs in to.

One aiohttp app serves the REST API under ``/api/v10`` and a websocket gateway at ``/gateway``.
:func:`configure_discord_py` (or ``fake.patch_client()``) points discord.py at it, through
``bot.discord.endpoints.point_discord_py_at``, and restores it:

* ``discord.http.Route.BASE = fake.rest_base``: REST *and* webhooks, since
  ``discord/webhook/async_.py`` builds every URL (execute, edit, interaction callbacks,
  followups) from the same ``Route``;
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``. A plain
  ``Client``/``Bot`` never calls ``GET /gateway``; it appends ``?v=10&encoding=json&compress=
  zlib-stream``. The fake honours zlib-stream (one zlib context per socket, HELLO included,
  every frame ending in Z_SYNC_FLUSH) and sends text frames otherwise (discord.py asks for
  ``zstd-stream`` when ``zstandard`` is installed; it decodes only binary frames, so text works).
  ``AutoShardedClient`` calls ``GET /gateway/bot`` and uses the ``url`` returned.

Usage (see ``tests/fakes/test_discord_server.py``)::

    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        with configure_discord_py(fake):
            bot = commands.Bot(..., intents=discord.Intents(guilds=True), guild_ready_timeout=0.05)
            await bot.login(fake.token)
            task = asyncio.create_task(bot.connect())
            await fake.wait_ready(5)
            await bot.tree.sync(guild=discord.Object(guild))
            hit = await fake.send_interaction(guild, channel, fake.owner_user_id,
                                              "backrooms", "start", {"template": "x"})
            ...
            await asyncio.wait_for(bot.close(), 5)   # the bot first: it reconnects otherwise

World: ``add_guild`` (the bot's guild permissions are exactly ``bot_permissions``, default
:data:`ALL_NEEDED`; ``@everyone`` has ``everyone_permissions``, default 0), ``add_text_channel`` /
``add_forum_channel`` (``bot_permissions=`` adds a member overwrite giving the bot exactly those),
``set_bot_channel_permissions``, ``add_role``, ``add_member`` (``permissions`` become a personal
role). ``owner_user_id`` owns every guild and the application (all permissions). Changes made
while a client is connected reach it as gateway events (GUILD_CREATE, CHANNEL_CREATE, ...).

Moderator actions: ``delete_thread`` (alias ``send_thread_delete``; THREAD_DELETE, then
``404 10003``), ``archive_thread(id, locked=False)`` (THREAD_UPDATE), ``delete_webhook``
(then ``404 10015``), ``delete_channel``; ``drop_gateway(code)`` closes the sockets (4000:
discord.py reconnects and RESUMEs; missed events are replayed, ``resume_count`` counts).

Injection: ``send_interaction`` (type 2; the data ``id``/``guild_id`` and option types come from
what the bot synced, so an unsynced command raises LookupError), ``send_autocomplete`` (type 4,
one ``focused`` option), ``send_component`` (type 3, a button or select on a stored message).

Observation: ``calls`` (every REST request in arrival order as a frozen :class:`Call` with a
``route`` name such as ``execute_webhook``, ``interaction_followup``, ``thread_from_message``;
``None`` for unknown routes), ``find_calls(method, path_regex, route=)``, ``wait_for_call``,
``messages(channel_or_thread)`` (edits applied, ``edits`` history), ``threads``, ``webhooks``,
``commands(guild_id)``, ``webhook_executes(thread_id)`` / ``webhook_edits`` (2xx only unless
``include_failed``), ``interaction_responses`` / ``wait_for_response`` / ``interaction_state``,
``identify_payloads``, ``gateway_queries``, ``rate_limited``, ``internal_errors``.

Faults and limits: ``fail_next(method, path_regex, status, code=, message=, retry_after=,
count=)``; ``enforce_webhook_rate_limit`` (``webhook_rate_limit`` = 5 per 2 s per webhook, sent as
X-RateLimit-* headers that discord.py's webhook adapter obeys, so pacing avoids 429s);
``enforce_channel_rate_limit`` (``channel_rate_limit`` = 30 messages per 60 s per channel, with no
warning headers, like Discord's undocumented per-channel limit); ``interaction_ack_deadline``
(3 s), ``interaction_token_lifetime`` (15 min); ``old_message_edits`` (None: off) edits of a
message older than ``old_message_age`` s, then ``429 30046`` (Discord's limit on editing old
messages) with ``old_message_retry_after``.

Crashes: ``on_message`` (if set) is called with each new message's REST shape once it exists and
before the answer leaves, so a test can kill the caller between Discord's answer and its record.

Faithful on purpose, each a way a real bot fails: ``Content-Type: application/json`` exactly
(with ``; charset=utf-8`` discord.py's ``json_or_text`` returns a str); every 429 carries ``Via``
(without it discord.py assumes a Cloudflare ban and raises) plus ``retry_after``/``global`` in the
body; webhook usernames containing "discord"/"clyde" or over 80 characters and content over 2000
characters answer ``400 50035``; a webhook message in a thread is found only with ``?thread_id=``;
executing a webhook into an archived thread unarchives it (Discord's documented ``thread_id``
behaviour) unless it is also locked (``400 50083``), while editing in an archived thread is
``400 50083``; a late interaction callback is ``404 10062``, a second one ``400 40060``; a 16th
webhook in a channel is ``400 30007``; ``allowed_mentions`` decides ``mentions`` and
``mention_everyone`` on stored messages; gateway events obey the IDENTIFY intents
(MESSAGE_CREATE needs GUILD_MESSAGES and, for others' content, MESSAGE_CONTENT).

Not modelled: voice, DMs, presences, reactions, role or guild editing, option types other than
string/integer/boolean/number (no ``resolved``), global rate limits, audit logs, private-thread
membership. A bug inside the fake answers 400 with code -1 (not 500: discord.py retries 5xx with
1-7 s sleeps) and is listed in ``internal_errors``.

The package, by concern (each module's docstring says what it models):

    fake.py           FakeDiscord: lifecycle, the test's view (observation, injection, faults)
    world.py          world building and moderator actions, as gateway events
    state.py          what the emulator knows; lookups; permissions; dispatching events
    gateway.py        the websocket gateway (sessions.py: sockets, sessions, RESUME replay)
    routing.py        REST plumbing: routes, auth, the call log, JSON answers
    applications.py   gateway URL, the bot's user and application, application commands
    guilds.py, channels.py, threads.py, webhooks.py, interactions.py   the REST resources
    messages.py       stored messages: mentions, edits, their REST and gateway shapes
    injection.py      interactions a test sends
    faults.py         injected failures and rate limits
    errors.py, validation.py, payloads.py, records.py, constants.py
"""

from .client import configure_discord_py
from .constants import (
    ADMINISTRATOR,
    ALL_NEEDED,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    EMBED_LINKS,
    FORUM,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILD_WEBHOOKS,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    MANAGE_WEBHOOKS,
    MEMBER_PERMISSIONS,
    MENTION_EVERYONE,
    PRIVATE_THREAD,
    PRIVILEGED_INTENTS,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    TEXT,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
)
from .errors import ApiError
from .fake import FakeDiscord
from .records import Call, Interaction, InteractionResponse, InteractionState

__all__ = [
    "ADMINISTRATOR",
    "ALL_NEEDED",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "CREATE_PRIVATE_THREADS",
    "CREATE_PUBLIC_THREADS",
    "EMBED_LINKS",
    "FORUM",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_GUILD_WEBHOOKS",
    "INTENT_MESSAGE_CONTENT",
    "MANAGE_CHANNELS",
    "MANAGE_MESSAGES",
    "MANAGE_THREADS",
    "MANAGE_WEBHOOKS",
    "MEMBER_PERMISSIONS",
    "MENTION_EVERYONE",
    "PRIVATE_THREAD",
    "PRIVILEGED_INTENTS",
    "PUBLIC_THREAD",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "TEXT",
    "USE_APPLICATION_COMMANDS",
    "VIEW_CHANNEL",
    "ApiError",
    "Call",
    "FakeDiscord",
    "Interaction",
    "InteractionResponse",
    "InteractionState",
    "configure_discord_py",
]
