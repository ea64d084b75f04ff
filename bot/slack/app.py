"""The bolt app: one slash command and one button. Both are acked at once (Slack's limit is 3 s)
and the work goes on in a task the surface keeps; bolt itself stays a thin adapter."""

from __future__ import annotations

from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from .replay import ReplayGuard
from .texts import STOP_ACTION

COMMAND = "/backrooms"
EVENTS_PATH = "/slack/events"  # HTTP mode: the Request URL of the command and of interactivity


class Listener(Protocol):
    async def on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None: ...

    async def on_stop_button(self, ack: Any, body: dict[str, Any], respond: Any) -> None: ...


def build_app(
    client: AsyncWebClient, listener: Listener, *, signing_secret: str | None
) -> AsyncApp:
    """`signing_secret` for HTTP mode, where every request's signature and timestamp are checked
    (a bad one gets 401) and a signed request sent again is ignored (bot/slack/replay.py);
    Socket Mode requests arrive over the app's own websocket instead."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
    )
    if signing_secret is not None:
        app.middleware(ReplayGuard().middleware)  # runs after bolt's own signature check
    app.command(COMMAND)(listener.on_command)
    app.action(STOP_ACTION)(listener.on_stop_button)
    return app
