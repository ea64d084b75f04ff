"""Connecting to PostgreSQL, and the migrations (schema.py) applied under an advisory lock.

Each migration runs in its own transaction, which first takes a transaction-level advisory lock:
a second process starting at the same moment waits for the first one's commit, then sees the
version already recorded and applies nothing. The lock is the same for every schema of the
database, because a migration may create an extension, and extensions are per database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from ...errors import StoreError
from ..location import StoreLocation
from ..rows import iso_text
from ..schema import MIGRATIONS_DIR, Migration, load_migrations, newer_schema, waiting_for_upgrade
from .connection import PgSession, dialect_sql, said

MIGRATION_LOCK = 0x6261636B726F6F6D  # "backroom": this application's advisory lock key
CONNECT_TIMEOUT_S = 10


async def connect(
    location: StoreLocation,
    *,
    read_only: bool = False,
    session: tuple[str, Sequence[Any]] | None = None,
) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection; `read_only` refuses every write, as the archive's SQLite one.
    `session` is a statement run on it first (a driving process names itself: leases.py)."""
    try:
        connection = await psycopg.AsyncConnection.connect(
            location.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        if read_only:
            await connection.execute("SET default_transaction_read_only = on")
        if session is not None:
            await connection.execute(dialect_sql(session[0]), session[1])
    except psycopg.Error as error:
        raise StoreError(
            f"cannot connect to {location.shown}: {said(location, error)}; check {location.setting}"
        ) from None
    return connection


async def schema_version(session: PgSession, location: StoreLocation) -> int:
    rows = await session.execute_fetchall(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    )
    tables = [row[0] for row in rows]
    if "schema_migrations" in tables:
        found = await session.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        return int(found[0][0] or 0)
    if tables:
        raise StoreError(
            f"{location.shown} holds tables that are not a backrooms store ({', '.join(tables)}); "
            "name another database, or a schema of its own with ?options=-csearch_path%3Dname"
        )
    return 0


async def _apply(session: PgSession, location: StoreLocation, migration: Migration) -> None:
    connection = session.connection
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            # A migration is not a driver's write: the fence (010) stands aside for it.
            await connection.execute("SELECT set_config('backrooms.owner', '', true)")
            # Another process may have applied it while we waited for the lock.
            if await schema_version(session, location) >= migration.version:
                return
            # No parameters: psycopg sends the script as one simple query, many statements.
            await connection.execute(migration.sql.encode())
            await session.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, iso_text(datetime.now(UTC))),
            )
    except psycopg.Error as error:
        raise StoreError(
            f"{location.shown}: migration {migration.name} failed: {said(location, error)}"
        ) from None


async def migrate(session: PgSession, location: StoreLocation, *, upgrade: bool) -> None:
    migrations = load_migrations(MIGRATIONS_DIR, "postgres")
    current, latest = await schema_version(session, location), len(migrations)
    if current > latest:
        raise newer_schema(location.shown, current, latest, location.setting)
    if 0 < current < latest and not upgrade:
        raise waiting_for_upgrade(location.shown, current, latest)
    for migration in migrations[current:]:
        await _apply(session, location, migration)
