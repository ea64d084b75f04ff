"""The store's three ports on PostgreSQL, through psycopg 3 (async).

The tables, the statements and most of the code are the SQLite store's (portable SQL: sql.py);
what is here is only what PostgreSQL does its own way:

    connection.py  PgDatabase: one connection, one task at a time, `?` as `%s`, errors as
                   StoreError with the URL's password masked; a lost connection is reopened
    opening.py     connecting, and the migrations under an advisory lock
    search.py      PgArchive: full-text search with tsvector and tsquery (003_search.postgres.sql)
    leases.py      PgLeases: claims (each picks its row FOR NO KEY UPDATE SKIP LOCKED),
                   renewals, releases; the fence itself is triggers (010_pg_fence.postgres.sql)
    notices.py     PgNotices: stop requests heard as they commit (LISTEN, a connection of its own)
    store.py       PostgresStore: the writer's and the reader's connections, all three ports

Pick the database and schema in the URL: `postgresql://user@host/db?options=-csearch_path%3Dname`
keeps a store in schema `name` (the tests give each test its own).
"""

from .store import PostgresStore

__all__ = ["PostgresStore"]
