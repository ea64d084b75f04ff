"""A Slack emulator on 127.0.0.1 that the real slack_sdk and slack-bolt talk to.

One aiohttp server speaks three of Slack's surfaces, checked against the sources of slack_sdk 3.48
and slack-bolt 1.30:

==================  ==========================================  ==================================
surface             endpoint                                    what the real library does there
==================  ==========================================  ==================================
Web API             ``{api_url}{method}`` (POST or GET)         ``AsyncWebClient`` sends form,
                                                                query-string or JSON parameters with
                                                                ``Authorization: Bearer <token>``
Socket Mode         ``ws://127.0.0.1:PORT/socket/link/?...``    the URL ``apps.connections.open``
                                                                returns; the aiohttp client connects
response_url        ``http://127.0.0.1:PORT/hooks/...``         bolt's ``respond()`` POSTs JSON
==================  ==========================================  ==================================

Pointing the real libraries at the fake (proxy variables must be unset: slack_sdk reads
``HTTP(S)_PROXY`` itself and ignores ``NO_PROXY``)::

    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, timeout=5)
        app = AsyncApp(client=client)  # the token comes from the client; passing token= too
                                       # only logs "client prioritized, token skipped"
        handler = AsyncSocketModeHandler(app, fake.app_token)  # web_client defaults to
                                                               # app.client, so the fake
        await handler.connect_async()  # apps.connections.open, then the websocket
        await fake.wait_socket_connected()
        envelope_id = await fake.send_slash_command(text="start opus gpt4o cli")
        payload = await fake.wait_ack(envelope_id)
        ...
        await handler.close_async()  # before the fake closes, or the client reconnects forever

Bolt keeps ``app.client`` for its own calls and builds a fresh ``AsyncWebClient`` per request
that copies ``base_url``, ``timeout``, ``headers`` and ``retry_handlers`` from it, so listeners'
``client`` and ``say`` reach the fake too. ``AsyncApp`` calls ``auth.test`` lazily, on the first
dispatched request (there is no ``token_verification_enabled`` in the async app), and caches it.
HTTP mode: ``app.web_app(path="/slack/events")`` is bolt's own aiohttp ``web.Application``
(``AsyncSlackAppServer``); serve it with an ``AppRunner`` on port 0 and POST a body from
:func:`slash_command_form` with the headers of :func:`sign_request`.

Behaviour, beyond the happy path (each answer is ``{"ok": false, "error": ...}`` unless noted):

* tokens: none ``not_authed``; unknown ``invalid_auth``; ``xapp-`` on a bot method or ``xoxb-`` on
  ``apps.connections.open`` ``not_allowed_token_type``; a scope absent from ``scopes`` (or
  ``app_scopes``) ``missing_scope`` with ``needed`` and ``provided``. Every answer carries
  ``x-oauth-scopes`` (bolt copies it into ``context.authorize_result.bot_scopes``).
* chat.postMessage: unknown channel ``channel_not_found``; bot not a member and no
  ``chat:write.public`` ``not_in_channel``; no text, blocks or attachments ``no_text``; text over
  ``max_text_length`` ``msg_too_long``; blocks not a list of typed objects (or more than 50)
  ``invalid_blocks``; a ``thread_ts`` that is not ``digits.digits`` ``invalid_thread_ts``. A
  well-formed ``thread_ts`` naming no message is accepted and files the reply under that ts, as
  Slack appears to (python-slack-sdk#840: such replies are accepted and show nowhere). Without
  ``chat:write.customize`` the username and icons are dropped silently; ``icon_emoji`` overrides
  ``icon_url``. ``reply_broadcast`` replies also appear in :meth:`FakeSlack.messages`.
* chat.update: channel must be an id; an omitted ``blocks`` keeps the old blocks (``[]`` clears
  them) and an omitted ``text`` keeps the old text. The custom username and icon survive an
  edit unless ``update_drops_username`` is set (reports say Slack may drop them; unverified).
* Rate limits: with ``enforce_channel_rate``, a chat.postMessage landing within ``min_interval``
  seconds of the last *accepted* post in that channel gets HTTP 429, ``Retry-After: 1`` and
  ``{"ok": false, "error": "ratelimited"}``. Slack tolerates short bursts; this model does not.
* response_url: at most five uses (then 404 ``used_url``, an unknown URL 404 ``no_service``);
  ``replace_original``/``delete_original`` act on the message an action came from,
  ``response_type: in_channel`` posts a root message, anything else is an ephemeral.
* Socket Mode: the server sends ``hello`` first and answers pings with pongs echoing their data.
  slack_sdk pings every ``ping_interval`` (bolt's handler: 10 s) and connects with aiohttp's
  ``heartbeat=ping_interval``, so an unanswered ping (``answer_pings = False``) gets the link
  closed within about 2 x ping_interval and slack_sdk reconnects through
  ``apps.connections.open``; so does a server-side close (:meth:`FakeSlack.drop_sockets`) and
  Slack's ``{"type": "disconnect"}`` message (:meth:`FakeSlack.request_reconnect`). Envelopes go
  to the newest open socket. Bolt sends NO ack at all when no listener matched, or when the
  listener has not called ``ack()`` within 3 s (a later ``ack()`` is dropped):
  :meth:`FakeSlack.wait_ack` then times out. Slack's reactions to a missing ack (an error shown
  to the user, Events API retries) are not modelled; ``Ack.late`` flags an ack past 3 s.
* Waiting: :meth:`FakeSlack.wait_for` re-checks any predicate after every request, ack or
  socket change the fake sees, so ``await fake.wait_for(lambda: len(fake.thread(c, ts)) == 3)``
  waits for work a listener does after its ack.
* Message metadata: chat.postMessage takes ``metadata`` (``{"event_type": str, "event_payload":
  {...}}``, a dict or its JSON; anything else ``invalid_metadata_format``). conversations.history
  (a channel's root messages, newest first, from ``oldest``) and conversations.replies (the root,
  then its replies, oldest first) return it only with ``include_all_metadata``; both need
  ``channels:history``, page by ``limit`` (default 100) and ``cursor``
  (``response_metadata.next_cursor``, ``has_more``); an unknown thread is ``thread_not_found``.
* Crashes: ``on_post`` (if set) is called with each accepted chat.postMessage's message, after
  the message exists and before the answer leaves, so a test can kill the caller exactly in the
  window between Slack's answer and the caller's bookkeeping.
* Not modelled: message ``blocks`` synthesised from text, ``files.*``, archived
  channels, private channels, ephemeral visibility rules beyond recording them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode

from aiohttp import WSCloseCode, WSMsgType, web

from backrooms_engine.lifecycle import StartsOnEntry

BOT_TOKEN: Final = "xoxb-test-0000000001-backrooms"
APP_TOKEN: Final = "xapp-test-1-A0TESTAPP1-backrooms"
TEAM_ID: Final = "T0TEST0001"
TEAM_DOMAIN: Final = "backrooms-test"
TEAM_NAME: Final = "Backrooms Test"
BOT_USER_ID: Final = "U0TESTBOT1"
BOT_ID: Final = "B0TESTBOT1"
BOT_NAME: Final = "backrooms"
APP_ID: Final = "A0TESTAPP1"
USER_ID: Final = "U0TESTUSR1"
USER_NAME: Final = "tester"
GENERAL_CHANNEL_ID: Final = "C0TEST0001"
VERIFICATION_TOKEN: Final = "fake-verification-token"

CUSTOMIZE_SCOPE: Final = "chat:write.customize"
PUBLIC_SCOPE: Final = "chat:write.public"
HISTORY_SCOPE: Final = "channels:history"
DEFAULT_SCOPES: Final = frozenset(
    {
        "chat:write",
        CUSTOMIZE_SCOPE,
        "channels:read",
        "channels:join",
        "users:read",
        "commands",
        HISTORY_SCOPE,
    }
)
DEFAULT_APP_SCOPES: Final = frozenset({"connections:write"})

ACK_DEADLINE: Final = 3.0  # Slack shows the user an error when an envelope is not acked in time
RESPONSE_URL_USES: Final = 5  # Slack: a response_url works five times within 30 minutes
MAX_BLOCKS: Final = 50
_TS_START: Final = 1_700_000_000_000_100  # microseconds; the first ts is "1700000000.000100"
_TS_STEP: Final = 100
_THREAD_TS: Final = re.compile(r"^\d+\.\d+$")
_IDENTITY_FIELDS: Final = ("username", "icon_url", "icon_emoji")
_OPTIONAL_FLAGS: Final = ("unfurl_links", "unfurl_media", "mrkdwn", "reply_broadcast")

TokenKind = Literal["bot", "app"]
EnvelopeType = Literal["slash_commands", "interactive", "events_api"]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ApiCall:
    """One Web API request as the fake received and answered it."""

    method: str  # e.g. "chat.postMessage"
    params: dict[str, Any] = field(hash=False)  # query, form and JSON parameters, merged
    headers: dict[str, str] = field(hash=False)  # lower-case names
    at: float  # time.monotonic() on arrival
    http_method: str
    status: int
    error: str | None  # None when the answer was ok

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth.removeprefix("Bearer ")
        token = self.params.get("token")
        return token if isinstance(token, str) else None


@dataclass(frozen=True)
class Ack:
    """A Socket Mode acknowledgement: ``{"envelope_id": ..., "payload": ...}``."""

    envelope_id: str
    payload: dict[str, Any] | None = field(hash=False)
    at: float
    latency: float | None  # seconds since the envelope was sent; None for an unknown envelope

    @property
    def late(self) -> bool:
        """Past Slack's deadline: the user would have seen an error instead."""
        return self.latency is not None and self.latency > ACK_DEADLINE


