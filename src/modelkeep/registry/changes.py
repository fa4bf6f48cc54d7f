"""Whether a registry changed since a moment: what lets a server keep an answer
(a resolved alias, a verified token) for as long as it is still right, and no longer."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelkeep.registry.registry import Registry

# The key in meta of PostgreSQL's count of changes (see ``counting_statements``).
CHANGES_KEY = "changes"
_READ_COUNT = f"SELECT value FROM meta WHERE key = '{CHANGES_KEY}'"  # noqa: S608 - a constant

# The registry's tables as of schema 12, each of whose writes moves PostgreSQL's count.
# A migration that adds a table adds its trigger with ``counting_statements([table])``
# (a test checks that every table has one).
COUNTED_TABLES = (
    "models", "versions", "version_parents", "version_identities", "datasets", "refs",
    "deployments", "replicas", "monitor_reports", "monitor_schedules", "labels",
    "policies", "events", "tokens",
)  # fmt: skip
COUNT_TRIGGER = "counts_changes"  # the name of each table's trigger
_BUMP = (
    f"INSERT INTO meta (key, value) VALUES ('{CHANGES_KEY}', '1') ON CONFLICT (key) "  # noqa: S608 - a constant
    "DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)"
)


def counting_statements(tables: Sequence[str], *, meta: bool = False) -> list[str]:
    """PostgreSQL DDL that has every write to ``tables`` (and with ``meta``, to meta's
    rows but the count's own: settings live there) move the count: a trigger per
    statement, not per row, since one move per change is all a reader needs. The count
    moves inside the writing transaction, so it is seen when, and only if, that
    commits."""
    statements = [
        "CREATE OR REPLACE FUNCTION modelkeep_count_change() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$"
    ]
    for table in tables:
        statements.append(
            f"CREATE TRIGGER {COUNT_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION modelkeep_count_change()"
        )
    if meta:
        for verb, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            statements.append(
                f"CREATE TRIGGER {COUNT_TRIGGER}_{verb.lower()} AFTER {verb} ON meta "
                f"FOR EACH ROW WHEN ({row}.key <> '{CHANGES_KEY}') "
                "EXECUTE FUNCTION modelkeep_count_change()"
            )
    return statements


class _Mark:
    """What both marks hold: a connection of their own, used by one caller at a time
    (an event loop's thread, a test's), closed by ``close()`` or, when the mark is
    dropped without it, by a finalizer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _opened(self, conn: Any) -> Any:
        """``conn`` as this mark's connection, closed with the mark."""
        self._conn = conn
        self._finalizer = weakref.finalize(self, _close_quietly, conn)
        return conn

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if conn is not None:
            _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection: nothing more to do
        conn.close()


class ChangeMark(_Mark):
    """A mark of a SQLite registry file's content, cheap enough to read per request
    (about 2 µs): it differs after any commit made by any other connection, in this
    process or another (SQLite's ``PRAGMA data_version``, read on a connection of its
    own that never writes), or when the file is replaced (its inode). An answer derived
    from the registry under one mark is still right while the mark is the same."""

    def __init__(self, file: str) -> None:
        self.file = file
        # The connection is used from whichever thread asks (an event loop's, a
        # test's): one at a time.
        super().__init__()
        self._inode = -1

    @classmethod
    def of(cls, file: str | None) -> ChangeMark | None:
        """The mark of the registry in ``file`` (``Registry.file``); None where there
        is none to read: PostgreSQL, an in-memory registry."""
        return None if file is None else cls(file)

    def __call__(self) -> tuple[int, int] | None:
        """The mark now; None when it cannot be read (then nothing is known unchanged)."""
        with self._lock:
            try:
                inode = os.stat(self.file).st_ino
                if self._conn is None or inode != self._inode:
                    self._close()
                    # mode=rw, not ro: a read-only connection cannot open a WAL file
                    # whose -shm is not there yet; this one never writes all the same.
                    # timeout 0: a busy file answers None at once instead of stalling
                    # the caller (an event loop); None only costs a cache miss.
                    uri = f"file:{urllib.parse.quote(self.file)}?mode=rw"
                    self._opened(
                        sqlite3.connect(
                            uri, uri=True, timeout=0, check_same_thread=False, isolation_level=None
                        )
                    )
                    self._inode = inode
                return inode, int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except (OSError, sqlite3.Error):
                self._close()
                return None


class CountMark(_Mark):
    """PostgreSQL's mark: the registry's count of changes (the ``meta`` row
    ``CHANGES_KEY``, which triggers move on every statement that writes a registry
    table, whoever runs it), read per request on a connection of its own — one round
    trip, a fraction of a millisecond on a near server. Exact as SQLite's is: a change
    committed before the read is seen by it, one made by hand in SQL included."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        # libpq's own URL (no SQLAlchemy driver name); the password, if any, as
        # PGPASSWORD or ~/.pgpass give it, as for the registry's own connections.
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        super().__init__()

    def __call__(self) -> tuple[int, int] | None:
        """The mark now; None when it cannot be read (then nothing is known unchanged)."""
        import psycopg

        with self._lock:
            try:
                if self._conn is None:
                    # Dropped without close() (an app never started, or never shut
                    # down), the mark still closes it, not the garbage collector.
                    self._opened(
                        psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2)
                    )
                row = self._conn.execute(_READ_COUNT).fetchone()
                return 0, int(row[0]) if row is not None else 0
            except (psycopg.Error, OSError, ValueError):
                self._close()
                return None


def mark_of(registry: Registry) -> ChangeMark | CountMark | None:
    """The change mark of ``registry``: SQLite's data_version, PostgreSQL's count of
    write transactions; None for one in memory."""
    if registry.file is not None:
        return ChangeMark(registry.file)
    if registry.db.postgres:
        return CountMark(registry.db.url)
    return None
