"""REST plumbing: handlers mark the routes they serve with ``@route``; the Router finds them on
the resource objects, checks the bot token, injects requested faults, records every call in
arrival order and answers with ``Content-Type: application/json`` exactly (with ``; charset=utf-8``
discord.py's ``json_or_text`` returns a str). A bug inside the fake answers 400 with code -1 (not
500: discord.py retries 5xx with 1-7 s sleeps) and is listed in ``internal_errors``."""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import BodyPartReader, web

from .constants import API_PREFIX, INTERACTION_ROUTES, JSON_CONTENT_TYPE
from .errors import ApiError
from .faults import Faults
from .records import Call
from .state import State

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Request:
    method: str
    path: str  # after /api/v10
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    files: tuple[str, ...]


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request, re.Match[str]], Awaitable[Any]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    auth: bool


def route(method: str, path: str, name: str, *, auth: bool = True) -> Callable[[Any], Any]:
    """Mark a handler as serving ``method path`` (``{id}`` a snowflake, ``{token}`` a token)."""

    def mark(function: Any) -> Any:
        function.__dict__.setdefault("routes", []).append((method, path, name, auth))
        return function

    return mark


def _placeholder_regex(match: re.Match[str]) -> str:
    return r"([^/]+)" if match.group(1) == "token" else r"(\d+)"


def _routes_of(resources: Iterable[object]) -> list[_Route]:
    routes = []
    for resource in resources:
        for attribute in dir(type(resource)):
            function = getattr(type(resource), attribute)
            for method, path, name, auth in getattr(function, "routes", ()):
                pattern = re.compile("^" + _PLACEHOLDER.sub(_placeholder_regex, path) + "$")
                routes.append(_Route(method, pattern, name, getattr(resource, attribute), auth))
    return routes


class Router:
    def __init__(self, state: State, faults: Faults, resources: Iterable[object]) -> None:
        self._state = state
        self._faults = faults
        self._routes = _routes_of(resources)

    async def handle(self, request: web.Request) -> web.Response:
        state = self._state
        seq = len(state.call_log)
        state.call_log.append(None)  # reserve the slot: records stay in arrival order
        arrived = time.monotonic()
        path = request.path[len(API_PREFIX) :]
        headers = {k.lower(): v for k, v in request.headers.items()}
        req = Request(request.method, path, dict(request.query), headers, None, ())
        found = self._match(request.method, path)
        try:
            req.body, req.files = await _read_body(request)
            reply = await self._answer(req, found)
        except ApiError as error:
            reply = Reply(error.body(), error.status, error.headers)
        state.call_log[seq] = Call(
            seq,
            req.method,
            path,
            None if found is None else found[0].name,
            MappingProxyType(req.query),
            req.body,
            req.files,
            MappingProxyType(headers),
            arrived,
            reply.status,
            reply.body,
        )
        async with state.changed:
            state.changed.notify_all()
        return _response(reply)

    def _match(self, method: str, path: str) -> tuple[_Route, re.Match[str]] | None:
        for candidate in self._routes:
            if candidate.method == method and (m := candidate.pattern.match(path)):
                if candidate.name in INTERACTION_ROUTES and m.group(1) == str(
                    self._state.application_id
                ):  # the interaction's webhook, not a channel's
                    named = INTERACTION_ROUTES[candidate.name]
                    candidate = _Route(
                        method, candidate.pattern, named, candidate.handler, candidate.auth
                    )
                return candidate, m
        return None

    async def _answer(self, req: Request, found: tuple[_Route, re.Match[str]] | None) -> Reply:
        if (
            found is not None
            and found[0].auth
            and req.headers.get("authorization") != f"Bot {self._state.token}"
        ):
            raise ApiError(401, 0, "401: Unauthorized")
        self._faults.inject(req.method, req.path)
        if found is None:
            raise ApiError(404, 0, "404: Not Found")
        handler, m = found[0].handler, found[1]
        try:
            result = await handler(req, m)
        except ApiError:
            raise
        except Exception as exc:  # a bug in the fake must not look like Discord's answer
            self._state.internal_errors.append(traceback.format_exc())
            log.exception("fake discord handler failed on %s %s", req.method, req.path)
            raise ApiError(400, -1, f"fake_discord internal error: {exc!r}") from exc
        return result if isinstance(result, Reply) else Reply(result)


def _response(reply: Reply) -> web.Response:
    if reply.status == 204 or reply.body is None:
        return web.Response(status=204, headers=reply.headers)
    # body= (not text=) so that aiohttp adds no "; charset=utf-8": discord.py compares the
    # header to "application/json" exactly and otherwise hands the caller a str.
    headers = {**reply.headers, "Content-Type": JSON_CONTENT_TYPE}
    body = json.dumps(reply.body, separators=(",", ":")).encode()
    return web.Response(status=reply.status, body=body, headers=headers)


async def _read_body(request: web.Request) -> tuple[Any, tuple[str, ...]]:
    """The JSON body, or a multipart body's ``payload_json`` plus its file names."""
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[str] = []
        reader = await request.multipart()
        for _ in range(100):  # Discord allows 10 files; bound the loop anyway
            part = await reader.next()
            if part is None:
                break
            assert isinstance(part, BodyPartReader)
            if part.name == "payload_json":
                body = json.loads(await part.text())
            else:
                await part.read()
                files.append(part.filename or part.name or "")
        return body, tuple(files)
    raw = await request.read() if request.can_read_body else b""
    if not raw:
        return None, ()
    try:
        return json.loads(raw), ()
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
