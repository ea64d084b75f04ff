"""Pointing the installed discord.py at the emulator, the way the project's composition root
points it at any other API base (bot.discord.endpoints), and back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bot.discord.endpoints import point_discord_py_at

from .state import State


@contextlib.contextmanager
def configure_discord_py(fake: State) -> Iterator[None]:
    """Point discord.py at ``fake`` (REST, webhooks and gateway); undo on exit."""
    saved = point_discord_py_at(api_base_url=fake.rest_base, gateway_url=fake.gateway_url)
    try:
        yield
    finally:
        point_discord_py_at(api_base_url=saved.api_base_url, gateway_url=saved.gateway_url)
