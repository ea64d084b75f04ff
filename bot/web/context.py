"""What every route reads, kept on the app's state: `web(request)` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request

from backrooms_engine.records import RunRecord

from ..runtime import Runtime
from .broker import LiveBroker
from .cache import Lru

ROWS_KEPT = 4096  # a few pages of each filter; a row is about 600 bytes


@dataclass
class WebContext:
    """The runtime (the store's ports, manager, registry) and the live feed. `web_token` None
    means the site is read-only."""

    rt: Runtime
    broker: LiveBroker
    web_token: str | None
    templates: Environment
    accepting: bool = True  # False once the service stops taking commands
    drives: bool = True  # False: runs started here are queued for a driving process (`serve`)
    # A row of the run list as HTML, by the record and status word it shows (pages.py).
    rows: Lru[tuple[RunRecord, str], Markup] = field(default_factory=lambda: Lru(ROWS_KEPT))


def web(request: Request) -> WebContext:
    return request.app.state.web