@dataclass(frozen=True)
class ResponsePost:
    """A POST to a response_url (what bolt's ``respond()`` sent)."""

    url: str
    body: dict[str, Any] = field(hash=False)
    headers: dict[str, str] = field(hash=False)
    at: float


@dataclass(frozen=True)
class Ephemeral:
    """A message only one user sees; ``source`` is "ack", "response_url" or "chat.postEphemeral"."""

    channel: str | None
    user: str | None
    text: str
    blocks: list[Any] | None = field(hash=False)
    source: str
    at: float


# --------------------------------------------------------------------------- internal state


class _ApiError(Exception):
    def __init__(
        self, error: str, *, status: int = 200, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.extra = extra


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


@dataclass
class _Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    identity: dict[str, str | None]  # what Slack stored
    requested: dict[str, str | None]  # what the caller sent
    flags: dict[str, Any]
    subtype: str | None = None
    reply_count: int = 0
    edits: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "text": self.text,
            "blocks": self.blocks,
            **self.identity,
            "requested": dict(self.requested),
            **self.flags,
            "subtype": self.subtype,
            "reply_count": self.reply_count,
            "edits": [dict(e) for e in self.edits],
            "metadata": self.metadata,
        }

    def wire(self, *, metadata: bool = False) -> dict[str, Any]:
        """The message object Slack returns: posted by the bot user, as its app."""
        out: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": self.ts,
            "text": self.text,
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM_ID},
        }
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.identity["username"]:
            out["subtype"], out["username"] = "bot_message", self.identity["username"]
        if self.identity["icon_emoji"]:
            out["icons"] = {"emoji": self.identity["icon_emoji"]}
        elif self.identity["icon_url"]:
            out["icons"] = {"image_48": self.identity["icon_url"]}
        if self.thread_ts is not None:
            out["thread_ts"], out["parent_user_id"] = self.thread_ts, BOT_USER_ID
        if self.reply_count:
            out["thread_ts"], out["reply_count"] = self.ts, self.reply_count
        if self.edits:
            out["edited"] = {"user": BOT_USER_ID, "ts": self.edits[-1]["edited_ts"]}
        if metadata and self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass
