"""Failures the `backrooms` command reports in one line with its own exit status."""

from __future__ import annotations

from backrooms_engine.errors import BackroomsError


class Unreachable(BackroomsError):
    """A chat platform (or what its setting points at) did not answer at all. The message names
    the URL tried and the setting that holds it; `backrooms` exits 1, as for any outage."""

    @classmethod
    def at(cls, platform: str, url: str, setting: str, error: BaseException) -> Unreachable:
        why = str(error).strip() or type(error).__name__
        return cls(f"cannot reach {platform} at {url} ({setting}): {why}")
