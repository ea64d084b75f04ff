"""How the viewer answers: a page of the site, or, for an error, that page or one plain line.

A browser (it asks for text/html) gets every error as a page of the site, in its style and with a
link back to the run list; a script (curl, a bot) gets one plain line it can print. Error messages
here speak of the web page, never of a command to type in a terminal.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from .context import web

MAX_ID_DIGITS = 18  # below 2**63, SQLite's largest integer, so no id can overflow a query


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    ctx = web(request)
    page = ctx.templates.get_template(name).render(read_only=ctx.web_token is None, **values)
    return HTMLResponse(page, status_code=status_code)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "").lower()


def error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The error as a page of the site for a browser, else as one line of text."""
    message = message.strip()
    if not wants_html(request):
        return PlainTextResponse(message + "\n", status_code=status, headers=headers)
    response = render(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=_title(status),
        message=message,
    )
    response.headers.update(headers or {})
    return response


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Something went wrong"


def run_id_number(text: str | None) -> int | None:
    """A run id or a count written in ASCII digits, small enough for the store; else None.
    (str.isdigit is not enough: it accepts "²", which int() refuses.)"""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > MAX_ID_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


# -- the app's exception handlers ------------------------------------------------------------


async def unknown_run(request: Request, exc: Exception) -> Response:
    run_id = request.path_params.get("run_id")
    if run_id is None:  # raised outside a run's own address: the store's words, minus its hint
        return error(request, 404, str(exc).split(";")[0])
    return error(request, 404, f"There is no run {run_id}.")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals: no such page (404), a wrong method (405)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"There is no page at {request.url.path}."
    else:
        message = str(exc.detail)
    return error(request, exc.status_code, message, dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug of ours: the page says so plainly; the traceback goes to the service log only."""
    return error(request, 500, "Something went wrong on our side; it has been logged.")
