"""Failures the `backrooms` command reports in one line with its own exit status."""

from __future__ import annotations

import socket

from backrooms_engine.errors import BackroomsError


class Unreachable(BackroomsError):
    """A chat platform (or what its setting points at) did not answer at all. The message names
    the URL tried and the setting that holds it; `backrooms` exits 1, as for any outage."""

    @classmethod
    def at(cls, platform: str, url: str, setting: str, error: BaseException) -> Unreachable:
        return cls(f"cannot reach {platform} at {url} ({setting}): {why(error)}")


def why(error: BaseException) -> str:
    """A connection failure in a few words. aiohttp's connector errors carry the OS error."""
    cause = getattr(error, "os_error", None) or error
    if isinstance(cause, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused; is the address right?"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(error).strip() or type(error).__name__
