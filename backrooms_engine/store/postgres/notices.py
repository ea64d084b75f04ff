"""PgNotices: the DesiredNotices port (ports.py) on PostgreSQL, LISTEN on a connection of its own.

A stop request is announced with NOTIFY in its own transaction (desired.py); a driving process
listens on one dedicated autocommit connection, through psycopg 3's documented async API
(`AsyncConnection.notifies()`), and hears it as soon as it commits. The payload names the
store's schema: a notice of a store in another schema of the same database is not ours.

The connection is the iteration's: opened when `notices()` is first iterated, closed when the
iteration ends or is cancelled (the driver's shutdown). One the server drops (a restart, an
administrator's pg_terminate_backend, a network fault) is opened again after a backoff that
doubles up to `MAX_BACKOFF`; what was announced meanwhile is not heard, which the driver's poll
covers. A quiet connection is checked with a round trip every `CHECK_EVERY` seconds, so a
silently lost one is noticed, not only one the server closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import psycopg

from ...errors import StoreError
from ..desired import DESIRED_CHANNEL, announced
from ..location import StoreLocation
from .connection import said
from .opening import connect

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.2  # seconds before the first reconnection, doubled after each failure
MAX_BACKOFF = 5.0
CHECK_EVERY = 30.0  # seconds of silence after which the connection is checked
LISTEN = f"LISTEN {DESIRED_CHANNEL}"


class PgNotices:
    def __init__(self, location: StoreLocation) -> None:
        self.location = location

    async def notices(self) -> AsyncGenerator[int, None]:
        backoff = FIRST_BACKOFF
        while True:
            try:
                connection = await connect(self.location)
            except StoreError as exc:  # the message names the store (password masked)
                log.warning("cannot listen for stop requests: %s; again in %g s", exc, backoff)
            else:
                try:
                    async with connection:
                        schema = await _listen(connection)
                        backoff = FIRST_BACKOFF  # listening again: the next fault starts over
                        async with aclosing(_heard(connection, schema)) as heard:
                            async for run_id in heard:
                                yield run_id
                except psycopg.Error as error:
                    log.warning(
                        "stopped listening for stop requests on %s: %s; again in %g s",
                        self.location.shown,
                        said(self.location, error),
                        backoff,
                    )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


async def _listen(connection: psycopg.AsyncConnection[Any]) -> str:
    """LISTEN on the channel; the schema this store's tables are in (what its payloads name).
    LISTEN last: it is the session's latest statement from then on (pg_stat_activity shows it)."""
    cursor = await connection.execute("SELECT current_schema()")
    found = await cursor.fetchone()
    schema = str(found[0]) if found is not None else ""
    await connection.execute(LISTEN)
    return schema


async def _heard(
    connection: psycopg.AsyncConnection[Any], schema: str
) -> AsyncGenerator[int, None]:
    """The run ids announced for `schema`, until the connection fails (psycopg.Error)."""
    while True:
        quiet = True
        async with aclosing(connection.notifies(timeout=CHECK_EVERY)) as notifies:
            async for notify in notifies:
                quiet = False
                run_id = announced(notify.payload, schema)
                if run_id is not None:
                    yield run_id
        if quiet:  # a round trip, which raises if the connection was lost (LISTEN again: a no-op)
            await connection.execute(LISTEN)
