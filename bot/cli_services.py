"""`backrooms discord`, `slack`, `serve` and `bot`: the long-running services.

A service drains on SIGTERM or Ctrl-C (service.py) and exits 0; a platform that cannot be
reached ends it with one line naming the URL and its setting, exit 1 (failures.py).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from typing import TYPE_CHECKING, Any

from backrooms_engine.errors import ConfigError

from . import eventloop, logs
from .cli import DEMO_WEB_TURNS
from .interrupts import Interrupts
from .settings import Settings

if TYPE_CHECKING:
    from .discord import DiscordSurface


def cmd_discord(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    if args.invite_url:
        from .discord.permissions import invite_url

        print(invite_url(application_id(settings)))
        return 0
    return _serve(settings, interrupts, [_discord_surface(settings)], "discord")


def _discord_surface(settings: Settings) -> DiscordSurface:
    """discord.py is pointed at another API base (DISCORD_API_BASE_URL, DISCORD_GATEWAY_URL)
    here, before its surface is built, and nowhere else."""
    from .discord import DiscordSurface, point_discord_py_at

    point_discord_py_at(
        api_base_url=settings.discord.api_base_url, gateway_url=settings.discord.gateway_url
    )
    return DiscordSurface(settings)


def cmd_slack(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    from .slack import SlackSurface

    return _serve(settings, interrupts, [SlackSurface(settings)], "slack")


def cmd_serve(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    from .web import WebSurface

    # `serve` drives nothing: its form queues runs for `backrooms bot` or `backrooms worker`.
    # Only a --demo run is driven here, by the process that started it (as `backrooms run`).
    demo = DEMO_WEB_TURNS if args.demo else None
    surface = WebSurface(settings, host=args.host, port=args.port, demo_turns=demo, drives=False)
    return _serve(settings, interrupts, [surface], "serve", claims=False, drives=args.demo)


def cmd_bot(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    surfaces: list[Any] = []
    if settings.discord.token:
        surfaces.append(_discord_surface(settings))
    if settings.slack.bot_token:
        from .slack import SlackSurface

        surfaces.append(SlackSurface(settings))
    if settings.port:
        from .web.surface import ALL_HOSTS, WebSurface

        surfaces.append(WebSurface(settings, default_host=ALL_HOSTS))
    if not surfaces:
        raise ConfigError(
            "nothing to run: set DISCORD_TOKEN, SLACK_BOT_TOKEN (with SLACK_APP_TOKEN) or PORT"
        )
    return _serve(settings, interrupts, surfaces)


def _serve(
    settings: Settings,
    interrupts: Interrupts,
    surfaces: list[Any],
    role: str = "bot",
    *,
    claims: bool = True,
    drives: bool = True,
) -> int:
    """`role`: what `backrooms workers` calls this process; `claims=False`: it takes no
    waiting run; `drives=False`: it drives nothing (its store has no Leases)."""
    from .claiming import Claims
    from .service import serve

    logs.setup(logging.INFO, sys.stdout)
    names = frozenset(s.name for s in surfaces) if claims else frozenset()
    claimed = Claims(role, names, settings.max_runs)
    try:
        work = serve(settings, surfaces, claimed, drives=drives)
        return eventloop.run(work, settings.event_loop)
    finally:
        # The loop gave SIGTERM back to its default action when it closed: take it again, so a
        # signal in the last lines still ends the process with our status, not by the signal.
        interrupts.install()


def application_id(settings: Settings) -> int:
    """A bot's application id is its user id, which is the first part of its token, in base64."""
    if settings.discord.application_id is not None:
        return settings.discord.application_id
    token = settings.discord.token
    if not token:
        raise ConfigError("set DISCORD_TOKEN (or DISCORD_APPLICATION_ID) to make the invite URL")
    first = token.split(".")[0]
    try:
        return int(base64.b64decode(first + "=" * (-len(first) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(
            "DISCORD_TOKEN does not look like a bot token; set DISCORD_APPLICATION_ID"
        ) from None