class _Channel:
    id: str
    name: str
    member: bool
    created: int
    roots: list[_Message] = field(default_factory=list)
    threads: dict[str, list[_Message]] = field(default_factory=dict)
    by_ts: dict[str, _Message] = field(default_factory=dict)
    last_post: float | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_private": False,
            "is_archived": False,
            "is_general": self.id == GENERAL_CHANNEL_ID,
            "is_member": self.member,
            "created": self.created,
            "creator": USER_ID,
            "context_team_id": TEAM_ID,
        }


@dataclass
class _Hook:
    kind: str
    channel: str | None
    user: str | None
    message_ts: str | None
    uses: int = 0


@dataclass
class _Envelope:
    type: str
    sent_at: float
    acked: asyncio.Future[dict[str, Any] | None]
    channel: str | None = None  # where Slack shows an ack's text, for slash commands
    user: str | None = None


# --------------------------------------------------------------------------- pure helpers


def sign_request(signing_secret: str, body: str, timestamp: int) -> dict[str, str]:
    """The headers Slack signs an HTTP request with: ``v0=`` + HMAC-SHA256 of ``v0:ts:body``."""
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(timestamp)}


def slash_command_payload(
    *,
    command: str = "/backrooms",
    text: str = "",
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    channel_id: str = GENERAL_CHANNEL_ID,
    channel_name: str = "general",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    response_url: str = "https://hooks.slack.com/commands/T0TEST0001/1/fake",
    trigger_id: str = "1000000001.1000000001.fake",
) -> dict[str, str]:
    """A slash command's fields, all strings, as Slack sends them (form body or envelope)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def slash_command_form(**fields: str) -> str:
    """The urlencoded body of an HTTP-mode slash command; see :func:`slash_command_payload`."""
    return urlencode(slash_command_payload(**fields))


def _flag(value: Any) -> bool:
    """Form bodies carry booleans as "1"/"0" (slack_sdk) or "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _decode_json_field(raw: Any, error: str) -> Any:
    if isinstance(raw, str):  # form bodies carry structured fields as JSON strings
        try:
            return json.loads(raw)
        except ValueError:
            raise _ApiError(error) from None
    return raw


