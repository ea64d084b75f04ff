"""SQLite transcripts through aiosqlite: the Store port, plus chat posts and per-run surface data.

One process owns a store file (ARCHITECTURE.md, "One owner per store"): `open(owner=True)` holds
an exclusive `flock` on `<db>.lock` for the store's lifetime. The kernel drops it when the process
dies, even by SIGKILL, so the next start can resume the runs left `running`. A viewer
(`owner=False`, such as `backrooms runs`) takes no lock. It may create the schema of a brand-new,
empty file (so a viewer started first shows "no runs" instead of failing), but it never upgrades
an existing schema: that would change tables under a running owner that does not know the layout.

Schema changes are numbered SQL files in `migrations/`, each applied in its own transaction at open
and recorded in `schema_migrations`. The SQL stays portable: a PostgreSQL store will follow.
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
