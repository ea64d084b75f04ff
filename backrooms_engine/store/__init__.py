"""The store: the three ports (backrooms_engine/ports.py) on SQLite or PostgreSQL.

SQLite (the default) keeps everything in one file; PostgreSQL (postgres/) serves several machines.
`open_store(location)` opens either, by the location the settings name (location.py:
`BACKROOMS_DATABASE_URL`, `BACKROOMS_DB`, `DATABASE_URL`).

SQLite: one process owns a store file (ARCHITECTURE.md, "One owner per store"): `open(owner=True)`
holds an exclusive `flock` on `<db>.lock` for the store's lifetime. The kernel drops it when the
process dies, even by SIGKILL, so the next start can resume the runs left `running`. A viewer
(`owner=False`, such as `backrooms runs`) takes no lock. It may create the schema of a brand-new,
empty store (so a viewer started first shows "no runs" instead of failing), but it never upgrades
an existing schema: that would change tables under a running owner that does not know the layout.

Schema changes are one numbered sequence of SQL files in `migrations/` for both dialects
(schema.py), each applied in its own transaction at open and recorded in `schema_migrations`.

The modules, by responsibility (each uses only the others' public names):

    location.py       which store the settings name, and a URL fit to print
    factory.py        open_store: SQLite or PostgreSQL by that location
    schema.py         the migration files, per dialect
    sql.py            what the portable modules need of a database (both dialects give it)
    bundle.py         AllPorts: the three ports on one object
    opening.py        SQLite: path checks, the owner lock, connections, migrations
    connection.py     SQLite: Database, one connection, one task at a time, errors as StoreError
    rows.py           statements, and rows <-> the engine's records
    reading.py        runs and replies read back, for the transcript and the archive
    rules.py          checks and errors shared with the in-memory fake
    search.py         the search box's words; FTS5's queries and excerpts
    transcript.py     the TranscriptStore port (SqlTranscript; SqliteTranscript)
    desired.py        a run's desired state: stop requests, any process may make them
    surface_state.py  the SurfaceState port
    archive.py        the Archive port (SqlArchive; SqliteArchive, FTS5, on a read-only connection)
    sqlite.py         SqliteStore: opens the file and offers all three ports
    postgres/         PostgresStore and what only PostgreSQL needs
    copy.py           `backrooms db copy`: a SQLite archive into an empty PostgreSQL store
    copy_tables.py    which tables and columns the copy moves, read from both catalogues
"""

from .bundle import AllPorts
from .factory import open_store
from .location import StoreLocation, redact, store_location
from .opening import BUSY_TIMEOUT_MS
from .rules import (
    RUN_STATUSES,
    check_count,
    check_list_args,
    check_participants,
    check_reply,
    duplicate_reply,
    unknown_run,
    utc,
)
from .schema import DIALECTS, MIGRATIONS_DIR, Dialect, Migration, load_migrations
from .sqlite import SqliteStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DIALECTS",
    "MIGRATIONS_DIR",
    "RUN_STATUSES",
    "AllPorts",
    "Dialect",
    "Migration",
    "SqliteStore",
    "StoreLocation",
    "check_count",
    "check_list_args",
    "check_participants",
    "check_reply",
    "duplicate_reply",
    "load_migrations",
    "open_store",
    "redact",
    "store_location",
    "unknown_run",
    "utc",
]
