"""The Discord relay: slash commands open a thread per run; each model posts there as itself.

The composition root calls `point_discord_py_at` (when the settings name another API base) before
it builds a `DiscordSurface`."""

from .endpoints import point_discord_py_at
from .surface import DiscordSurface

__all__ = ["DiscordSurface", "point_discord_py_at"]
