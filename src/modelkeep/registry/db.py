"""Connections and transactions of the registry: SQLite through the standard library's
``sqlite3``, any other engine through SQLAlchemy.

Why SQLite does not go through SQLAlchemy: importing SQLAlchemy costs about 0.3 s, more
than a whole ``modelkeep log`` may take, and a person types such commands many times a
day. The registry's statements are therefore plain SQL text with named parameters
(``:name``), which ``sqlite3`` and SQLAlchemy's ``text()`` both bind — one statement,
every engine, never a value spliced into the text. SQLAlchemy is still imported when a
caller needs it: Alembic's migrations, the search compiler (``Tx.sa``), and every engine
other than SQLite, where its connection pool is worth its import.

Values cross in one encoding: timestamps are stored on SQLite as SQLAlchemy stores them
(``YYYY-MM-DD HH:MM:SS.ffffff``, UTC, naive), JSON as text; ``decode_time`` and
``decode_json`` read either what ``sqlite3`` hands back (text) or what SQLAlchemy does
(datetimes, documents).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from modelkeep.errors import (
    Hint,
    ModelkeepError,
    RegistryBusyError,
    RegistryDamagedError,
    RegistryError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from sqlalchemy import Connection, Engine

# PostgreSQL advisory lock keys (any 64-bit numbers, the same on every machine): the
# registry's writers take turns on one; the store lock is the other.
WRITE_LOCK = 0x6D6B_5752  # "mkWR"
STORE_LOCK = 0x6D6B_5354  # "mkST"

# A LIMIT that is no limit: both engines take it, neither takes NULL the same way.
NO_LIMIT = 2**62

# What SQLite says of a file that is not (or no longer) a whole database. A table
# that is missing is damage too: every schema version has every table it reads.
_DAMAGE = ("malformed", "not a database", "no such table", "no such column", "corrupt")


class Many:
    """A list bound into ``IN (:name)``: one placeholder per item."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)


class IntegrityFailure(RegistryError):
    """A constraint said no (a unique number or name taken meanwhile): the caller's to
    handle, usually as a lost race."""


