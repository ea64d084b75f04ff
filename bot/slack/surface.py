"""The Slack surface's lifecycle: connect (Socket Mode by default, HTTP with a signing secret and a
port), take commands, rebuild posters for resumed runs, refuse politely while shutting down, close.

Socket Mode is the default because on a Procfile platform only the `web` process receives HTTP,
and that port belongs to the web viewer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from backrooms_engine.errors import ConfigError
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunRecord

from ..failures import Unreachable
from ..runtime import Runtime
from ..settings import Settings, SlackSettings
from . import texts
from .app import EVENTS_PATH, build_app
from .commands import Commands, Invocation
from .relay import Relay

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
# What a run needs; chat:write.customize missing is silent (replies show under the bot's name);
# channels:history lets a restart read its own threads for posts a crash left unrecorded.
NEEDED_SCOPES = ("commands", "chat:write", "chat:write.customize", "channels:history")
CLOSE_GRACE = 5.0  # seconds for command tasks to finish at close
Mode = Literal["socket", "http"]


def connection_mode(slack: SlackSettings) -> Mode:
    """Which way Slack reaches us; a missing setting fails here, naming the variable."""
    if not slack.bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is not set (the app's xoxb- Bot User OAuth Token)")
    if slack.http_port:
        if not slack.signing_secret:
            raise ConfigError("SLACK_HTTP_PORT is set but SLACK_SIGNING_SECRET is not (HTTP mode)")
        return "http"
    if not slack.app_token:
        raise ConfigError(
            "SLACK_APP_TOKEN is not set (an xapp- token with connections:write, for Socket Mode); "
            "or set SLACK_SIGNING_SECRET and SLACK_HTTP_PORT for HTTP mode"
        )
    return "socket"


def make_client(
    slack: SlackSettings, session: aiohttp.ClientSession, rate_retries: int
) -> AsyncWebClient:
    """Slack answers 429 with Retry-After; slack_sdk waits that long and retries only with this
    handler. The retry happens inside the call, so the channel's pacing gate stays held and no
    later post overtakes the one being retried."""
    base_url = slack.api_url or DEFAULT_API_URL
    return AsyncWebClient(
        token=slack.bot_token,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=rate_retries),
        ],
    )


async def identify(client: AsyncWebClient) -> tuple[str, str | None]:
    """The bot's name (for "/invite @name") and its workspace's id, checking the token and its
    scopes up front."""
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(f"Slack refused SLACK_BOT_TOKEN ({texts.error_code(exc)})") from None
    header = next((v for k, v in auth.headers.items() if k.lower() == "x-oauth-scopes"), None)
    if header is not None:
        granted = {s.strip() for s in str(header).split(",")}
        missing = [s for s in NEEDED_SCOPES if s not in granted]
        if missing:
            log.warning("the Slack app lacks scopes %s; see slack-manifest.yml", ", ".join(missing))
    team = auth.get("team_id")
    return str(auth.get("user") or "backrooms"), None if team is None else str(team)


class SlackSurface:
    name = "slack"

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "0.0.0.0",
        post_interval: float = 1.0,
        rate_retries: int = 10,
    ):
        """`host` is where HTTP mode listens; `post_interval` the seconds between one post
        landing in a channel and the next one leaving (Slack: about one message a second)."""
        self._settings = settings
        self._host = host
        self._post_interval = post_interval
        self._rate_retries = rate_retries
        self._accepting = True
        self._relay: Relay | None = None
        self._commands: Commands | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None  # the port HTTP mode listens on, once started
        self._team: str | None = None  # the workspace, once connected

    async def start(self, rt: Runtime) -> None:
        mode = connection_mode(self._settings.slack)
        self._session = aiohttp.ClientSession()
        try:
            await self._start(rt, mode, self._session)
        except BaseException:
            await self.close()
            raise

    async def _start(self, rt: Runtime, mode: Mode, session: aiohttp.ClientSession) -> None:
        slack = self._settings.slack
        client = make_client(slack, session, self._rate_retries)
        try:
            bot_name, self._team = await identify(client)
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable.at("Slack", client.base_url, "SLACK_API_URL", exc) from None
        if mode == "socket":
            await self._check_app_token(client)
        self._relay = Relay(rt, self._settings, client, bot_name, self._post_interval)
        self._commands = Commands(self._relay)
        if mode == "http":
            await self._serve_http(build_app(client, self, signing_secret=slack.signing_secret))
        else:
            self._socket = AsyncSocketModeHandler(
                build_app(client, self, signing_secret=None), slack.app_token
            )
            await self._socket.connect_async()
        log.info("slack: connected as @%s (%s mode)", bot_name, mode)

    async def _check_app_token(self, client: AsyncWebClient) -> None:
        """slack_sdk retries a refused app token forever inside connect(), so ask once first.
        The websocket URL this returns is left unused: each connection asks for its own."""
        try:
            await client.apps_connections_open(app_token=self._settings.slack.app_token)
        except SlackApiError as exc:
            raise ConfigError(
                f"Slack refused SLACK_APP_TOKEN ({texts.error_code(exc)}); it must be an app-level "
                "xapp- token with the connections:write scope"
            ) from None

    async def _serve_http(self, app: AsyncApp) -> None:
        port = self._settings.slack.http_port
        runner = web.AppRunner(
            app.web_app(path=EVENTS_PATH, port=port or 0), access_log=None, handle_signals=False
        )
        await runner.setup()
        await web.TCPSite(runner, self._host, port).start()
        self._runner = runner
        self.http_port = runner.addresses[0][1]

    # -- bolt listeners -----------------------------------------------------------------------

    async def on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        if not self._accepting or self._commands is None or self._relay is None:
            await ack(text=texts.RESTARTING)
            return
        answer = self._commands.route(command.get("text") or "")
        if isinstance(answer, str):
            await ack(text=answer)  # known without I/O: the ack carries it, ephemerally
            return
        await ack()
        invocation = Invocation.from_command(command, respond)
        self._relay.spawn(answer(invocation), name=f"slack command {command.get('text')!r}")

    async def on_stop_button(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        if self._commands is None or self._relay is None:
            return
        invocation = Invocation.from_action(body, respond)
        if not self._accepting:
            self._relay.spawn(invocation.tell(texts.RESTARTING), name="slack restarting")
            return
        value = str((body.get("actions") or [{}])[0].get("value", ""))
        self._relay.spawn(self._commands.stop_button(invocation, value), name="slack stop button")

    # -- the Surface protocol -----------------------------------------------------------------

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        """The poster of a run resumed (or still being shown) at start, rebuilt from the run's
        meta. A root message posted but not recorded is found by its mark; a run whose root
        message was never posted (the process died right then) has nowhere to go: it is ended."""
        if self._relay is None:
            raise RuntimeError("the Slack surface is not started")
        thread = await self._relay.thread_of(record.id)
        if thread is None:
            thread = await self._relay.recover_thread(record)
        if thread is None:
            log.warning("run %s: no Slack thread recorded; ending it", record.id)
            await self._relay.rt.manager.abandon(record, "its Slack thread was never made")
            return None
        return [await self._relay.poster(record, thread)]

    def shows(self, record: RunRecord) -> bool:
        """Runs of its own workspace (every one, if Slack did not say which it is)."""
        return self._team is None or record.spec.space == self._team

    async def stop_accepting(self) -> None:
        """Refuse politely from now on, and close Socket Mode first, so that commands reach
        another copy of the service (a rolling deploy); HTTP mode keeps listening until
        `close`, refusing. The Web API client stays open: posting goes on until `close`."""
        self._accepting = False
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
            log.info("slack: Socket Mode closed; posting goes on over the Web API")

    async def close(self) -> None:
        if self._relay is not None and self._relay.tasks:
            _, pending = await asyncio.wait(list(self._relay.tasks), timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
