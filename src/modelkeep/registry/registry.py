"""The registry: models, versions, refs and the event log, in SQL.

Every ref move goes through ``move_ref``: a compare-and-swap that also appends
the event. That single choke point is what makes history and rollback trustworthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    JSON,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.functions import FunctionElement

from modelkeep.errors import (
    ConflictError,
    Hint,
    ModelNotFoundError,
    NotFoundError,
    ReadOnlyRepositoryError,
    RefExistsError,
    RefMovedError,
    RefNotFoundError,
    RegistryBusyError,
    RegistryDamagedError,
    RegistryError,
    RepositoryFormatError,
    VersionNotFoundError,
)
from modelkeep.registry import schema as t
from modelkeep.registry.query import Order, Where, order_sql, to_sql
from modelkeep.registry.records import (
    CodeRef,
    DatasetRef,
    Deployment,
    Event,
    ModelInfo,
    Ref,
    Schedule,
    Version,
    period_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy import Connection, CursorResult, Engine, Row, Select

REF_KINDS = ("branch", "alias", "tag")
# Event actions that concern a ref without moving it.
NON_MOVES = ("deploy.", "monitor.", "policy.")

# Statements run on every revision lookup (a load, a serve poll), built once: building a
# select, and the alias of a table above all, costs more than running it on SQLite.
_MODEL_BY_NAME = select(t.models).where(t.models.c.name == bindparam("name"))
_REF_BY_NAME = select(t.refs).where(
    t.refs.c.model_id == bindparam("model_id"), t.refs.c.name == bindparam("name")
)
# A ref (or, given no ref name, the model's default branch) and its version in one query.
_VERSION_AT_REF = (
    select(t.versions, t.refs.c.kind.label("ref_kind"))
    .select_from(
        t.models.join(t.refs, t.refs.c.model_id == t.models.c.id).join(
            t.versions, t.versions.c.id == t.refs.c.version_id
        )
    )
    .where(
        t.models.c.name == bindparam("model"),
        t.refs.c.name == func.coalesce(bindparam("ref"), t.models.c.default_branch),
    )
)
_parent = t.versions.alias("parent")
_PARENTS_OF = (
    select(t.version_parents.c.version_id, _parent.c.number)
    .select_from(t.version_parents.join(_parent, _parent.c.id == t.version_parents.c.parent_id))
    .where(t.version_parents.c.version_id.in_(bindparam("ids", expanding=True)))
    .order_by(t.version_parents.c.version_id, t.version_parents.c.position)
)
# A model's versions newest first, below a number or not: all of them, or a page.
_VERSIONS_ALL = (
    select(t.versions)
    .where(
        t.versions.c.model_id == bindparam("model_id"),
        or_(bindparam("before").is_(None), t.versions.c.number < bindparam("before")),
    )
    .order_by(t.versions.c.number.desc())
)
_VERSIONS_PAGE = _VERSIONS_ALL.limit(bindparam("limit"))
_LABELS_OF = (
    select(t.labels.c.version_id, t.labels.c.key, t.labels.c.value)
    .where(t.labels.c.version_id.in_(bindparam("ids", expanding=True)))
    .order_by(t.labels.c.version_id, t.labels.c.key)
)


@dataclasses.dataclass
class _Links:
    """What versions link to, by version id: read for many versions at once."""

    parents: dict[int, list[int]]
    datasets: dict[int, list[DatasetRef]]
    labels: dict[int, dict[str, str]]


_DATASETS_OF = (
    select(t.datasets)
    .where(t.datasets.c.version_id.in_(bindparam("ids", expanding=True)))
    .order_by(t.datasets.c.id)
)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


# What SQLite says of a file that is not (or no longer) a whole database. A table
# that is missing is damage too: every schema version has every table it reads.
_DAMAGE = ("malformed", "not a database", "no such table", "no such column", "corrupt")


def _db_error(exc: DatabaseError, where: str) -> RegistryError:
    """The database itself failed — damaged, or the disk or permissions: one line, no
    trace, and advice that loses nothing."""
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else str(exc)
    if not isinstance(exc, OperationalError) or any(d in reason.lower() for d in _DAMAGE):
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


def _other_kind(model: str, kind: str, entity: str) -> RefExistsError:
    return RefExistsError(
        f"{model!r} is {_a(kind)}, not {_a(entity)}: models and datasets share one "
        "namespace; choose another name"
    )


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _json_loads(text: str | bytes) -> Any:
    """A JSON column's document: orjson parses it several times faster (most of the
    time of listing many versions), the standard library what orjson refuses (NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _read_only(path: str) -> bool:
    """Whether this process may only read the database file at ``path`` (a writer
    needs the file and its folder, where SQLite keeps the -wal and -shm files)."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.exists(path) and not (
        os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)
    )


def _sqlite_engine(url: str, read_only: bool) -> Engine:
    if ":memory:" in url:
        # One connection shared by all, or every connection would see its own database.
        engine = create_engine(url, poolclass=StaticPool)
    elif read_only:
        # A reader who may not write can still open a WAL database when its -shm file
        # exists (SQLite then reads it without writing); when it does not, no writer is
        # connected, and the file is read as immutable.
        path = make_url(url).database or ""
        idle = not os.path.exists(path + "-shm") and not os.path.exists(path + "-wal")
        uri = f"file:{urllib.parse.quote(path)}?mode=ro" + ("&immutable=1" if idle else "")
        engine = create_engine(
            "sqlite+pysqlite:///" + uri.replace("?", "?uri=true&", 1),
            connect_args={"timeout": 60},
        )
    else:
        engine = create_engine(
            url, connect_args={"timeout": 60}, json_deserializer=_json_loads
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (see below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # No journal_mode here: WAL is set once, by create(), and stays with the file;
        # setting it on every open would write a header into an empty or foreign file.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later
        # upgrades can deadlock against another writer and fail instead of waiting.
        write = conn.get_execution_options().get("modelkeep_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Registry:
    """Metadata of one repository, behind SQLAlchemy."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        file = parsed.database if sqlite and parsed.database not in (None, "", ":memory:") else None
        self.file = file  # the SQLite database file, if there is one
        # Named in errors: the file a user can restore, or the URL without its password.
        self.where = file or parsed.render_as_string(hide_password=True)
        self.read_only = file is not None and _read_only(file)
        self.engine = _sqlite_engine(url, self.read_only) if sqlite else create_engine(url)

    # -- transactions -------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse, before anything is written, a change by a user who may only read."""
        if self.read_only:
            raise ReadOnlyRepositoryError(
                f"this changes the repository, and you may only read it ({self.where} or "
                "its folder is not writable for you); run it as a user who can write there"
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        self.check_writable()
        try:
            with self.engine.connect() as conn:
                conn.execution_options(modelkeep_write=True)
                with conn.begin():
                    yield conn
        except IntegrityError:
            raise  # a constraint said no: the caller's to handle (a lost race)
        except OperationalError as exc:
            if "locked" in str(exc):
                raise RegistryBusyError(
                    "the registry database stayed locked by another process for a minute; "
                    "retry when it has finished"
                ) from None
            raise _db_error(exc, self.where) from None
        except DatabaseError as exc:
            raise _db_error(exc, self.where) from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DatabaseError as exc:
            raise _db_error(exc, self.where) from None

    # -- schema -------------------------------------------------------------------

    def create(self) -> None:
        """Create the schema in an empty database (through the migrations), in WAL mode
        (readers never wait for a writer); the mode stays with the file."""
        if self.file is not None:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA journal_mode=WAL")  # outside a transaction, as it must
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema up to date with Alembic (imported only when needed)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def check_schema(self) -> None:
        # Damage and failures come out of _read as they are: the advice to re-create
        # the repository that a missing table once got would throw every version away.
        with self._read() as conn:
            row = conn.execute(
                select(t.meta.c.value).where(t.meta.c.key == "schema_version")
            ).first()
        raw = row[0] if row else "0"
        try:
            found = int(raw)
        except ValueError:
            raise RegistryDamagedError(
                f"the registry {self.where} is damaged (its schema_version {raw!r} is not a "
                "number); restore it from a backup, or salvage what can still be read",
                hint=Hint(
                    cli="`modelkeep fsck --repair` salvages what can still be read",
                    api="Repo.repair() salvages what can still be read",
                ),
            ) from None
        if found < t.SCHEMA_VERSION and self.read_only:
            raise RepositoryFormatError(
                f"the registry {self.where} has schema {found}, older than this modelkeep's "
                f"({t.SCHEMA_VERSION}), and you may only read it: someone who can write the "
                "repository must open it once with this release, which upgrades it"
            )
        if found < t.SCHEMA_VERSION:
            self.migrate()
        elif found > t.SCHEMA_VERSION:
            raise RepositoryFormatError(
                f"this repository uses registry schema {found}, newer than this modelkeep "
                f"understands ({t.SCHEMA_VERSION}); upgrade with `pip install -U modelkeep`"
            )

    def integrity_problems(self) -> list[str]:
        """What SQLite's own check finds wrong with the database file (empty when it
        is sound, and on engines that keep their own)."""
        if self.file is None:
            return []
        try:
            with self._read() as conn:
                found = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(20)")]
        except RegistryDamagedError as exc:
            return [f"registry: {exc}"]
        return [] if found == ["ok"] else [f"registry: {self.where}: {f}" for f in found]

    # -- models -------------------------------------------------------------------

    def check_entity(self, model: str, entity: str) -> None:
        """Refuse, before anything is stored, a version of ``entity`` ("model" or
        "dataset") under a name the other kind holds (``add_version`` checks again,
        atomically)."""
        with self._read() as conn:
            kind = conn.scalar(select(t.models.c.kind).where(t.models.c.name == model))
        if kind is not None and kind != entity:
            raise _other_kind(model, kind, entity)

    def model_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.scalars(select(t.models.c.name).order_by(t.models.c.name)))

    def models(self) -> list[ModelInfo]:
        q = (
            select(
                t.models.c.name,
                t.models.c.default_branch,
                t.models.c.created_at,
                func.count(t.versions.c.id),
                func.max(t.versions.c.number),
                t.models.c.kind,
            )
            .select_from(t.models.outerjoin(t.versions))
            .group_by(t.models.c.id)
            .order_by(t.models.c.name)
        )
        with self._read() as conn:
            return [
                ModelInfo(name, branch, _utc(created), count, latest, kind)
                for name, branch, created, count, latest, kind in conn.execute(q)
            ]

    def _model_row(self, conn: Connection, name: str) -> Row[Any]:
        row = conn.execute(_MODEL_BY_NAME, {"name": name}).first()
        if row is None:
            names = list(conn.scalars(select(t.models.c.name).order_by(t.models.c.name)))
            have = (
                f"models here: {', '.join(names)}" if names else "the repository has no models yet"
            )
            raise ModelNotFoundError(
                f"no model named {name!r} ({have}); committing a first version creates it",
                hint=Hint(
                    cli=f"`modelkeep commit {name} PATH` creates it",
                    api=f"Repo.commit({name!r}, model) creates it",
                ),
            )
        return row

    def default_branch(self, model: str) -> str:
        with self._read() as conn:
            return str(self._model_row(conn, model).default_branch)

    # -- versions -----------------------------------------------------------------

    def _links(self, conn: Connection, version_ids: Sequence[int], into: _Links) -> None:
        """Parents (as numbers), datasets and labels of many versions, three queries."""
        ids = {"ids": list(version_ids)}
        for vid, number in conn.execute(_PARENTS_OF, ids):
            into.parents.setdefault(vid, []).append(number)
        for d in conn.execute(_DATASETS_OF, ids):
            into.datasets.setdefault(d.version_id, []).append(
                DatasetRef(d.path, d.content_id, d.size)
            )
        for vid, key, value in conn.execute(_LABELS_OF, ids):
            into.labels.setdefault(vid, {})[key] = value

    def _versions(self, conn: Connection, model: str, rows: Sequence[Row[Any]]) -> list[Version]:
        links = _Links({}, {}, {})
        ids = [r.id for r in rows]
        # Chunks keep the IN lists under SQLite's bound-parameter limit.
        for start in range(0, len(ids), 500):
            self._links(conn, ids[start : start + 500], links)
        return [
            self._version_of_row(
                model,
                r,
                tuple(links.parents.get(r.id, ())),
                tuple(links.datasets.get(r.id, ())),
                links.labels.get(r.id, {}),
            )
            for r in rows
        ]

    def _version(self, conn: Connection, model: str, row: Row[Any]) -> Version:
        return self._versions(conn, model, [row])[0]

    def _version_of_row(
        self,
        model: str,
        row: Row[Any],
        parents: tuple[int, ...],
        ds: tuple[DatasetRef, ...],
        labels: dict[str, str],
    ) -> Version:
        lineage = row.lineage or {}
        code = lineage.get("code")
        return Version(
            model=model,
            number=row.number,
            branch=row.branch,
            parents=parents,
            message=row.message,
            author=row.author,
            created_at=_utc(row.created_at),
            params=row.params,
            metrics=row.metrics,
            datasets=ds,
            code=CodeRef(**code) if code else None,
            environment=lineage.get("environment", {}),
            tree_id=row.tree_id,
            size=row.size,
            file_count=row.file_count,
            kind=row.kind,
            status=row.status,
            artifact=row.artifact or {},
            annotations={k: v for k, v in lineage.items() if k not in ("code", "environment")},
            labels=labels,
        )

    def _version_row(self, conn: Connection, model_id: int, model: str, number: int) -> Row[Any]:
        row = conn.execute(
            select(t.versions).where(
                t.versions.c.model_id == model_id, t.versions.c.number == number
            )
        ).first()
        if row is None:
            latest = conn.scalar(
                select(func.max(t.versions.c.number)).where(t.versions.c.model_id == model_id)
            )
            raise VersionNotFoundError(
                f"{model} has no version {number} (it has versions 1..{latest})"
                if latest
                else f"{model} has no versions yet"
            )
        return row

    def version(self, model: str, number: int) -> Version:
        with self._read() as conn:
            m = self._model_row(conn, model)
            return self._version(conn, model, self._version_row(conn, m.id, model, number))

    def version_at(
        self, model: str, ref: str | None = None, kinds: Sequence[str] = REF_KINDS
    ) -> Version:
        """The version a ref names (``None``: the model's default branch), read in one
        transaction, so that a ref moved meanwhile is seen either before or after."""
        wanted = ("branch",) if ref is None else kinds
        with self._read() as conn:
            row = conn.execute(_VERSION_AT_REF, {"model": model, "ref": ref}).first()
            if row is None or row.ref_kind not in wanted:
                # The lookups one by one, which say what is missing.
                m = self._model_row(conn, model)
                ref_row = self._ref_row(conn, m.id, model, ref or m.default_branch, wanted)
                row = conn.execute(
                    select(t.versions).where(t.versions.c.id == ref_row.version_id)
                ).one()
            return self._version(conn, model, row)

    def versions(
        self, model: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Version]:
        """Versions of ``model``, newest first: all, or a page of at most ``limit``
        (numbered below ``before``), paged in SQL over the (model, number) index."""
        with self._read() as conn:
            m = self._model_row(conn, model)
            query = _VERSIONS_ALL if limit is None else _VERSIONS_PAGE
            params = {"model_id": m.id, "before": before, "limit": limit}
            rows = conn.execute(query, params).all()
            return self._versions(conn, model, rows)

    def search(
        self, model: str, where: Where | None, order: Order | None, limit: int | None
    ) -> list[Version]:
        """Versions of ``model`` that ``where`` holds for, in ``order`` (default: newest
        first), at most ``limit``: filtered, sorted and paged in SQL."""
        q = select(t.versions)
        q = q.order_by(*order_sql(order)) if order else q.order_by(t.versions.c.number.desc())
        if where is not None:
            q = q.where(to_sql(where))
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            m = self._model_row(conn, model)
            rows = conn.execute(q.where(t.versions.c.model_id == m.id)).all()
            return self._versions(conn, model, rows)

    def set_labels(
        self,
        model: str,
        number: int,
        values: dict[str, str],
        remove: Sequence[str],
        *,
        actor: str,
        message: str,
    ) -> Version:
        """Set ``values`` and remove the keys ``remove`` on a version, and log the
        change (what it was before), in one transaction."""
        with self._write() as conn:
            m = self._model_row(conn, model)
            row = self._version_row(conn, m.id, model, number)
            label = t.labels
            was = dict(
                conn.execute(
                    select(label.c.key, label.c.value).where(label.c.version_id == row.id)
                ).all()
            )
            absent = [k for k in remove if k not in was]
            if absent:
                raise NotFoundError(
                    f"{model}:{number} has no label {', '.join(map(repr, absent))} (it has "
                    f"{', '.join(sorted(was)) or 'none'})"
                )
            now = _now()
            for key, value in values.items():
                if key in was:
                    conn.execute(
                        update(label)
                        .where(label.c.version_id == row.id, label.c.key == key)
                        .values(value=value, updated_at=now, updated_by=actor)
                    )
                else:
                    conn.execute(
                        insert(label).values(
                            version_id=row.id,
                            key=key,
                            value=value,
                            updated_at=now,
                            updated_by=actor,
                        )
                    )
            if remove:
                conn.execute(
                    delete(label).where(label.c.version_id == row.id, label.c.key.in_(remove))
                )
            details: dict[str, Any] = {}
            if values:
                details["set"] = values
                if changed := {k: was[k] for k in values if k in was}:
                    details["was"] = changed
            if remove:
                details["removed"] = {k: was[k] for k in remove}
            self._append_event(
                conn,
                actor=actor,
                action="label",
                model=model,
                ref_kind=None,
                ref_name=None,
                before=number,
                after=number,
                message=message,
                details=details,
            )
            return self._version(conn, model, row)

    def version_count(self, model: str) -> int:
        with self._read() as conn:
            m = self._model_row(conn, model)
            return int(
                conn.scalar(select(func.count()).where(t.versions.c.model_id == m.id)) or 0
            )

    def parents_map(self, model: str) -> dict[int, tuple[int, ...]]:
        """version number → parent numbers, for ancestry walks in one query."""
        child = t.versions.alias("child")
        parent = t.versions.alias("parent")
        with self._read() as conn:
            m = self._model_row(conn, model)
            out: dict[int, list[int]] = {
                n: []
                for n in conn.scalars(
                    select(t.versions.c.number).where(t.versions.c.model_id == m.id)
                )
            }
            q = (
                select(child.c.number, parent.c.number)
                .select_from(
                    t.version_parents.join(
                        child, child.c.id == t.version_parents.c.version_id
                    ).join(parent, parent.c.id == t.version_parents.c.parent_id)
                )
                .where(child.c.model_id == m.id)
                .order_by(child.c.number, t.version_parents.c.position)
            )
            for c, p in conn.execute(q):
                out[c].append(p)
        return {k: tuple(v) for k, v in out.items()}

    def add_version(
        self,
        *,
        model: str,
        branch: str | None,
        tree_id: str,
        size: int,
        file_count: int,
        message: str,
        author: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        datasets: Sequence[DatasetRef],
        parents: Sequence[int] | None = None,
        kind: str = "commit",
        status: str = "ok",
        default_branch: str = "main",
        artifact: dict[str, Any] | None = None,
        entity: str = "model",
    ) -> Version:
        """Append the next version of ``model`` and advance its branch, atomically.

        The model is created on its first commit. ``parents`` defaults to the
        branch head; the number is the model's highest plus one.
        """
        for _attempt in range(20):
            try:
                with self._write() as conn:
                    return self._add_version(
                        conn,
                        model=model,
                        branch=branch,
                        tree_id=tree_id,
                        size=size,
                        file_count=file_count,
                        message=message,
                        author=author,
                        params=params,
                        metrics=metrics,
                        lineage=lineage,
                        datasets=datasets,
                        parents=parents,
                        kind=kind,
                        status=status,
                        default_branch=default_branch,
                        artifact=artifact,
                        entity=entity,
                    )
            except IntegrityError:
                # Lost a race for the number (possible on engines without BEGIN
                # IMMEDIATE): the transaction rolled back, so try again.
                continue
        raise RegistryBusyError("could not allocate a version number after 20 attempts; retry")

    def _add_version(
        self,
        conn: Connection,
        *,
        model: str,
        branch: str | None,
        tree_id: str,
        size: int,
        file_count: int,
        message: str,
        author: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        datasets: Sequence[DatasetRef],
        parents: Sequence[int] | None,
        kind: str,
        status: str,
        default_branch: str,
        artifact: dict[str, Any] | None,
        entity: str,
    ) -> Version:
        now = _now()
        m = conn.execute(select(t.models).where(t.models.c.name == model)).first()
        if m is None:
            if branch not in (None, default_branch):
                raise RefNotFoundError(
                    f"{model} is a new model: its first version goes on {default_branch!r}; "
                    f"commit it there, then make branch {branch!r} from it",
                    hint=Hint(
                        cli=f"commit without --branch, then `modelkeep branch {model} {branch}`",
                        api=f"commit without branch=, then Repo.branch({model!r}, {branch!r})",
                    ),
                )
            model_id = _new_id(
                conn.execute(
                    insert(t.models).values(
                        name=model, default_branch=default_branch, created_at=now, kind=entity
                    )
                )
            )
            branch = default_branch
            head = None
        else:
            if m.kind != entity:
                raise _other_kind(model, m.kind, entity)
            model_id = m.id
            branch = branch or m.default_branch
            head = self._ref_row(conn, model_id, model, branch, kinds=("branch",))
        head_number = (
            conn.scalar(select(t.versions.c.number).where(t.versions.c.id == head.version_id))
            if head is not None
            else None
        )
        parent_numbers = (
            list(parents)
            if parents is not None
            else ([head_number] if head_number is not None else [])
        )
        parent_ids = [self._version_row(conn, model_id, model, p).id for p in parent_numbers]
        number = (
            conn.scalar(
                select(func.max(t.versions.c.number)).where(t.versions.c.model_id == model_id)
            )
            or 0
        ) + 1
        version_id = _new_id(
            conn.execute(
                insert(t.versions).values(
                    model_id=model_id,
                    number=number,
                    branch=branch,
                    tree_id=tree_id,
                    size=size,
                    file_count=file_count,
                    message=message,
                    author=author,
                    created_at=now,
                    kind=kind,
                    status=status,
                    params=params,
                    metrics=metrics,
                    lineage=lineage,
                    artifact=artifact,
                )
            )
        )
        for pos, parent_id in enumerate(parent_ids):
            conn.execute(
                insert(t.version_parents).values(
                    version_id=version_id, position=pos, parent_id=parent_id
                )
            )
        for d in datasets:
            conn.execute(
                insert(t.datasets).values(
                    version_id=version_id, path=d.path, content_id=d.content_id, size=d.size
                )
            )
        if head is None:
            conn.execute(
                insert(t.refs).values(
                    model_id=model_id,
                    kind="branch",
                    name=branch,
                    version_id=version_id,
                    updated_at=now,
                )
            )
        else:
            self._cas(conn, head.id, head.version_id, version_id, now)
        self._append_event(
            conn,
            actor=author,
            action=kind,
            model=model,
            ref_kind="branch",
            ref_name=branch,
            before=head_number,
            after=number,
            message=message,
            details={"tree": tree_id, "size": size, "files": file_count},
        )
        row = conn.execute(select(t.versions).where(t.versions.c.id == version_id)).one()
        return self._version(conn, model, row)

    def tree_ids(self) -> list[tuple[str, int, str]]:
        """(model, number, tree id) of every version."""
        q = (
            select(t.models.c.name, t.versions.c.number, t.versions.c.tree_id)
            .select_from(t.versions.join(t.models))
            .order_by(t.models.c.name, t.versions.c.number)
        )
        with self._read() as conn:
            return [(m, n, tid) for m, n, tid in conn.execute(q)]

    def artifact_ids(self) -> list[tuple[str, int, str]]:
        """(model, number, object id) of every object a version's artifact names
        outside its tree (its reference profile)."""
        q = (
            select(t.models.c.name, t.versions.c.number, t.versions.c.artifact)
            .select_from(t.versions.join(t.models))
            .where(t.versions.c.artifact.is_not(None))
        )
        with self._read() as conn:
            return [
                (m, n, art["profile"])
                for m, n, art in conn.execute(q)
                if isinstance(art, dict) and art.get("profile")
            ]

    # -- refs ---------------------------------------------------------------------

    def _ref_row(
        self,
        conn: Connection,
        model_id: int,
        model: str,
        name: str,
        kinds: Sequence[str] = REF_KINDS,
    ) -> Row[Any]:
        row = conn.execute(_REF_BY_NAME, {"model_id": model_id, "name": name}).first()
        if row is None or row.kind not in kinds:
            have = conn.execute(
                select(t.refs.c.kind, t.refs.c.name)
                .where(t.refs.c.model_id == model_id, t.refs.c.kind.in_(kinds))
                .order_by(t.refs.c.kind, t.refs.c.name)
            ).all()
            what = " or ".join(kinds) if len(kinds) < len(REF_KINDS) else "branch, alias or tag"
            listing = ", ".join(f"{k} {n}" for k, n in have) or "none"
            hint = f"; it is {_a(row.kind)}" if row is not None else ""
            raise RefNotFoundError(f"{model} has no {what} named {name!r}{hint} (has: {listing})")
        return row

    def _ref(self, conn: Connection, model: str, row: Row[Any]) -> Ref:
        number = conn.scalar(select(t.versions.c.number).where(t.versions.c.id == row.version_id))
        return Ref(model, row.kind, row.name, int(number or 0), _utc(row.updated_at))

    def ref(self, model: str, name: str, kinds: Sequence[str] = REF_KINDS) -> Ref:
        with self._read() as conn:
            m = self._model_row(conn, model)
            return self._ref(conn, model, self._ref_row(conn, m.id, model, name, kinds))

    def refs(self, model: str, kind: str | None = None) -> list[Ref]:
        with self._read() as conn:
            m = self._model_row(conn, model)
            q = select(t.refs).where(t.refs.c.model_id == m.id)
            if kind:
                q = q.where(t.refs.c.kind == kind)
            rows = conn.execute(q.order_by(t.refs.c.kind, t.refs.c.name)).all()
            return [self._ref(conn, model, r) for r in rows]

    def _cas(self, conn: Connection, ref_id: int, expected: int, new: int, now: datetime) -> None:
        done = conn.execute(
            update(t.refs)
            .where(t.refs.c.id == ref_id, t.refs.c.version_id == expected)
            .values(version_id=new, updated_at=now)
        ).rowcount
        if done != 1:
            raise RefMovedError(
                "the ref was moved by another process meanwhile; run the command again"
            )

    def move_ref(
        self,
        *,
        model: str,
        name: str,
        kind: str,
        to: int,
        actor: str,
        action: str,
        message: str = "",
        expected: int | None = None,
        create: bool = True,
        exclusive: bool = False,
        details: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> tuple[int | None, Ref]:
        """Point ref ``name`` at version ``to`` (creating it if allowed); logs the event.

        ``expected`` makes it a compare-and-swap on the version the caller saw;
        ``exclusive`` refuses to touch a ref that exists; ``conn``: inside that
        transaction, with what else it writes. Returns the previous target (None if
        created) and the ref now.
        """
        if conn is None:
            with self._write() as own:
                return self.move_ref(
                    model=model,
                    name=name,
                    kind=kind,
                    to=to,
                    actor=actor,
                    action=action,
                    message=message,
                    expected=expected,
                    create=create,
                    exclusive=exclusive,
                    details=details,
                    conn=own,
                )
        m = self._model_row(conn, model)
        target = self._version_row(conn, m.id, model, to)
        row = conn.execute(_REF_BY_NAME, {"model_id": m.id, "name": name}).first()
        now = _now()
        if row is None:
            if not create:
                self._ref_row(conn, m.id, model, name, (kind,))  # raises with a listing
            conn.execute(
                insert(t.refs).values(
                    model_id=m.id, kind=kind, name=name, version_id=target.id, updated_at=now
                )
            )
            before = None
        else:
            if exclusive:
                raise RefExistsError(
                    f"{model} already has {_a(row.kind)} named {name!r}; choose another name"
                )
            if row.kind != kind:
                raise RefExistsError(
                    f"{model}@{name} is {_a(row.kind)}, not {_a(kind)}; choose another name"
                )
            if kind == "tag":
                raise RefExistsError(
                    f"tag {name!r} of {model} already exists; tags never move — delete it "
                    "first or choose another name",
                    hint=Hint(
                        cli=f"`modelkeep tag -d {model}@{name}` deletes it",
                        api=f"Repo.delete_tag('{model}@{name}') deletes it",
                    ),
                )
            before = conn.scalar(
                select(t.versions.c.number).where(t.versions.c.id == row.version_id)
            )
            if expected is not None and before != expected:
                raise RefMovedError(
                    f"{model}@{name} points at {before}, not {expected}: another change came "
                    "first; look at its history and try again",
                    hint=Hint(
                        cli=f"`modelkeep history {model}@{name}` shows it",
                        api=f"Repo.history('{model}@{name}') shows it",
                    ),
                )
            self._cas(conn, row.id, row.version_id, target.id, now)
        self._append_event(
            conn,
            actor=actor,
            action=action,
            model=model,
            ref_kind=kind,
            ref_name=name,
            before=before,
            after=to,
            message=message,
            details=details or {},
        )
        new = conn.execute(_REF_BY_NAME, {"model_id": m.id, "name": name}).one()
        return before, self._ref(conn, model, new)

    def delete_ref(self, *, model: str, name: str, kind: str, actor: str, message: str = "") -> Ref:
        with self._write() as conn:
            m = self._model_row(conn, model)
            row = self._ref_row(conn, m.id, model, name, (kind,))
            ref = self._ref(conn, model, row)
            if kind == "branch" and name == m.default_branch:
                raise RefExistsError(
                    f"{name!r} is the default branch of {model} and cannot be deleted"
                )
            conn.execute(t.refs.delete().where(t.refs.c.id == row.id))
            self._append_event(
                conn,
                actor=actor,
                action=f"{kind}.delete",
                model=model,
                ref_kind=kind,
                ref_name=name,
                before=ref.version,
                after=None,
                message=message,
                details={},
            )
            return ref

    # -- deployments --------------------------------------------------------------

    def _deployment(self, model: str, row: Row[Any]) -> Deployment:
        return Deployment(
            row.id,
            model,
            row.alias,
            row.strategy,
            row.primary_version,
            row.candidate_version,
            row.percent,
            tuple(row.steps),
            row.interval_seconds,
            row.status,
            row.actor,
            _utc(row.created_at),
            _utc(row.updated_at),
            row.stats,
        )

    def start_deployment(
        self,
        *,
        model: str,
        alias: str,
        strategy: str,
        primary: int,
        candidate: int,
        percent: float,
        steps: Sequence[float],
        interval_seconds: float | None,
        actor: str,
        message: str,
        status: str = "active",
    ) -> Deployment:
        """Record a rollout; refuses while another one of the alias is active."""
        with self._write() as conn:
            m = self._model_row(conn, model)
            self._version_row(conn, m.id, model, candidate)
            active = conn.execute(
                select(t.deployments.c.id, t.deployments.c.strategy).where(
                    t.deployments.c.model_id == m.id,
                    t.deployments.c.alias == alias,
                    t.deployments.c.status == "active",
                )
            ).first()
            if active is not None:
                raise RefExistsError(
                    f"{model}@{alias} already has an active {active.strategy} deployment "
                    f"(#{active.id}); promote or abort it first",
                    hint=Hint(
                        cli=f"`modelkeep deploy {model} --to {alias} --promote` (or --abort) "
                        "ends it",
                        api=f"Repo.end_deployment({model!r}, to={alias!r}, promote=True) (or "
                        "promote=False) ends it",
                    ),
                )
            now = _now()
            did = _new_id(
                conn.execute(
                    insert(t.deployments).values(
                        model_id=m.id,
                        alias=alias,
                        strategy=strategy,
                        primary_version=primary,
                        candidate_version=candidate,
                        percent=percent,
                        steps=list(steps),
                        interval_seconds=interval_seconds,
                        status=status,
                        actor=actor,
                        created_at=now,
                        updated_at=now,
                        stats={},
                    )
                )
            )
            self._append_event(
                conn,
                actor=actor,
                action=f"deploy.{strategy}",
                model=model,
                ref_kind="alias",
                ref_name=alias,
                before=primary,
                after=candidate,
                message=message,
                details={
                    "deployment": did,
                    "percent": percent,
                    "steps": list(steps),
                    "interval_seconds": interval_seconds,
                    "status": status,
                },
            )
            row = conn.execute(select(t.deployments).where(t.deployments.c.id == did)).one()
            return self._deployment(model, row)

    def end_deployment(
        self,
        deployment_id: int,
        *,
        status: str,
        actor: str,
        message: str,
        expected_status: str = "active",
        promote: tuple[int | None, str] | None = None,
    ) -> Deployment:
        """Move a deployment to ``status`` (compare-and-swap on its current status).

        ``promote`` (the version the alias is expected at, the event's message) also
        moves the alias to the candidate, in the same transaction: a crash leaves the
        rollout either still active or promoted, never the alias moved alone."""
        with self._write() as conn:
            row = conn.execute(
                select(t.deployments, t.models.c.name.label("model_name"))
                .select_from(t.deployments.join(t.models))
                .where(t.deployments.c.id == deployment_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no deployment #{deployment_id}")
            if promote is not None:
                expected, why = promote
                self.move_ref(
                    conn=conn,
                    model=row.model_name,
                    name=row.alias,
                    kind="alias",
                    to=row.candidate_version,
                    actor=actor,
                    action="promote",
                    message=why,
                    expected=expected,
                )
            done = conn.execute(
                update(t.deployments)
                .where(
                    t.deployments.c.id == deployment_id, t.deployments.c.status == expected_status
                )
                .values(status=status, updated_at=_now())
            ).rowcount
            if done != 1:
                raise RefMovedError(
                    f"deployment #{deployment_id} is {row.status}, not {expected_status}; "
                    "look at the deployments as they are now",
                    hint=Hint(
                        cli="`modelkeep deployments` lists them",
                        api="Repo.deployments() lists them",
                    ),
                )
            self._append_event(
                conn,
                actor=actor,
                action=f"deploy.{status}",
                model=row.model_name,
                ref_kind="alias",
                ref_name=row.alias,
                before=row.primary_version,
                after=row.candidate_version,
                message=message,
                details={"deployment": deployment_id, "strategy": row.strategy},
            )
            new = conn.execute(
                select(t.deployments).where(t.deployments.c.id == deployment_id)
            ).one()
            return self._deployment(row.model_name, new)

    def record_deployment_stats(self, deployment_id: int, stats: dict[str, Any]) -> None:
        """Shadow/canary figures measured by the servers (not an event: a gauge)."""
        with self._write() as conn:
            conn.execute(
                update(t.deployments).where(t.deployments.c.id == deployment_id).values(stats=stats)
            )

    def deployments(
        self, model: str | None = None, alias: str | None = None, active: bool = False
    ) -> list[Deployment]:
        q = (
            select(t.deployments, t.models.c.name.label("model_name"))
            .select_from(t.deployments.join(t.models))
            .order_by(t.deployments.c.id.desc())
        )
        if model is not None:
            q = q.where(t.models.c.name == model)
        if alias is not None:
            q = q.where(t.deployments.c.alias == alias)
        if active:
            q = q.where(t.deployments.c.status == "active")
        with self._read() as conn:
            if model is not None:
                self._model_row(conn, model)
            return [self._deployment(r.model_name, r) for r in conn.execute(q)]

    # -- monitoring reports -------------------------------------------------------

    def add_report(
        self,
        model: str,
        number: int,
        *,
        kind: str,
        source: str,
        drifted: bool,
        body: dict[str, Any],
        replaces: Sequence[int] = (),
    ) -> int:
        """Store a report; ``replaces``: ids of the same version's window parts it
        merges, deleted in the same transaction (a crash leaves the parts or the
        merged window, never both, never neither)."""
        with self._write() as conn:
            m = self._model_row(conn, model)
            v = self._version_row(conn, m.id, model, number)
            new = _new_id(
                conn.execute(
                    insert(t.monitor_reports).values(
                        version_id=v.id,
                        at=_now(),
                        kind=kind,
                        source=source,
                        drifted=drifted,
                        body=body,
                    )
                )
            )
            if replaces:
                r = t.monitor_reports
                conn.execute(
                    delete(r).where(
                        r.c.id.in_(list(replaces)),
                        r.c.version_id == v.id,
                        r.c.kind == "window-part",
                    )
                )
            return new

    def reports(
        self, model: str, number: int, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Reports of one version (of one ``kind`` if given), newest first."""
        with self._read() as conn:
            m = self._model_row(conn, model)
            v = self._version_row(conn, m.id, model, number)
            q = (
                select(t.monitor_reports)
                .where(t.monitor_reports.c.version_id == v.id)
                .order_by(t.monitor_reports.c.id.desc())
            )
            if kind is not None:
                q = q.where(t.monitor_reports.c.kind == kind)
            if limit:
                q = q.limit(limit)
            return [
                {
                    "id": r.id,
                    "at": _utc(r.at).isoformat(),
                    "kind": r.kind,
                    "source": r.source,
                    "drifted": r.drifted,
                    **r.body,
                }
                for r in conn.execute(q)
            ]

    # -- monitoring schedules -----------------------------------------------------

    def _schedule(self, row: Row[Any]) -> Schedule:
        return Schedule(
            id=row.id,
            model=row.model_name,
            revision=row.revision,
            every=int(row.every_seconds),
            data=row.data,
            target=row.target,
            created_at=_utc(row.created_at),
            created_by=row.created_by,
            last_slot=(
                None if row.last_slot is None else datetime.fromtimestamp(row.last_slot, UTC)
            ),
            last_run_at=None if row.last_run_at is None else _utc(row.last_run_at),
            last_status=row.last_status,
            last_report=row.last_report,
            last_error=row.last_error,
            active=bool(row.active),
        )

    def _schedule_query(self) -> Select[Any]:
        return select(t.monitor_schedules, t.models.c.name.label("model_name")).select_from(
            t.monitor_schedules.join(t.models)
        )

    def _schedule_row(self, conn: Connection, schedule_id: int) -> Row[Any]:
        row = conn.execute(
            self._schedule_query().where(t.monitor_schedules.c.id == schedule_id)
        ).first()
        if row is None:
            raise NotFoundError(
                f"no schedule #{schedule_id}",
                hint=Hint(
                    cli="`modelkeep monitor schedules` lists them",
                    api="Repo.schedules() lists them",
                ),
            )
        return row

    def add_schedule(
        self,
        *,
        model: str,
        revision: str,
        ref_name: str | None,
        every: int,
        data: str,
        target: str | None,
        actor: str,
        message: str,
    ) -> Schedule:
        """Record a schedule and its event, in one transaction. The same check (revision,
        period, data, target) scheduled twice would run twice per slot: refused."""
        with self._write() as conn:
            m = self._model_row(conn, model)
            same = conn.execute(
                select(t.monitor_schedules.c.id).where(
                    t.monitor_schedules.c.model_id == m.id,
                    t.monitor_schedules.c.active.is_(True),
                    t.monitor_schedules.c.revision == revision,
                    t.monitor_schedules.c.every_seconds == every,
                    t.monitor_schedules.c.data == data,
                    (
                        t.monitor_schedules.c.target.is_(None)
                        if target is None
                        else t.monitor_schedules.c.target == target
                    ),
                )
            ).first()
            if same is not None:
                raise ConflictError(
                    f"schedule #{same.id} already checks {revision} every {period_text(every)} on "
                    f"{data}; remove it first",
                    hint=Hint(
                        cli=f"`modelkeep monitor unschedule {same.id}` removes it",
                        api=f"Repo.unschedule({same.id}) removes it",
                    ),
                )
            sid = _new_id(
                conn.execute(
                    insert(t.monitor_schedules).values(
                        model_id=m.id,
                        revision=revision,
                        every_seconds=every,
                        data=data,
                        target=target,
                        created_at=_now(),
                        created_by=actor,
                        active=True,
                    )
                )
            )
            self._append_event(
                conn,
                actor=actor,
                action="monitor.schedule",
                model=model,
                ref_kind="alias" if ref_name else None,
                ref_name=ref_name,
                before=None,
                after=None,
                message=message,
                details={
                    "schedule": sid,
                    "revision": revision,
                    "every_seconds": every,
                    "data": data,
                    "target": target,
                },
            )
            return self._schedule(self._schedule_row(conn, sid))

    def schedule(self, schedule_id: int) -> Schedule:
        with self._read() as conn:
            return self._schedule(self._schedule_row(conn, schedule_id))

    def schedules(self, model: str | None = None, *, active: bool = True) -> list[Schedule]:
        """Schedules by id; only the active ones unless ``active`` is False."""
        q = self._schedule_query().order_by(t.monitor_schedules.c.id)
        if model is not None:
            q = q.where(t.models.c.name == model)
        if active:
            q = q.where(t.monitor_schedules.c.active.is_(True))
        with self._read() as conn:
            if model is not None:
                self._model_row(conn, model)
            return [self._schedule(r) for r in conn.execute(q)]

    def end_schedule(
        self, schedule_id: int, *, actor: str, ref_name: str | None, message: str
    ) -> Schedule:
        """Deactivate a schedule (kept, with its last outcome, for the record)."""
        with self._write() as conn:
            row = self._schedule_row(conn, schedule_id)
            done = conn.execute(
                update(t.monitor_schedules)
                .where(
                    t.monitor_schedules.c.id == schedule_id,
                    t.monitor_schedules.c.active.is_(True),
                )
                .values(active=False)
            ).rowcount
            if done != 1:
                raise ConflictError(
                    f"schedule #{schedule_id} ({row.revision}) was already removed",
                    hint=Hint(
                        cli="`modelkeep monitor schedules` lists the active ones",
                        api="Repo.schedules() lists the active ones",
                    ),
                )
            self._append_event(
                conn,
                actor=actor,
                action="monitor.unschedule",
                model=row.model_name,
                ref_kind="alias" if ref_name else None,
                ref_name=ref_name,
                before=None,
                after=None,
                message=message,
                details={"schedule": schedule_id, "revision": row.revision, "data": row.data},
            )
            return self._schedule(self._schedule_row(conn, schedule_id))

    def claim_slot(self, schedule_id: int, *, expected: int | None, slot: int) -> bool:
        """Compare-and-swap ``last_slot`` from ``expected`` (what the caller saw) to
        ``slot``. Exactly one of any number of racing callers gets True: only it runs
        the check, so a slot never runs twice."""
        col = t.monitor_schedules.c.last_slot
        with self._write() as conn:
            done = conn.execute(
                update(t.monitor_schedules)
                .where(
                    t.monitor_schedules.c.id == schedule_id,
                    t.monitor_schedules.c.active.is_(True),
                    col.is_(None) if expected is None else col == expected,
                )
                .values(
                    last_slot=slot,
                    last_run_at=_now(),
                    last_status="running",
                    last_report=None,
                    last_error=None,
                )
            ).rowcount
            return bool(done == 1)

    def finish_slot(
        self,
        schedule_id: int,
        *,
        slot: int,
        status: str,
        report: int | None = None,
        error: str | None = None,
    ) -> None:
        """The outcome of a claimed slot; ignored when a later slot was claimed since
        (a slow run must not overwrite the outcome of the run after it)."""
        with self._write() as conn:
            conn.execute(
                update(t.monitor_schedules)
                .where(
                    t.monitor_schedules.c.id == schedule_id,
                    t.monitor_schedules.c.last_slot == slot,
                )
                .values(last_status=status, last_report=report, last_error=error)
            )

    def model_reports(
        self,
        model: str,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        profiles: bool = False,
    ) -> list[dict[str, Any]]:
        """Reports of every version of a model, newest first, each with its version
        ``number``. A report's ``profile`` (the largest part by far) is left out in SQL
        unless ``profiles``: a series over time needs only the verdicts and metrics."""
        r, v = t.monitor_reports, t.versions
        body = r.c.body if profiles else _without_profile(r.c.body)
        q = (
            select(
                r.c.id, r.c.at, r.c.kind, r.c.source, r.c.drifted, v.c.number, body.label("body")
            )
            .select_from(r.join(v, r.c.version_id == v.c.id))
            .order_by(r.c.at.desc(), r.c.id.desc())
        )
        if since is not None:
            # Stored as UTC (and naive on SQLite): compare like with like.
            q = q.where(r.c.at >= (since.astimezone(UTC) if since.tzinfo else since))
        if limit:
            q = q.limit(limit)
        with self._read() as conn:
            m = self._model_row(conn, model)
            rows = conn.execute(q.where(v.c.model_id == m.id))
            out = [
                {
                    "id": row.id,
                    "at": _utc(row.at).isoformat(),
                    "kind": row.kind,
                    "source": row.source,
                    "drifted": row.drifted,
                    "number": row.number,
                    **row.body,
                }
                for row in rows
            ]
        if not profiles:
            for report in out:  # dialects without a JSON "remove key" leave it in
                report.pop("profile", None)
        return out

    # -- events -------------------------------------------------------------------

    def _append_event(
        self,
        conn: Connection,
        *,
        actor: str,
        action: str,
        model: str | None,
        ref_kind: str | None,
        ref_name: str | None,
        before: int | None,
        after: int | None,
        message: str,
        details: dict[str, Any],
    ) -> None:
        conn.execute(
            insert(t.events).values(
                at=_now(),
                actor=actor,
                action=action,
                model=model,
                ref_kind=ref_kind,
                ref_name=ref_name,
                before_version=before,
                after_version=after,
                message=message,
                details=details,
            )
        )

    def set_policy(
        self, model: str, text: str, fmt: str, *, actor: str, message: str, details: dict[str, Any]
    ) -> None:
        """Attach (or replace) the policy of ``model`` and log it, in one transaction."""
        with self._write() as conn:
            m = self._model_row(conn, model)
            values = {"text": text, "format": fmt, "updated_at": _now(), "updated_by": actor}
            moved = conn.execute(
                update(t.policies).where(t.policies.c.model_id == m.id).values(**values)
            )
            if not moved.rowcount:
                conn.execute(insert(t.policies).values(model_id=m.id, **values))
            self._append_event(
                conn,
                actor=actor,
                action="policy.set",
                model=model,
                ref_kind=None,
                ref_name=None,
                before=None,
                after=None,
                message=message,
                details=details,
            )

    def policy(self, model: str) -> tuple[str, str] | None:
        """The policy text of ``model`` and its format (None when it has none)."""
        with self._read() as conn:
            m = self._model_row(conn, model)
            row = conn.execute(
                select(t.policies.c.text, t.policies.c.format).where(
                    t.policies.c.model_id == m.id
                )
            ).first()
        return None if row is None else (str(row.text), str(row.format))

    def append_event(
        self,
        *,
        actor: str,
        action: str,
        model: str,
        message: str,
        ref_name: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """An event that moves nothing (monitoring alerts, policy changes)."""
        with self._write() as conn:
            self._model_row(conn, model)
            self._append_event(
                conn,
                actor=actor,
                action=action,
                model=model,
                ref_kind="alias" if ref_name else None,
                ref_name=ref_name,
                before=None,
                after=None,
                message=message,
                details=details or {},
            )

    def events(
        self,
        model: str | None = None,
        ref_name: str | None = None,
        limit: int | None = None,
        action: str | None = None,
    ) -> list[Event]:
        """Events newest first, optionally only one model's, one ref's, one action's."""
        q = select(t.events).order_by(t.events.c.id.desc())
        if model is not None:
            q = q.where(t.events.c.model == model)
        if ref_name is not None:
            q = q.where(t.events.c.ref_name == ref_name)
        if action is not None:
            q = q.where(t.events.c.action == action)
        if limit:
            q = q.limit(limit)
        with self._read() as conn:
            if model is not None:
                self._model_row(conn, model)
            return [
                Event(
                    r.id,
                    _utc(r.at),
                    r.actor,
                    r.action,
                    r.model,
                    r.ref_kind,
                    r.ref_name,
                    r.before_version,
                    r.after_version,
                    r.message,
                    r.details,
                )
                for r in conn.execute(q)
            ]

    def ref_moves(self, model: str, name: str) -> list[Event]:
        """Moves of one ref, newest first (creation included, deletions excluded).
        Deployment and monitoring events name the ref but do not move it."""
        return [
            e
            for e in self.events(model, name)
            if e.after is not None and not e.action.startswith(NON_MOVES)
        ]

    def dispose(self) -> None:
        self.engine.dispose()


class _without_profile(FunctionElement[Any]):
    """A report body without its "profile" key, removed by the database."""

    type = JSON()
    inherit_cache = True
    name = "without_profile"


@compiles(_without_profile)
def _without_profile_default(element: _without_profile, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_without_profile, "sqlite")
def _without_profile_sqlite(element: _without_profile, compiler: Any, **kw: Any) -> str:
    return f"json_remove({compiler.process(element.clauses, **kw)}, '$.profile')"


@compiles(_without_profile, "postgresql")
def _without_profile_postgresql(element: _without_profile, compiler: Any, **kw: Any) -> str:
    return f"(({compiler.process(element.clauses, **kw)})::jsonb - 'profile')::json"
