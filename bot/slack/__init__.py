"""The Slack relay: `/backrooms start` posts a root message with a Stop button, and every model
replies in its thread under its own name and icon."""

from .surface import SlackSurface

__all__ = ["SlackSurface"]
