"""Logging setup: one line per record on a stream, with the chatty libraries turned down."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

QUIET = (
    "discord",
    "discord.http",
    "discord.gateway",
    "slack_bolt",
    "slack_sdk",
    "httpx",
    "httpx2",
    "anthropic",
    "openai",
    "aiohttp.access",
    "asyncio",
)


class _NoVoice(logging.Filter):
    """discord.py warns at every start that voice needs PyNaCl and davey; we use no voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


_NO_VOICE = _NoVoice()


def setup(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.getLogger("discord.client").addFilter(_NO_VOICE)  # the same filter object: added once