def decode_time(value: datetime | str) -> datetime:
    """A stored timestamp as an aware UTC datetime (everything stored is UTC)."""
    if isinstance(value, str):
        # Stored naive, as UTC: parsed with its offset in one call.
        return datetime.fromisoformat(value + "+00:00" if len(value) <= 26 else value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def decode_json(value: Any) -> Any:
    """A JSON column's document: orjson parses it several times faster (most of the
    time of listing many versions), the standard library what orjson refuses (NaN)."""
    if not isinstance(value, (str, bytes)):
        return value  # already a document (SQLAlchemy's JSON type), or NULL
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def _encode_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _encode_time(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return value


def sqlite_url(path: str) -> str:
    """The SQLAlchemy URL of a SQLite file (quoted: a folder named "a?b" stays a path)."""
    return "sqlite:///" + urllib.parse.quote(path, safe="/ ")


def sqlite_file(url: str) -> str | None:
    """The database file a SQLite URL names (None: memory, or not SQLite)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    path = urllib.parse.unquote(rest[1:]) if rest.startswith("/") else ""
    return None if path in ("", ":memory:") else path


def is_sqlite(url: str) -> bool:
    return url.partition("://")[0].split("+")[0] == "sqlite"


def without_password(url: str, mask: str | None = None) -> str:
    """``url`` with its password left out, or replaced by ``mask`` (``***`` where an
    error names it, so that a reader sees one was given)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    if mask is not None:
        user = f"{user}:{mask}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def _where(url: str, file: str | None) -> str:
    # Named in errors: never with its password.
    return file if file is not None else without_password(url, "***")


def read_only_file(path: str) -> bool:
    """Whether this process may only read the database file at ``path`` (a writer
    needs the file and its folder, where SQLite keeps the -wal and -shm files)."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.exists(path) and not (
        os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)
    )


def failure(exc: BaseException, where: str) -> ModelkeepError:
    """The database itself failed — damaged, locked, or the disk or permissions: one
    line, no trace, and advice that loses nothing."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    reason = " ".join(str(orig).split())
    if type(orig).__module__.startswith("psycopg"):
        return _server_failure(orig, reason, where)
    if isinstance(orig, sqlite3.IntegrityError) or type(orig).__name__ == "UniqueViolation":
        return IntegrityFailure(reason)
    if "locked" in reason:
        return RegistryBusyError(
            "the registry database stayed locked by another process for a minute; "
            "retry when it has finished"
        )
    operational = isinstance(orig, sqlite3.OperationalError) or "Operational" in type(orig).__name__
    if not operational or any(d in reason.lower() for d in _DAMAGE):
        return RegistryDamagedError(
            f"the registry {where} is damaged ({reason}); restore it from a backup, or "
            "salvage what can still be read into a new registry (the damaged file is kept "
            "beside it)",
            hint=Hint(
                cli="`modelkeep fsck --repair` salvages what can still be read",
                api="Repo.repair() salvages what can still be read",
            ),
        )
    return RegistryError(
        f"the registry {where} failed: {reason}; check the disk and its permissions"
    )


def _server_failure(orig: BaseException, reason: str, where: str) -> ModelkeepError:
    """A database server's error (PostgreSQL): unreachable, refused, or a failure."""
    from modelkeep.errors import UnreachableError

    name = type(orig).__name__
    lowered = reason.lower()
    if name == "UniqueViolation":
        return IntegrityFailure(reason)
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return UnreachableError(
            f"the registry database {where} refused the credentials; set the password in "
            "PGPASSWORD or ~/.pgpass (it is never stored in the repository)"
        )
    if "database" in lowered and "does not exist" in lowered:
        return UnreachableError(
            f"the registry database {where} does not exist on its server; create it first "
            "(createdb), then create the repository in it"
        )
    if name in ("OperationalError", "InterfaceError") or _transient(orig):
        detail = reason.split(": ")[-1] if ": " in reason else reason
        return UnreachableError(
            f"cannot reach the registry database {where} ({detail}); check that the server "
            "is up and the host, port and user in the URL"
        )
    if "cannot contain nul" in lowered:
        # Text PostgreSQL cannot hold (SQLite can): the input is at fault, not the server.
        from modelkeep.errors import UsageError

        return UsageError(
            "a text given contains a NUL character (\\x00), which the registry cannot "
            "store or look up: remove it"
        )
    if name == "UndefinedTable":
        return RegistryDamagedError(
            f"the registry database {where} lacks modelkeep's tables ({reason}); it is not "
            "a modelkeep registry, or it was damaged: restore it from a backup"
        )
    return RegistryError(f"the registry {where} failed: {reason}")


_ROW_TYPES: dict[tuple[str, ...], type[Any]] = {}


def _row_type(names: tuple[str, ...]) -> type[Any]:
    """A row class with attribute access (``row.number``), made once per column list."""
    cls = _ROW_TYPES.get(names)
    if cls is None:
        cls = _ROW_TYPES[names] = collections.namedtuple("Row", names, rename=True)
    return cls


class Tx:
    """One transaction: statements as SQL text with named parameters."""

    dialect: str

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        raise NotImplementedError

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        raise NotImplementedError

    @property
    def sa(self) -> Connection:
        """This transaction as a SQLAlchemy connection, for statements SQLAlchemy builds
        (the search compiler); imports SQLAlchemy."""
        raise NotImplementedError

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(sql, params)
        return found[0] if found else None

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(sql, params)
        if len(found) != 1:
            raise RegistryError(f"expected one row, got {len(found)}: {sql.split()[0]}")
        return found[0]

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(sql, params)
        return None if row is None else row[0]

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run an INSERT … RETURNING id; the new row's id."""
        return int(self.one(sql, params)[0])


class _SqliteTx(Tx):
    dialect = "sqlite"

    def __init__(self, db: Database, conn: sqlite3.Connection) -> None:
        self._db = db
        self._conn = conn
        self._sa: Connection | None = None

    def close(self) -> None:
        if self._sa is not None:
            self._sa.close()
            self._sa = None

    def _bind(self, sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        bound: dict[str, Any] = {}
        for key, value in (params or {}).items():
            if isinstance(value, Many):
                names = [f"{key}_{i}" for i in range(len(value.items))]
                # Our own constant text grows a placeholder per item; values stay bound.
                sql = sql.replace(f":{key})", ", ".join(f":{n}" for n in names) + ")")
                bound.update(zip(names, value.items, strict=True))
            else:
                bound[key] = _sqlite_value(value)
        return sql, bound

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        sql, bound = self._bind(sql, params)
        cur = self._conn.execute(sql, bound)
        found = cur.fetchall()
        if not found or cur.description is None:
            return found
        make = _row_type(tuple(d[0] for d in cur.description))._make
        return [make(r) for r in found]

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        sql, bound = self._bind(sql, params)
        return self._conn.execute(sql, bound).rowcount

    @property
    def sa(self) -> Connection:
        if self._sa is None:
            # The bridge engine lends this thread's connection: this transaction's.
            self._sa = self._db.engine.connect()
        return self._sa


class _SqlAlchemyTx(Tx):
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    def _statement(self, sql: str, params: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        from sqlalchemy import JSON, bindparam, text

        bound: dict[str, Any] = {}
        binds: list[Any] = []
        for key, value in (params or {}).items():
            if isinstance(value, Many):
                # An expanding parameter renders its own parentheses: IN (:ids) would
                # become a row value, IN ((…)).
                sql = sql.replace(f"({':' + key})", f":{key}")
                binds.append(bindparam(key, expanding=True))
                bound[key] = value.items
            else:
                if isinstance(value, (dict, list, tuple)):
                    binds.append(bindparam(key, type_=JSON))
                elif isinstance(value, datetime) and value.tzinfo is not None:
                    # Stored naive, as UTC, on every engine.
                    value = value.astimezone(UTC).replace(tzinfo=None)
                bound[key] = value
        stmt = text(sql)
        return (stmt.bindparams(*binds) if binds else stmt), bound

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        stmt, bound = self._statement(sql, params)
        return list(self._conn.execute(stmt, bound))

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        stmt, bound = self._statement(sql, params)
        return int(self._conn.execute(stmt, bound).rowcount)

    @property
    def sa(self) -> Connection:
        return self._conn


class _Borrowed:
    """A sqlite3 connection lent to SQLAlchemy, which must not close it (it belongs to
    the transaction that lent it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def close(self) -> None:
        pass

    def rollback(self) -> None:
        pass  # the lending transaction commits or rolls back, not SQLAlchemy

    def commit(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_conn":
            object.__setattr__(self, name, value)
        elif name != "isolation_level":
            # Setting it, even to None as it already is, commits an open transaction:
            # ours stays None (the lending transaction issues BEGIN and COMMIT itself).
            setattr(self._conn, name, value)


class _Local(threading.local):
    conn: sqlite3.Connection | None = None
    pid: int = 0
    depth: int = 0
    writing: bool = False


class _SaLocal(threading.local):
    tx: _SqlAlchemyTx | None = None
    pid: int = 0
    depth: int = 0
    writing: bool = False


def _create_engine(url: str) -> Engine:
    from sqlalchemy import create_engine

    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        # psycopg 3 (SQLAlchemy would pick psycopg2 for a bare postgresql://).
        return create_engine(
            f"postgresql+psycopg://{rest}",
            # No ping on every checkout (a round trip on each transaction): a writer's
            # first statement, its lock, is the ping, and a reader pings a connection
            # that sat idle (Database._begin); either is retried on a new connection if
            # the old one was dropped. The pool is bounded, and every connection goes
            # back to it (or is closed with the engine).
            pool_pre_ping=False,
            pool_size=4,
            max_overflow=8,
            pool_timeout=60,
            pool_recycle=1800,
            connect_args={
                "connect_timeout": 10,
                "application_name": "modelkeep",
                # Timestamps are stored naive, as UTC, whatever the server's zone.
                "options": "-c timezone=UTC",
            },
            json_deserializer=decode_json,
        )
    return create_engine(url, pool_pre_ping=True)


# A connection idle longer than this is pinged before a reader uses it (the server
# may have dropped it meanwhile: a restart, an idle timeout).
_IDLE_PING = 5.0


def _idle_from_now(engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "checkin")
    @event.listens_for(engine, "connect")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()


def _transient(exc: BaseException) -> bool:
    """A failure that a new connection may not meet: dropped, refused for now, reset."""
    orig = getattr(exc, "orig", None) or exc
    name = type(orig).__name__
    reason = str(orig).lower()
    if name in ("SerializationFailure", "DeadlockDetected", "AdminShutdown"):
        return True
    return getattr(exc, "connection_invalidated", False) or any(
        s in reason
        for s in ("server closed the connection", "connection refused", "terminating connection",
                  "connection reset", "could not receive data", "the database system is")
    )  # fmt: skip


class Database:
    """Where the registry's rows live, and how a transaction is had on them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.memory = self.sqlite and sqlite_file(url) is None
        self.file = sqlite_file(url) if self.sqlite else None
        self.where = _where(url, self.file)
        self.read_only = self.file is not None and read_only_file(self.file)
        self._local = _Local()
        self._lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []
        # Memory: one connection shared by all threads (each connection would see its
        # own database), its transactions taken in turn.
        self._shared: sqlite3.Connection | None = None
        self._shared_depth = 0
        self._sa_engine: Engine | None = None
        self._sa_pid = 0
        self._sa_local = _SaLocal()
        self._bridge: Engine | None = None
        self.postgres = url.partition("://")[0].split("+")[0] in ("postgresql", "postgres")

    # -- SQLite connections -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.memory:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        elif self.read_only:
            # A reader who may not write can still open a WAL database when its -shm
            # file exists (SQLite then reads it without writing); when it does not, no
            # writer is connected, and the file is read as immutable.
            path = self.file or ""
            idle = not os.path.exists(path + "-shm") and not os.path.exists(path + "-wal")
            uri = f"file:{urllib.parse.quote(path)}?mode=ro" + ("&immutable=1" if idle else "")
            conn = sqlite3.connect(
                uri, uri=True, timeout=60, check_same_thread=False, isolation_level=None
            )
        else:
            conn = sqlite3.connect(
                self.file or "", timeout=60, check_same_thread=False, isolation_level=None
            )
        # No journal_mode here: WAL is set once, by Registry.create(), and stays with the
        # file; setting it on every open would write a header into an empty or foreign file.
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
        except sqlite3.Error:
            conn.close()  # a damaged file: keep nothing of it open
            raise
        with self._lock:
            self._all.append(conn)
        return conn

    def _thread_conn(self) -> sqlite3.Connection:
        if self.memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared
        local = self._local
        if local.conn is None or local.pid != os.getpid():
            # A connection inherited across fork() is not safe to use: open our own.
            local.conn, local.pid, local.depth = self._connect(), os.getpid(), 0
        return local.conn

    @contextlib.contextmanager
    def _sqlite_tx(self, write: bool) -> Iterator[Tx]:
        with self._lock if self.memory else contextlib.nullcontext():
            try:
                conn = self._thread_conn()
            except sqlite3.Error as exc:
                raise failure(exc, self.where) from None
            local = self._local
            if local.depth:
                # Inside this thread's open transaction: join it (it sees what it wrote).
                if write and not local.writing:
                    raise RegistryError("a write inside a read transaction of the registry")
                local.depth += 1
                joined = _SqliteTx(self, conn)
                try:
                    yield joined
                finally:
                    joined.close()
                    local.depth -= 1
                return
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise self._failed(conn, exc) from None
            local.depth, local.writing = 1, write
            tx = _SqliteTx(self, conn)
            try:
                yield tx
            except BaseException as exc:
                tx.close()
                local.depth = 0
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("sqlalchemy"):
                    raise self._failed(conn, exc) from None
                raise
            tx.close()
            local.depth = 0
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise self._failed(conn, exc) from None

    def _failed(self, conn: sqlite3.Connection, exc: BaseException) -> ModelkeepError:
        """The error to raise for ``exc``; a connection that met more than a constraint
        is closed (as SQLAlchemy invalidates one): kept open on a damaged file, it would
        keep that file's -wal and -shm beside it."""
        error = failure(exc, self.where)
        if not isinstance(error, IntegrityFailure) and not self.memory:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if self._local.conn is conn:
                self._local.conn = None
        return error

    # -- SQLAlchemy -----------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on this database (imports SQLAlchemy). On SQLite it
        lends this thread's connection, in autocommit unless inside a transaction."""
        if not self.sqlite:
            if self._sa_engine is not None and self._sa_pid != os.getpid():
                # A pool inherited across fork() holds the parent's sockets: drop them
                # without closing them under the parent's feet.
                self._sa_engine.dispose(close=False)
                self._sa_engine = None
            if self._sa_engine is None:
                self._sa_engine = _create_engine(self.url)
                self._sa_pid = os.getpid()
                _idle_from_now(self._sa_engine)
                # A registry dropped without close() still hands its pooled connections
                # back to the server (closed, not left to the garbage collector).
                weakref.finalize(self, self._sa_engine.dispose)
            return self._sa_engine
        if self._bridge is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._bridge = create_engine(
                "sqlite+pysqlite://",
                creator=lambda: _Borrowed(self._thread_conn()),
                poolclass=NullPool,
                pool_reset_on_return=None,
                isolation_level="AUTOCOMMIT",
                json_deserializer=decode_json,
            )
        return self._bridge

    @contextlib.contextmanager
    def _sqlalchemy_tx(self, write: bool) -> Iterator[Tx]:
        from sqlalchemy.exc import DBAPIError

        local = self._sa_local
        if local.tx is not None and local.pid == os.getpid():
            # Inside this thread's open transaction: join it, as on SQLite.
            if write and not local.writing:
                raise RegistryError("a write inside a read transaction of the registry")
            local.depth += 1
            try:
                yield local.tx
            finally:
                local.depth -= 1
            return
        try:
            conn = self._begin(write)
        except DBAPIError as exc:
            raise failure(exc, self.where) from None
        tx = _SqlAlchemyTx(conn)
        local.tx, local.depth, local.writing, local.pid = tx, 1, write, os.getpid()
        try:
            try:
                yield tx
            finally:
                local.tx, local.depth = None, 0
            conn.commit()
        except DBAPIError as exc:
            raise failure(exc, self.where) from None
        finally:
            conn.close()  # back to the pool (rolled back there if not committed)

    def _begin(self, write: bool) -> Connection:
        """A pooled connection in a new transaction; a writer also holds the registry's
        write lock."""
        from sqlalchemy import text

        def start(conn: Connection) -> None:
            conn.begin()
            if write and self.postgres:
                # Writers take turns, as SQLite's BEGIN IMMEDIATE makes them: version
                # numbers are then allocated by one writer at a time, on every machine,
                # with no race to lose and nothing to retry. Released at commit.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
            elif time.monotonic() - conn.connection.info.get("idle_since", 0.0) > _IDLE_PING:
                conn.execute(text("SELECT 1"))

        return self._checkout(start)

    def _checkout(
        self, start: Callable[[Connection], object], autocommit: bool = False
    ) -> Connection:
        """A pooled connection on which ``start`` (its first statements) ran. A dropped
        connection or a refused connect is retried on a new one: nothing was done yet,
        so retrying is safe; anything after this is not."""
        from sqlalchemy.exc import DBAPIError

        for attempt in range(4):
            conn: Connection | None = None
            try:
                conn = self.engine.connect()
                if autocommit:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                start(conn)
                return conn
            except DBAPIError as exc:
                if conn is not None:
                    conn.invalidate()  # a broken connection must not go back to the pool
                    conn.close()
                if not _transient(exc) or attempt == 3:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def advisory_lock(self, exclusive: bool) -> Iterator[None]:
        """The store lock held in PostgreSQL (a session-level advisory lock on a
        connection kept for it), so that every machine sharing the repository sees it:
        writers share it, gc and upgrade hold it alone."""
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        mode = "" if exclusive else "_shared"
        lock = text(f"SELECT pg_advisory_lock{mode}(:key)")
        try:
            conn = self._checkout(lambda c: c.execute(lock, {"key": STORE_LOCK}), True)
        except DBAPIError as exc:
            raise failure(exc, self.where) from None
        try:
            yield
        finally:
            with contextlib.suppress(DBAPIError):
                conn.execute(text(f"SELECT pg_advisory_unlock{mode}(:key)"), {"key": STORE_LOCK})
            conn.close()

    # -- transactions -----------------------------------------------------------------

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._sqlite_tx(False) if self.sqlite else self._sqlalchemy_tx(False)

    def write(self) -> contextlib.AbstractContextManager[Tx]:
        return self._sqlite_tx(True) if self.sqlite else self._sqlalchemy_tx(True)

    def raw(self, run: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``run`` on a SQLite connection outside any transaction (journal mode)."""
        run(self._thread_conn())

    def dispose(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
            self._shared = None
        self._local = _Local()
        self._sa_local = _SaLocal()
        if self._sa_engine is not None:
            self._sa_engine.dispose()
            self._sa_engine = None
        self._bridge = None
