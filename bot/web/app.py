"""The Starlette application: routes, templates, static files and the security headers."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backrooms_engine.errors import UnknownRunError

from .. import faces
from ..runtime import Runtime
from . import control, live, pages, respond
from .broker import LiveBroker
from .context import WebContext
from .polled import Polls
from .render import colour_class

PACKAGE = Path(str(resources.files(__package__)))

# script-src 'self': the page runs only /static/run.js, never an inline script, so even a reply
# that slipped past escaping could not execute. No inline styles either: colours come from
# /colours.css. connect-src 'self' lets the script open its EventSource.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class RunIdConvertor(Convertor[int]):
    """A run id in a path: at most 18 digits, so a number past SQLite's 2**63 never reaches a
    query (it would raise OverflowError there); a longer one matches no route and is a 404."""

    regex = f"[0-9]{{1,{respond.MAX_ID_DIGITS}}}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("run_id", RunIdConvertor())


def create_app(rt: Runtime, broker: LiveBroker, *, drives: bool = True) -> Starlette:
    ctx = WebContext(
        rt=rt,
        broker=broker,
        web_token=rt.settings.web_token,
        templates=_templates(),
        drives=drives,
        polls=Polls(rt),
    )
    routes = [
        Route("/", pages.index, name="index"),
        Route("/colours.css", pages.colours, name="colours"),
        Route("/faces/{name:str}.png", _face, name="face"),
        Route("/runs", control.start_run, methods=["POST"], name="start"),
        Route("/runs/{run_id:run_id}", pages.run_page, name="run"),
        Route("/runs/{run_id:run_id}.{fmt:str}", pages.download, name="download"),
        Route("/runs/{run_id:run_id}/events", live.events, name="events"),
        Route("/runs/{run_id:run_id}/stop", control.stop_run, methods=["POST"], name="stop"),
        Mount("/static", app=StaticFiles(directory=PACKAGE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            UnknownRunError: respond.unknown_run,
            HTTPException: respond.http_error,
            Exception: respond.server_error,  # a 500, as a page of the site
        },
    )
    app.state.web = ctx
    return app


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PACKAGE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["colour_class"] = colour_class
    env.filters["when"] = pages.when
    return env


async def _face(request: Request) -> Response:
    """A persona's picture (bot/faces.py), at a stable URL chat posts point at."""
    face = faces.face_by_name(request.path_params["name"])
    if face is None:
        return respond.error(request, 404, "There is no such face.")
    headers = {"Cache-Control": "public, max-age=604800"}
    return Response(faces.png(face), media_type="image/png", headers=headers)


class SecurityHeaders:
    """Adds the CSP and friends to every response (pure ASGI, so streams are not buffered)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
