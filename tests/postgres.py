"""The machine's PostgreSQL server for tests (../shared/PLATFORM_NOTES.md): each test gets a schema
of its own, dropped after it.

Where no server answers, a test that needs one skips with one line, unless CI is "true": there
it fails, so a CI run never passes with the PostgreSQL tests left out. A server that answers but
refuses the login is always a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

# Read at import, before the autouse fixture clears every BACKROOMS_ variable.
SERVER_URL = os.environ.get(
    "BACKROOMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def server_answers(url: str = SERVER_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


def require_server() -> None:
    if server_answers():
        return
    where = urlsplit(SERVER_URL).netloc
    if os.environ.get("CI") == "true":
        pytest.fail(f"no PostgreSQL server answers at {where}, and CI=true needs one")
    pytest.skip(f"no PostgreSQL server answers at {where} (start it: pg_ctlcluster 15 main start)")


def in_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` alone."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """The URL of a new, empty schema on the server; the schema is dropped afterwards."""
    require_server()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    async with await psycopg.AsyncConnection.connect(SERVER_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield in_schema(SERVER_URL, schema)
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
