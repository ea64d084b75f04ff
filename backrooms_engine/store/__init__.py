"""SQLite transcripts through aiosqlite: the three store ports (backrooms_engine/ports.py).

One process owns a store file (ARCHITECTURE.md, "One owner per store"): `open(owner=True)` holds
an exclusive `flock` on `<db>.lock` for the store's lifetime. The kernel drops it when the process
dies, even by SIGKILL, so the next start can resume the runs left `running`. A viewer
(`owner=False`, such as `backrooms runs`) takes no lock. It may create the schema of a brand-new,
empty file (so a viewer started first shows "no runs" instead of failing), but it never upgrades
an existing schema: that would change tables under a running owner that does not know the layout.

Schema changes are numbered SQL files in `migrations/`, each applied in its own transaction at open
and recorded in `schema_migrations`. The SQL stays portable: a PostgreSQL store will follow.

The modules, by responsibility (each uses only the others' public names):

    opening.py        path checks, the owner lock, connections, migrations
    connection.py     Database: one connection, one task at a time, errors as StoreError
    rows.py           statements, and rows <-> the engine's records
    reading.py        runs and replies read back, for the transcript and the archive
    rules.py          checks and errors shared with the in-memory fake
    transcript.py     SqliteTranscript: the TranscriptStore port
    surface_state.py  SqliteSurfaceState: the SurfaceState port
    archive.py        SqliteArchive: the Archive port, on a read-only connection
    sqlite.py         SqliteStore: opens the file and offers all three ports
"""

from .opening import BUSY_TIMEOUT_MS, MIGRATIONS_DIR, Migration, load_migrations, lock_path
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
from .sqlite import SqliteStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS_DIR",
    "RUN_STATUSES",
    "Migration",
    "SqliteStore",
    "check_count",
    "check_list_args",
    "check_participants",
    "check_reply",
    "duplicate_reply",
    "load_migrations",
    "lock_path",
    "unknown_run",
    "utc",
]
