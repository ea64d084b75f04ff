"""What `backrooms db copy` (copy.py) moves: the tables both stores have, in the order their
foreign keys need, each with the columns both have and its primary key, read from the databases
themselves (SQLite's PRAGMAs, PostgreSQL's information_schema), so a migration that adds a column
or a table is copied without a change here.

Left out: tables only one store has (SQLite's full-text index, whose PostgreSQL counterpart is a
generated column, as are any generated columns), the migrations' own record (each store keeps
its own), and what belongs to one process's lifetime: the text a driver is streaming right now
(`live_text`) and the table of live processes (`processes`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter

from ..errors import StoreError
from .sql import Session

PER_PROCESS = frozenset({"schema_migrations", "live_text", "processes"})
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # those both stores have, in the source's order
    key: tuple[str, ...]  # the primary key's columns

    @property
    def quoted(self) -> str:
        return quoted(self.name)

    @property
    def column_list(self) -> str:
        return ", ".join(quoted(c) for c in self.columns)

    def select(self) -> str:
        """A page of its rows in key order (LIMIT, OFFSET as parameters)."""
        order = ", ".join(quoted(c) for c in self.key)
        return f"SELECT {self.column_list} FROM {self.quoted} ORDER BY {order} LIMIT ? OFFSET ?"

    def insert(self) -> str:
        """One row's INSERT (rows.inserts makes it many rows)."""
        marks = ", ".join("?" * len(self.columns))
        return f"INSERT INTO {self.quoted} ({self.column_list}) VALUES ({marks})"


def quoted(name: str) -> str:
    """`name` as an SQL identifier. Names come from the databases' catalogues; anything but a
    plain lower-case name is refused rather than quoted cleverly."""
    if not _NAME.fullmatch(name):
        raise StoreError(f"cannot copy a table or column named {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class SqliteShape:
    """A SQLite store's tables: columns, primary keys, and what each table references."""

    columns: dict[str, tuple[str, ...]]
    keys: dict[str, tuple[str, ...]]
    references: dict[str, set[str]]


async def sqlite_shape(db: Session) -> SqliteShape:
    found = await db.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' "
        "ESCAPE '!' ORDER BY name"
    )
    shape = SqliteShape({}, {}, {})
    for name in [str(row[0]) for row in found]:
        if not _NAME.fullmatch(name):
            continue  # FTS5's shadow tables are plain names too; they are dropped by `common`
        info = list(await db.execute_fetchall(f"PRAGMA table_info({quoted(name)})"))
        shape.columns[name] = tuple(row["name"] for row in info)
        ranked = sorted((row["pk"], row["name"]) for row in info if row["pk"])
        shape.keys[name] = tuple(column for _, column in ranked)
        links = await db.execute_fetchall(f"PRAGMA foreign_key_list({quoted(name)})")
        shape.references[name] = {row["table"] for row in links}
    return shape


async def postgres_columns(db: Session) -> dict[str, tuple[str, ...]]:
    """The columns a copy may write, by table, in the store's schema (not generated ones)."""
    found = await db.execute_fetchall(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_generated = 'NEVER' "
        "ORDER BY table_name, ordinal_position"
    )
    columns: dict[str, list[str]] = {}
    for row in found:
        columns.setdefault(str(row[0]), []).append(str(row[1]))
    return {table: tuple(names) for table, names in columns.items()}


def common(source: SqliteShape, target: dict[str, tuple[str, ...]]) -> list[Table]:
    """The tables to copy, each after the tables it references."""
    names = sorted((set(source.columns) & set(target)) - PER_PROCESS)
    graph = TopologicalSorter({n: sorted(source.references[n] & set(names)) for n in names})
    tables = []
    for name in graph.static_order():
        wanted = set(target[name])
        columns = tuple(c for c in source.columns[name] if c in wanted)
        key = source.keys[name]
        if not key or not set(key) <= set(columns):
            raise StoreError(f"cannot copy table {name}: it has no primary key both stores share")
        tables.append(Table(name, columns, key))
    return tables


async def identity_columns(db: Session, tables: Sequence[Table]) -> list[tuple[str, str]]:
    """(table, column) of every PostgreSQL column that numbers new rows, in the copied tables."""
    found = await db.execute_fetchall(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND (is_identity = 'YES' "
        "OR position('nextval(' in coalesce(column_default, '')) = 1) "
        "ORDER BY table_name, column_name"
    )
    copied = {t.name for t in tables}
    return [(str(r[0]), str(r[1])) for r in found if r[0] in copied]


async def continue_numbering(db: Session, table: str, column: str) -> int:
    """Set the sequence behind `table.column` so the next new row gets one more than the
    largest copied value (1 on an empty table): what that next value is."""
    found = await db.execute_fetchall(
        f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX({quoted(column)}), 0) + 1, "
        f"false) FROM {quoted(table)}",
        (table, column),
    )
    return int(next(iter(found))[0])
