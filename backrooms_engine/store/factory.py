"""open_store: the one way the application opens its store, SQLite or PostgreSQL by location."""

from __future__ import annotations

from .bundle import AllPorts
from .location import StoreLocation
from .sqlite import SqliteStore


async def open_store(
    location: StoreLocation,
    *,
    owner: bool = True,
    drives: bool | None = None,
    lease_seconds: float = 10.0,
) -> AllPorts:
    """The store at `location` with its schema up to date. `owner=False` is a viewer's open: it
    creates the schema of an empty store but never upgrades one (the package's docstring).
    `drives` (default: `owner`): this process drives runs, so its SQLite store gets Leases."""
    if location.dialect == "postgres":
        # Imported here: a SQLite user never loads the PostgreSQL driver.
        from .postgres import PostgresStore

        return await PostgresStore.open(
            location, owner=owner, drives=drives, lease_seconds=lease_seconds
        )
    return await SqliteStore.open(
        location.path, owner=owner, drives=drives, lease_seconds=lease_seconds
    )
