"""Starting and stopping runs from the web: only with BACKROOMS_WEB_TOKEN, else the site is read-only.

A request proves it knows the token with `Authorization: Bearer <token>` (scripts) or a `token` form
field (the page's forms). A script gets JSON back; a browser's form post is redirected to the run.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from backrooms_engine import startspec
from backrooms_engine.errors import ConfigError
from backrooms_engine.manager import LimitError
from backrooms_engine.records import RunSpec

from .context import web
from .pages import template_sizes
from .respond import error

SURFACE = "web"
STOPPED_BY = "the web viewer"
MAX_BODY = 16 * 1024  # a start form is a few words; refuse anything much larger
READ_ONLY = (
    "read-only: this viewer has no BACKROOMS_WEB_TOKEN, so runs cannot be started or stopped here"
)


class _Refused(Exception):
    def __init__(self, response: Response):
        self.response = response


async def start_run(request: Request) -> Response:
    try:
        fields, api = await _authorised(request)
        spec = _spec(request, fields)
    except _Refused as refused:
        return refused.response
    ctx = web(request)
    if not ctx.accepting:
        return error(request, 503, "the service is shutting down; try again in a minute")
    manager = ctx.rt.manager
    try:
        # Driven here at once (`backrooms bot`), or queued for a driving process (`serve`).
        run_id = (await manager.start(spec)).id if ctx.drives else (await manager.queue(spec)).id
    except LimitError as exc:  # a cap on running runs: try again once one ends
        return error(request, 429, str(exc))
    except ConfigError as exc:
        return error(request, 400, str(exc))
    if api:
        body = {
            "id": run_id,
            "url": run_url(request, run_id),
            "status": "running" if ctx.drives else "queued",
        }
        return JSONResponse(body, status_code=201)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


async def stop_run(request: Request) -> Response:
    try:
        _, api = await _authorised(request)
    except _Refused as refused:
        return refused.response
    run_id = request.path_params["run_id"]
    result = await web(request).rt.manager.stop(run_id, by=STOPPED_BY)  # unknown id: 404
    if api:
        body = {"id": run_id, "stopped": result.stopped, "message": result.message}
        return JSONResponse(body)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


def run_url(request: Request, run_id: int) -> str:
    """The run page's address as chat links give it (BACKROOMS_PUBLIC_URL), else as this request
    reached us. Redirects stay relative: behind a platform's TLS proxy the request says http."""
    public = web(request).rt.settings.public_url
    return f"{public}/runs/{run_id}" if public else str(request.url_for("run", run_id=run_id))


def _spec(request: Request, fields: dict[str, str]) -> RunSpec:
    ctx = web(request)
    try:
        turns = fields.get("max_turns", "").strip()
        request_ = startspec.parse(
            fields.get("models", ""),
            registry=ctx.rt.registry,
            template_sizes=template_sizes(ctx),
            template=fields.get("template", "").strip() or None,
            max_turns=int(turns) if turns else None,
        )
    except ValueError:
        raise _Refused(error(request, 400, "max_turns must be a whole number")) from None
    except ConfigError as exc:
        raise _Refused(error(request, 400, str(exc))) from None
    _check_turns(request, request_.max_turns)
    return RunSpec(
        models=request_.models,
        template=request_.template,
        max_turns=request_.max_turns,
        started_by="web",
        surface=SURFACE,
        space=SURFACE,  # the web is one community: BACKROOMS_MAX_RUNS_PER_SPACE caps its runs
    )


def _check_turns(request: Request, asked: int | None) -> None:
    """More turns than the cap is a bad request (400), however often it is sent; the manager's
    429 is kept for caps that lift by themselves, when running runs end."""
    cap = web(request).rt.settings.chat_max_turns
    if asked is not None and asked > cap:
        raise _Refused(
            error(
                request,
                400,
                f"at most {cap} turns for a run started from the web, asked for {asked} "
                f"(BACKROOMS_CHAT_MAX_TURNS={cap})",
            )
        )


async def _authorised(request: Request) -> tuple[dict[str, str], bool]:
    """The request's fields and whether it came from a script (a bearer token), once the token
    is right. Raises _Refused with 403 on a read-only site, 401 on a missing or wrong token."""
    token = web(request).web_token
    if token is None:
        raise _Refused(error(request, 403, READ_ONLY))
    fields = await _fields(request)
    header = request.headers.get("authorization", "")
    scheme, _, bearer = header.partition(" ")
    api = scheme.lower() == "bearer"
    given = bearer.strip() if api else fields.get("token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise _Refused(
            error(
                request,
                401,
                "wrong or missing token: send Authorization: Bearer <BACKROOMS_WEB_TOKEN>"
                if api
                else "wrong or missing token: type the viewer's token (BACKROOMS_WEB_TOKEN)",
                headers={"www-authenticate": 'Bearer realm="backrooms"'},
            )
        )
    return fields, api


async def _fields(request: Request) -> dict[str, str]:
    """Form or JSON fields, read without python-multipart (a start form needs no file upload)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _Refused(error(request, 413, f"request body over {MAX_BODY} bytes"))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}
    if kind == "application/json":
        try:
            data: Any = json.loads(body)
        except ValueError:
            raise _Refused(error(request, 400, "the body is not valid JSON")) from None
        if not isinstance(data, dict):
            raise _Refused(error(request, 400, "the JSON body must be an object"))
        return {str(k): str(v) for k, v in data.items() if v is not None}
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in pairs.items()}
    raise _Refused(error(request, 415, "send a form (application/x-www-form-urlencoded) or JSON"))
