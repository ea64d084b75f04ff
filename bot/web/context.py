"""What every route reads, kept on the app's state: `web(request)` returns it."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment
from starlette.requests import Request

from ..runtime import Runtime
from .broker import LiveBroker


@dataclass
class WebContext:
    """The runtime (the store's ports, manager, registry) and the live feed. `web_token` None
    means the site is read-only."""

    rt: Runtime
    broker: LiveBroker
    web_token: str | None
    templates: Environment
    accepting: bool = True  # False once the service stops taking commands


def web(request: Request) -> WebContext:
    return request.app.state.web
