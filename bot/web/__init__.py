"""The web viewer: the run archive with search, live run pages, downloads, and (with
BACKROOMS_WEB_TOKEN) starting and stopping runs. Starlette served by uvicorn in the service's loop."""

from .app import create_app
from .broker import LiveBroker
from .surface import WebSurface

__all__ = ["LiveBroker", "WebSurface", "create_app"]