def _blocks(params: Mapping[str, Any]) -> list[Any] | None:
    raw = params.get("blocks")
    if raw is None:
        return None
    blocks = _decode_json_field(raw, "invalid_blocks_format")
    typed = isinstance(blocks, list) and all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
    )
    if not typed or len(blocks) > MAX_BLOCKS:
        raise _ApiError("invalid_blocks")
    return blocks


def _button_in(blocks: list[Any] | None, action_id: str) -> tuple[str, dict[str, Any]] | None:
    """(block_id, element) of the interactive element with ``action_id``, if the blocks have it."""
    for block in blocks or []:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id", "")), element
    return None


def _metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = _decode_json_field(raw, "invalid_metadata_format")
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not isinstance(value.get("event_payload", {}), dict)
    ):
        raise _ApiError("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value.get("event_payload", {})}


def _page(messages: list[_Message], params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of `messages`, as conversations.history and conversations.replies give them."""
    try:
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        start = int(params.get("cursor") or 0)
    except ValueError:
        raise _ApiError("invalid_cursor") from None
    with_metadata = _flag(params.get("include_all_metadata", False))
    page = messages[start : start + limit]
    more = start + limit < len(messages)
    return {
        "messages": [m.wire(metadata=with_metadata) for m in page],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise _ApiError("invalid_json") from None
        if isinstance(body, dict):
            params.update(body)
    else:
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


# --------------------------------------------------------------------------- the fake


_Handler = Callable[["FakeSlack", dict[str, Any]], dict[str, Any]]


class FakeSlack(StartsOnEntry):
    """Slack's Web API, Socket Mode and response URLs on one loopback port."""

    bot_token: Final = BOT_TOKEN
    app_token: Final = APP_TOKEN
    team_id: Final = TEAM_ID
    bot_user_id: Final = BOT_USER_ID
    bot_id: Final = BOT_ID
    app_id: Final = APP_ID
    user_id: Final = USER_ID
    general_channel: Final = GENERAL_CHANNEL_ID

    def __init__(self, *, host: str = "127.0.0.1", shutdown_timeout: float = 1.0) -> None:
        self.host = host
        self.port = 0
        self.scopes: set[str] = set(DEFAULT_SCOPES)
        self.app_scopes: set[str] = set(DEFAULT_APP_SCOPES)
        self.enforce_channel_rate = False
        self.min_interval = 1.0
        self.rate_limited = 0
        self.max_text_length = 40_000
        self.update_drops_username = False
        self.trigger_ttl = 3.0  # Slack: a trigger_id expires three seconds after it was issued
        self.answer_pings = True
        self.on_post: Callable[[dict[str, Any]], None] | None = None
        self.calls: list[ApiCall] = []
        self.acks: list[Ack] = []
        self.responses: list[ResponsePost] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: list[dict[str, Any]] = []
        self.socket_connections = 0  # websockets ever accepted
        self.pings = 0
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._channels: dict[str, _Channel] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._hooks: dict[str, _Hook] = {}
        self._tickets: set[str] = set()
        self._triggers: dict[str, float] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._envelopes: dict[str, _Envelope] = {}
        self._ts = itertools.count(_TS_START, _TS_STEP)
        self._ids = itertools.count(1)
        self._tick = asyncio.Event()
        self.add_channel("general")
        self.add_user(USER_ID, USER_NAME)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket/link/", self._socket)
        app.router.add_post("/hooks/{tail:.*}", self._hook)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def close(self) -> None:
        for ws in list(self._sockets):
            try:
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 2.0)
            except (TimeoutError, ConnectionError):
                pass
        for envelope in self._envelopes.values():
            envelope.acked.cancel()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Give this to ``AsyncWebClient(base_url=...)``; it ends with a slash, as slack_sdk wants."""
        return f"{self.base_url}/api/"

    # ----------------------------------------------------------------- workspace state

    def add_channel(self, name: str, *, member: bool = True) -> str:
        name = name.removeprefix("#")
        if any(c.name == name for c in self._channels.values()):
            raise ValueError(f"channel #{name} exists already")
        channel_id = f"C0TEST{len(self._channels) + 1:04d}"
        self._channels[channel_id] = _Channel(channel_id, name, member, int(time.time()))
        return channel_id

    def add_user(self, user_id: str, name: str, *, is_bot: bool = False) -> None:
        self._users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name.title(),
            "is_bot": is_bot,
            "deleted": False,
            "profile": {"display_name": name, "real_name": name.title(), "team": TEAM_ID},
        }

    def channel_id(self, name_or_id: str) -> str:
        return self._channel(name_or_id).id

    def is_member(self, channel: str) -> bool:
        return self._channel(channel).member

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Root messages of a channel (and broadcast replies), oldest first."""
        return [m.as_dict() for m in self._channel(channel).roots]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies filed under ``thread_ts``, oldest first (the root itself excluded)."""
        return [m.as_dict() for m in self._channel(channel).threads.get(thread_ts, [])]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def response_url(
        self,
        kind: str = "commands",
        *,
        channel_id: str | None = None,
        user_id: str | None = None,
        message_ts: str | None = None,
    ) -> str:
        """A fresh response_url; ``message_ts`` binds it to the message replace/delete acts on."""
        path = f"/hooks/{kind}/{TEAM_ID}/{next(self._ids)}/{uuid.uuid4().hex[:24]}"
        self._hooks[path] = _Hook(kind, channel_id, user_id, message_ts)
        return f"{self.base_url}{path}"

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with an error, before any other check.

        ``status=429`` defaults to ``error="ratelimited"`` and ``Retry-After: 1`` (Slack always
        sends the header); other statuses default to ``"fatal_error"``.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        default = "ratelimited" if status == 429 else "fatal_error"
        failure = _Failure(error or default, status, retry_after)
        self._failures.setdefault(method, deque()).extend([failure] * count)

    # ----------------------------------------------------------------- waiting

    # The waits take a timeout argument (ASYNC109) on purpose: the brief of every caller is "no
    # await may hang a test", and a per-call default keeps each call site one line.

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every change the fake sees."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._tick.wait()
        except TimeoutError:
            raise TimeoutError(f"FakeSlack: {what} not reached within {timeout} s") from None

    async def wait_calls(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ApiCall]:
        await self.wait_for(
            lambda: len(self.calls_to(method)) >= count, timeout, f"{count} {method} call(s)"
        )
        return self.calls_to(method)

    async def wait_socket_connected(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        count: int = 1,
    ) -> None:
        """Wait until ``count`` websockets were ever accepted and one is open."""
        await self.wait_for(
            lambda: self.socket_connections >= count and self._current_socket() is not None,
            timeout,
            f"Socket Mode connection #{count}",
        )

    async def wait_ack(
        self,
        envelope_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any] | None:
        """The ack's ``payload`` (None when the ack carried none)."""
        envelope = self._envelopes[envelope_id]
        try:
            return await asyncio.wait_for(asyncio.shield(envelope.acked), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no ack for {envelope.type} envelope {envelope_id} within {timeout} s "
                "(bolt sends none when no listener matched or ack() was never called)"
            ) from None

    # ----------------------------------------------------------------- Web API dispatch

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        params: dict[str, Any] = {}
        try:
            params = await _read_params(request)
            body, extra_headers = self._answer(method, params, headers), {}
            status, error = 200, None
        except _ApiError as e:
            body = {"ok": False, "error": e.error, **e.extra}
            status, error = e.status, e.error
            extra_headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else {}
        self.calls.append(
            ApiCall(method, params, headers, time.monotonic(), request.method, status, error)
        )
        self._notify()
        extra_headers["x-oauth-scopes"] = ",".join(sorted(self._scopes_for(headers, params)))
        return web.json_response(body, status=status, headers=extra_headers)

    def _answer(
        self, method: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        queue = self._failures.get(method)
        if queue:
            failure = queue.popleft()
            raise _ApiError(failure.error, status=failure.status, retry_after=failure.retry_after)
        spec = _METHODS.get(method)
        if spec is None:
            raise _ApiError("unknown_method", req_method=method)
        kind, scope, handler = spec
        token_kind = self._token_kind(headers, params)
        if token_kind != kind:
            raise _ApiError("not_allowed_token_type")
        granted = self.scopes if kind == "bot" else self.app_scopes
        if scope is not None and scope not in granted:
            raise _ApiError("missing_scope", needed=scope, provided=",".join(sorted(granted)))
        return {"ok": True, **handler(self, params)}

    def _token_kind(self, headers: Mapping[str, str], params: Mapping[str, Any]) -> TokenKind:
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if not token:
            raise _ApiError("not_authed")
        if token == self.bot_token:
            return "bot"
        if token == self.app_token:
            return "app"
        raise _ApiError("invalid_auth")

    def _scopes_for(self, headers: Mapping[str, str], params: Mapping[str, Any]) -> set[str]:
        try:
            return self.app_scopes if self._token_kind(headers, params) == "app" else self.scopes
        except _ApiError:
            return set()

    # ----------------------------------------------------------------- Web API methods

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params.get("channel"))
        if not channel.member and PUBLIC_SCOPE not in self.scopes:
            raise _ApiError("not_in_channel")
        now = time.monotonic()
        if (
            self.enforce_channel_rate
            and channel.last_post is not None
            and now - channel.last_post < self.min_interval
        ):
            self.rate_limited += 1
            raise _ApiError("ratelimited", status=429, retry_after=1)
        text, blocks = self._content(params)
        thread_ts = params.get("thread_ts")
        if thread_ts is not None and not _THREAD_TS.match(str(thread_ts)):
            raise _ApiError("invalid_thread_ts")
        metadata = _metadata(params.get("metadata"))
        message = self._store(channel, text, blocks, thread_ts and str(thread_ts), params)
        message.metadata = metadata
        channel.last_post = now
        if self.on_post is not None:
            self.on_post(message.as_dict())
        return {"channel": channel.id, "ts": message.ts, "message": message.wire()}

    def _content(self, params: Mapping[str, Any]) -> tuple[str, list[Any] | None]:
        text = params.get("text")
        text = text if isinstance(text, str) else ""
        blocks = _blocks(params)
        if not text and not blocks and not params.get("attachments"):
            raise _ApiError("no_text")
        if len(text) > self.max_text_length:
            raise _ApiError("msg_too_long")
        return text, blocks

    def _store(
        self,
        channel: _Channel,
        text: str,
        blocks: list[Any] | None,
        thread_ts: str | None,
        params: Mapping[str, Any],
    ) -> _Message:
        requested = {k: _str_or_none(params.get(k)) for k in _IDENTITY_FIELDS}
        identity = dict(requested) if CUSTOMIZE_SCOPE in self.scopes else dict.fromkeys(requested)
        if identity["icon_emoji"]:  # Slack: icon_emoji overrides icon_url
            identity["icon_url"] = None
        flags = {k: _flag(params[k]) if k in params else None for k in _OPTIONAL_FLAGS}
        message = _Message(
            channel.id, self._new_ts(), text, blocks, thread_ts, identity, requested, flags
        )
        channel.by_ts[message.ts] = message
        if thread_ts is None:
            channel.roots.append(message)
            return message
        channel.threads.setdefault(thread_ts, []).append(message)
        root = channel.by_ts.get(thread_ts)
        if root is not None:
            root.reply_count += 1
        if flags["reply_broadcast"]:
            message.subtype = "thread_broadcast"
            channel.roots.append(message)
        return message

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        message = channel.by_ts.get(str(params.get("ts", "")))
        if message is None:
            raise _ApiError("message_not_found")
        text = params.get("text") if isinstance(params.get("text"), str) else None
        blocks = _blocks(params)
        if not text and not blocks and not params.get("attachments"):
            raise _ApiError("no_text")
        message.edits.append(
            {
                "text": message.text,
                "blocks": message.blocks,
                **message.identity,
                "edited_ts": self._new_ts(),
            }
        )
        message.text = text if text is not None else message.text
        message.blocks = blocks if "blocks" in params else message.blocks
        if self.update_drops_username:
            message.identity = dict.fromkeys(_IDENTITY_FIELDS)
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": message.wire(),
        }

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params.get("channel"))
        if not channel.member and PUBLIC_SCOPE not in self.scopes:
            raise _ApiError("not_in_channel")
        user = _str_or_none(params.get("user"))
        if user is None:
            raise _ApiError("user_not_found")
        text, blocks = self._content(params)
        self.ephemerals.append(
            Ephemeral(channel.id, user, text, blocks, "chat.postEphemeral", time.monotonic())
        )
        return {"message_ts": self._new_ts()}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        return {"channel": channel.info()}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        if channel.member:
            warning = "already_in_channel"
            return {
                "channel": channel.info(),
                "warning": warning,
                "response_metadata": {"warnings": [warning]},
            }
        channel.member = True
        return {"channel": channel.info()}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        oldest = float(params.get("oldest") or 0)
        roots = [m for m in reversed(channel.roots) if float(m.ts) > oldest]
        return _page(roots, params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        ts = str(params.get("ts", ""))
        root = channel.by_ts.get(ts)
        if root is None or root.thread_ts is not None:
            raise _ApiError("thread_not_found")
        return _page([root, *channel.threads.get(ts, [])], params)

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(params.get("user", "")))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        issued = self._triggers.get(str(params.get("trigger_id", "")))
        if issued is None:
            raise _ApiError("invalid_trigger_id")
        if time.monotonic() - issued > self.trigger_ttl:
            raise _ApiError("expired_trigger_id")
        view = _decode_json_field(params.get("view"), "invalid_arguments")
        if not isinstance(view, dict) or view.get("type") != "modal" or "title" not in view:
            raise _ApiError("invalid_arguments")
        opened = {
            **view,
            "id": f"V0TEST{next(self._ids):04d}",
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
        }
        self.views.append(opened)
        return {"view": opened}

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        url = f"ws://{self.host}:{self.port}/socket/link/?ticket={ticket}&app_id={APP_ID}"
        return {"url": url}

    # ----------------------------------------------------------------- state helpers

    def _new_ts(self) -> str:
        micros = next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_trigger(self) -> str:
        trigger = f"{next(self._ids)}.{TEAM_ID[1:]}.{uuid.uuid4().hex[:20]}"
        self._triggers[trigger] = time.monotonic()
        return trigger

    def _channel(self, name_or_id: str) -> _Channel:
        try:
            return self._resolve(name_or_id)
        except _ApiError:
            raise KeyError(f"no channel {name_or_id!r}") from None

    def _resolve(self, ref: Any) -> _Channel:
        """A channel by id, ``#name`` or ``name``, as chat.postMessage accepts them."""
        if isinstance(ref, str) and ref:
            if ref in self._channels:
                return self._channels[ref]
            for channel in self._channels.values():
                if channel.name == ref.removeprefix("#"):
                    return channel
        raise _ApiError("channel_not_found")

    # ----------------------------------------------------------------- response_url

    async def _hook(self, request: web.Request) -> web.Response:
        hook = self._hooks.get(request.path)
        raw = await request.text()
        if hook is None:
            return web.Response(status=404, text="no_service")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        hook.uses += 1
        if hook.uses > RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.responses.append(ResponsePost(str(request.url), body, headers, time.monotonic()))
        self._apply_response(hook, body)
        self._notify()
        return web.Response(text="ok")

    def _apply_response(self, hook: _Hook, body: dict[str, Any]) -> None:
        channel = self._channels.get(hook.channel or "")
        target = channel.by_ts.get(hook.message_ts or "") if channel else None
        if channel is not None and target is not None and _flag(body.get("delete_original")):
            channel.roots = [m for m in channel.roots if m is not target]
            return
        if target is not None and _flag(body.get("replace_original")):
            target.edits.append(
                {
                    "text": target.text,
                    "blocks": target.blocks,
                    **target.identity,
                    "edited_ts": self._new_ts(),
                }
            )
            target.text, target.blocks = str(body.get("text", "")), body.get("blocks")
            return
        if channel is not None and body.get("response_type") == "in_channel":
            self._store(channel, str(body.get("text", "")), body.get("blocks"), None, {})
            return
        self.ephemerals.append(
            Ephemeral(
                hook.channel,
                hook.user,
                str(body.get("text", "")),
                body.get("blocks"),
                "response_url",
                time.monotonic(),
            )
        )

    # ----------------------------------------------------------------- Socket Mode

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        # autoping off: pings are counted and may go unanswered (answer_pings) to fake a dead link
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        self._notify()
        try:
            await ws.send_json(self._hello())
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    self.pings += 1
                    if self.answer_pings:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            self._sockets.remove(ws)
            self._notify()
        return ws

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or "envelope_id" not in message:
            return
        envelope_id = str(message["envelope_id"])
        payload = message.get("payload")
        payload = payload if isinstance(payload, dict) else None
        now = time.monotonic()
        envelope = self._envelopes.get(envelope_id)
        latency = now - envelope.sent_at if envelope else None
        self.acks.append(Ack(envelope_id, payload, now, latency))
        if envelope is not None and not envelope.acked.done():
            envelope.acked.set_result(payload)
            self._record_ack_reply(envelope, payload)
        self._notify()

    def _record_ack_reply(self, envelope: _Envelope, payload: dict[str, Any] | None) -> None:
        """Slack shows the text of a slash command's ack to the invoking user only."""
        if envelope.type != "slash_commands" or not payload:
            return
        if payload.get("text") or payload.get("blocks"):
            text, blocks = str(payload.get("text", "")), payload.get("blocks")
            self.ephemerals.append(
                Ephemeral(envelope.channel, envelope.user, text, blocks, "ack", time.monotonic())
            )

    @property
    def open_sockets(self) -> int:
        """Socket Mode connections open now (envelopes go to the newest)."""
        return sum(1 for ws in self._sockets if not ws.closed)

    def _current_socket(self) -> web.WebSocketResponse | None:
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        return open_sockets[-1] if open_sockets else None

    async def _send_envelope(
        self,
        kind: EnvelopeType,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        channel: str | None = None,
        user: str | None = None,
    ) -> str:
        await self.wait_socket_connected()
        ws = self._current_socket()
        assert ws is not None
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._envelopes[envelope_id] = _Envelope(kind, time.monotonic(), future, channel, user)
        await ws.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
            }
        )
        return envelope_id

    async def send_slash_command(
        self,
        command: str = "/backrooms",
        text: str = "",
        *,
        user_id: str = USER_ID,
        user_name: str = USER_NAME,
        channel_id: str = GENERAL_CHANNEL_ID,
        team_id: str = TEAM_ID,
    ) -> str:
        """Send a slash_commands envelope; returns its envelope_id. An ack payload with text
        is recorded as an ephemeral (source "ack"), as Slack shows it to the user."""
        channel = self._channel(channel_id)
        payload = slash_command_payload(
            command=command,
            text=text,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel.id,
            channel_name=channel.name,
            team_id=team_id,
            response_url=self.response_url("commands", channel_id=channel.id, user_id=user_id),
            trigger_id=self._new_trigger(),
        )
        return await self._send_envelope(
            "slash_commands",
            payload,
            accepts_response_payload=True,
            channel=channel.id,
            user=user_id,
        )

    async def send_block_action(
        self,
        action_id: str,
        value: str = "",
        user_id: str = USER_ID,
        channel_id: str = GENERAL_CHANNEL_ID,
        message_ts: str | None = None,
        *,
        user_name: str = USER_NAME,
    ) -> str:
        """A button press on a message (default: the channel's newest root message)."""
        channel = self._channel(channel_id)
        message = self._action_target(channel, message_ts)
        found = _button_in(message.blocks, action_id)
        block_id, element = found if found else ("fake_block", {})
        action = {
            "action_id": action_id,
            "block_id": block_id,
            "text": element.get("text", {"type": "plain_text", "text": action_id}),
            "value": value,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        payload = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": channel.id,
                "is_ephemeral": False,
                **({"thread_ts": message.thread_ts} if message.thread_ts else {}),
            },
            "trigger_id": self._new_trigger(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": message.wire(),
            "state": {"values": {}},
            "response_url": self.response_url(
                "actions", channel_id=channel.id, user_id=user_id, message_ts=message.ts
            ),
            "actions": [action],
        }
        return await self._send_envelope("interactive", payload, accepts_response_payload=False)

    def _action_target(self, channel: _Channel, message_ts: str | None) -> _Message:
        if message_ts is None:
            if not channel.roots:
                raise ValueError(f"#{channel.name} has no message to press a button on")
            return channel.roots[-1]
        message = channel.by_ts.get(message_ts)
        if message is None:  # a message the fake never saw: a bare stand-in
            blank = dict.fromkeys(_IDENTITY_FIELDS)
            return _Message(channel.id, message_ts, "", None, None, blank, blank, {})
        return message

    async def send_event(self, event: dict[str, Any]) -> str:
        """An events_api envelope around ``event`` (e.g. an app_mention)."""
        payload = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev0TEST{next(self._ids):04d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return await self._send_envelope("events_api", payload, accepts_response_payload=False)

    async def request_reconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message; slack_sdk then reconnects to a new URL."""
        ws = self._current_socket()
        if ws is None:
            raise RuntimeError("no open Socket Mode connection")
        await ws.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}
        )

    async def drop_sockets(self) -> None:
        """Close every websocket from the server side, as an outage would."""
        for ws in list(self._sockets):
            await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 2.0)


_METHODS: Final[dict[str, tuple[TokenKind, str | None, _Handler]]] = {
    "auth.test": ("bot", None, FakeSlack._auth_test),
    "chat.postMessage": ("bot", "chat:write", FakeSlack._post_message),
    "chat.update": ("bot", "chat:write", FakeSlack._update),
    "chat.postEphemeral": ("bot", "chat:write", FakeSlack._post_ephemeral),
    "conversations.info": ("bot", "channels:read", FakeSlack._conversations_info),
    "conversations.join": ("bot", "channels:join", FakeSlack._conversations_join),
    "conversations.history": ("bot", HISTORY_SCOPE, FakeSlack._conversations_history),
    "conversations.replies": ("bot", HISTORY_SCOPE, FakeSlack._conversations_replies),
    "users.info": ("bot", "users:read", FakeSlack._users_info),
    "views.open": ("bot", None, FakeSlack._views_open),
    "apps.connections.open": ("app", "connections:write", FakeSlack._connections_open),
}
