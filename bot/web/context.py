"""What every route reads, kept on the app's state: `web(request)` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request

from backrooms_engine.ports import RunFilter
from backrooms_engine.records import RunRecord

from ..runtime import Runtime
from .broker import LiveBroker
from .cache import Lru, WhileUnchanged
from .polled import Polls

ROWS_KEPT = 4096  # a few pages of each filter; a row is about 600 bytes
LISTS_KEPT = 256  # list pages (about 25 KB each) kept while the store has not changed
# The longest a kept list page is shown: what the store's version cannot tell (a lease that ran
# out with no commit; a template file added) shows within this.
LIST_MAX_AGE = 1.0


@dataclass(frozen=True)
class Page:
    """A rendered page as it is sent: its bytes and their ETag."""

    body: bytes
    etag: str


@dataclass
class WebContext:
    """The runtime (the store's ports, manager, registry) and the live feed. `web_token` None
    means the site is read-only."""

    rt: Runtime
    broker: LiveBroker
    web_token: str | None
    templates: Environment
    polls: Polls  # runs another process drives, each polled once for all its viewers
    accepting: bool = True  # False once the service stops taking commands
    drives: bool = True  # False: runs started here are queued for a driving process (`serve`)
    # A row of the run list as HTML, by run id and status word, with the record it shows: it
    # is used again only for that same record (pages.py).
    rows: Lru[tuple[int, str], tuple[RunRecord, Markup]] = field(
        default_factory=lambda: Lru(ROWS_KEPT)
    )
    # A list page by its filter, kept while the store reads the same (pages.py).
    lists: WhileUnchanged[RunFilter, Page] = field(
        default_factory=lambda: WhileUnchanged(LISTS_KEPT, LIST_MAX_AGE)
    )


def web(request: Request) -> WebContext:
    return request.app.state.web
