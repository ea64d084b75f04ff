"""The Discord relay: slash commands open a thread per run; each model posts there as itself."""

from .surface import DiscordSurface

__all__ = ["DiscordSurface"]
