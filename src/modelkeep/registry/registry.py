"""The registry: models, versions, refs and the event log, in SQL.

Every ref move goes through ``move_ref``: a compare-and-swap that also appends
the event. That single choke point is what makes history and rollback trustworthy.

Statements are SQL text with named parameters, run through ``registry.db`` (the
standard library's sqlite3 on SQLite, SQLAlchemy elsewhere; why: see there). Only the
search compiler and the migrations build statements with SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import quantities
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
    RepositoryFormatError,
    VersionExistsError,
    VersionNotFoundError,
)
from modelkeep.registry.acting import acting
from modelkeep.registry.db import (
    NO_LIMIT,
    Database,
    IntegrityFailure,
    Many,
    Tx,
    decode_json,
    decode_time,
)
from modelkeep.registry.identity import identity_of
from modelkeep.registry.records import (
    CodeRef,
    DatasetRef,
    Deployment,
    Event,
    ModelInfo,
    Ref,
    Replica,
    Schedule,
    Token,
    Version,
    period_text,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence
    from contextlib import AbstractContextManager

    from sqlalchemy import Engine

    from modelkeep.registry.query import Order, Where

# Bumped by every migration (which also writes it to the meta table), so an open can
# tell "needs upgrading" or "too new" without loading Alembic (or SQLAlchemy).
SCHEMA_VERSION = 12

REF_KINDS = ("branch", "alias", "tag")
# Event actions that concern a ref without moving it.
NON_MOVES = ("deploy.", "monitor.", "policy.")

_MODEL_BY_NAME = "SELECT * FROM models WHERE name = :name"
_MODEL_NAMES = "SELECT name FROM models ORDER BY name"
_REF_BY_NAME = "SELECT * FROM refs WHERE model_id = :model_id AND name = :name"
_VERSION_BY_ID = "SELECT * FROM versions WHERE id = :id"
_NUMBER_OF = "SELECT number FROM versions WHERE id = :id"
_LATEST = "SELECT max(number) FROM versions WHERE model_id = :model_id"
# A ref (or, given no ref name, the model's default branch) and its version in one query.
_VERSION_AT_REF = """
    SELECT versions.*, refs.kind AS ref_kind
    FROM models
    JOIN refs ON refs.model_id = models.id
    JOIN versions ON versions.id = refs.version_id
    WHERE models.name = :model AND refs.name = coalesce(:ref, models.default_branch)
"""
_PARENTS_OF = """
    SELECT version_parents.version_id, parent.number
    FROM version_parents JOIN versions AS parent ON parent.id = version_parents.parent_id
    WHERE version_parents.version_id IN (:ids)
    ORDER BY version_parents.version_id, version_parents.position
"""
_DATASETS_OF = "SELECT * FROM datasets WHERE version_id IN (:ids) ORDER BY id"
# Number → stored identity (NULL: not filled in yet) of a model's versions, in order.
_IDENTITIES = """
    SELECT versions.number, version_identities.identity
    FROM versions LEFT OUTER JOIN version_identities
         ON version_identities.version_id = versions.id
    WHERE versions.model_id = :model_id
    ORDER BY versions.number
"""
_IDENTITIES_OF = """
    SELECT versions.number, version_identities.identity
    FROM versions LEFT OUTER JOIN version_identities
         ON version_identities.version_id = versions.id
    WHERE versions.model_id = :model_id AND versions.number IN (:numbers)
"""
# Which versions hold these identities: the (model, identity) index answers it. The
# lowest number, should two versions ever hash alike.
_NUMBERS_OF = """
    SELECT version_identities.identity, min(versions.number)
    FROM version_identities JOIN versions ON versions.id = version_identities.version_id
    WHERE version_identities.model_id = :model_id
      AND version_identities.identity IN (:identities)
    GROUP BY version_identities.identity
"""
# How many of a model's versions have no identity stored yet (two counts of an index).
_UNIDENTIFIED = """
    SELECT (SELECT count(*) FROM versions WHERE model_id = :model_id)
         - (SELECT count(*) FROM version_identities WHERE model_id = :model_id)
"""
# Versions read, hashed and stored per transaction when filling in identities (also
# keeps an IN list under SQLite's bound-parameter limit).
_IDENTITY_BATCH = 500
_LABELS_OF = """
    SELECT version_id, key, value FROM labels WHERE version_id IN (:ids)
    ORDER BY version_id, key
"""
# A model's versions newest first, below a number or not: all of them, or a page.
_VERSIONS = """
    SELECT * FROM versions
    WHERE model_id = :model_id AND number < :before
    ORDER BY number DESC LIMIT :limit
"""
_INSERT_EVENT = """
    INSERT INTO events (at, actor, action, model, ref_kind, ref_name, before_version,
                        after_version, message, details, token_id, address)
    VALUES (:at, :actor, :action, :model, :ref_kind, :ref_name, :before, :after,
            :message, :details, :token_id, :address)
"""
_DEPLOYMENTS = """
    SELECT deployments.*, models.name AS model_name
    FROM deployments JOIN models ON models.id = deployments.model_id
"""
# One report of a replica: inserted the first time, overwritten after (started_at kept).
_REPORT_REPLICA = """
    INSERT INTO replicas (server, replica, model_id, alias, host, pid, version, versions,
                          state, error, started_at, seen_at)
    VALUES (:server, :replica, :model_id, :alias, :host, :pid, :version, :versions,
            :state, :error, :now, :now)
    ON CONFLICT (server, replica) DO UPDATE SET
        model_id = excluded.model_id, alias = excluded.alias, host = excluded.host,
        pid = excluded.pid, version = excluded.version, versions = excluded.versions,
        state = excluded.state, error = excluded.error, seen_at = excluded.seen_at
"""
_REPLICAS = """
    SELECT replicas.*, models.name AS model_name
    FROM replicas JOIN models ON models.id = replicas.model_id
    WHERE coalesce(:model, models.name) = models.name
      AND coalesce(:alias, replicas.alias) = replicas.alias
    ORDER BY models.name, replicas.alias, replicas.server, replicas.replica
"""
# A replica that has not reported for this long is forgotten (by the next report).
REPLICA_KEPT = timedelta(days=7)
_SCHEDULES = """
    SELECT monitor_schedules.*, models.name AS model_name
    FROM monitor_schedules JOIN models ON models.id = monitor_schedules.model_id
"""
# "user" is a reserved word of PostgreSQL's: quoted wherever it is named.
_INSERT_INTO_TOKENS = """
    INSERT INTO tokens (id, "user", scope, models, secret_hash, created_at, created_by,
                        expires_at)
    VALUES (:id, :user, :scope, :models, :secret_hash, :now, :actor, :expires_at)
"""
_TOKENS_BY_ID = "SELECT * FROM tokens WHERE id = :id"
# A report's body without its "profile": removed by the database, which has a word for
# it on each engine (elsewhere it is left in, and dropped in Python).
_WITHOUT_PROFILE = {
    "sqlite": "json_remove(monitor_reports.body, '$.profile')",
    "postgresql": "((monitor_reports.body)::jsonb - 'profile')::json",
}


@dataclasses.dataclass
class _Links:
    """What versions link to, by version id: read for many versions at once."""

    parents: dict[int, list[int]]
    datasets: dict[int, list[DatasetRef]]
    labels: dict[int, dict[str, str]]


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _now() -> datetime:
    return datetime.now(UTC)


def _other_kind(model: str, kind: str, entity: str) -> RefExistsError:
    return RefExistsError(
        f"{model!r} is {_a(kind)}, not {_a(entity)}: models and datasets share one "
        "namespace; choose another name"
    )


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _token_details(token: Token) -> dict[str, Any]:
    """What a token's events record of it: never its secret, nor the secret's hash."""
    expires = None if token.expires_at is None else token.expires_at.isoformat()
    return {
        "token": token.id,
        "user": token.user,
        "scope": token.scope,
        "models": token.models,
        "expires_at": expires,
    }


class Registry:
    """Metadata of one repository, in SQL (``registry.db``)."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.url = url
        self.file = self.db.file  # the SQLite database file, if there is one
        # Named in errors: the file a user can restore, or the URL without its password.
        self.where = self.db.where
        self.read_only = self.db.read_only

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the registry (imports SQLAlchemy)."""
        return self.db.engine

    # -- transactions -------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse, before anything is written, a change by a user who may only read."""
        if self.read_only:
            raise ReadOnlyRepositoryError(
                f"this changes the repository, and you may only read it ({self.where} or "
                "its folder is not writable for you); run it as a user who can write there"
            )

    def _write(self) -> AbstractContextManager[Tx]:
        self.check_writable()
        return self.db.write()

    def _read(self) -> AbstractContextManager[Tx]:
        return self.db.read()

    # -- schema -------------------------------------------------------------------

    def create(self) -> None:
        """Create the schema in an empty database (through the migrations), in WAL mode
        (readers never wait for a writer); the mode stays with the file."""
        if self.file is not None:
            # Outside a transaction, as it must be.
            self.db.raw(lambda conn: conn.execute("PRAGMA journal_mode=WAL").close())
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema up to date with Alembic (imported only when needed)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._write() as tx:
            config.attributes["connection"] = tx.sa
            command.upgrade(config, "head")

    def check_schema(self) -> None:
        # Damage and failures come out of _read as they are: the advice to re-create
        # the repository that a missing table once got would throw every version away.
        with self._read() as tx:
            raw = tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        raw = "0" if raw is None else raw
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
        if found < SCHEMA_VERSION and self.read_only:
            raise RepositoryFormatError(
                f"the registry {self.where} has schema {found}, older than this modelkeep's "
                f"({SCHEMA_VERSION}), and you may only read it: someone who can write the "
                "repository must open it once with this release, which upgrades it"
            )
        if found < SCHEMA_VERSION:
            self.migrate()
        if found > SCHEMA_VERSION:
            raise RepositoryFormatError(
                f"this repository ({self.where}) uses registry schema {found}, newer than "
                f"this modelkeep understands ({SCHEMA_VERSION}); upgrade with "
                "`pip install -U modelkeep`"
            )

    def holds_schema(self) -> bool:
        """Whether the database holds a registry schema already (any version)."""
        from sqlalchemy import inspect

        with self._read() as tx:
            return bool(inspect(tx.sa).has_table("meta"))

    def settings(self) -> dict[str, str]:
        """The repository's own settings kept in the registry (``setting.*`` keys of
        ``meta``): where a shared repository keeps what a folder keeps in config.json."""
        with self._read() as tx:
            rows = tx.rows("SELECT key, value FROM meta WHERE key LIKE 'setting.%'")
        return {r.key.removeprefix("setting."): r.value for r in rows}

    def version_total(self) -> int:
        """How many versions the registry holds, of every model."""
        with self._read() as tx:
            return int(tx.scalar("SELECT count(*) FROM versions"))

    def set_settings(self, values: dict[str, str]) -> None:
        with self._write() as tx:
            for key, value in values.items():
                params = {"key": f"setting.{key}", "value": value}
                if not tx.run("UPDATE meta SET value = :value WHERE key = :key", params):
                    tx.run("INSERT INTO meta (key, value) VALUES (:key, :value)", params)

    def integrity_problems(self) -> list[str]:
        """What SQLite's own check finds wrong with the database file (empty when it
        is sound, and on engines that keep their own)."""
        if self.file is None:
            return []
        try:
            with self._read() as tx:
                found = [str(r[0]) for r in tx.rows("PRAGMA quick_check(20)")]
        except RegistryDamagedError as exc:
            return [f"registry: {exc}"]
        return [] if found == ["ok"] else [f"registry: {self.where}: {f}" for f in found]

    # -- models -------------------------------------------------------------------

    def check_entity(self, model: str, entity: str) -> None:
        """Refuse, before anything is stored, a version of ``entity`` ("model" or
        "dataset") under a name the other kind holds (``add_version`` checks again,
        atomically)."""
        with self._read() as tx:
            kind = tx.scalar("SELECT kind FROM models WHERE name = :name", {"name": model})
        if kind is not None and kind != entity:
            raise _other_kind(model, kind, entity)

    def model_names(self) -> list[str]:
        with self._read() as tx:
            return [r[0] for r in tx.rows(_MODEL_NAMES)]

    def models(self) -> list[ModelInfo]:
        q = """
            SELECT models.name, models.default_branch, models.created_at,
                   count(versions.id), max(versions.number), models.kind
            FROM models LEFT OUTER JOIN versions ON models.id = versions.model_id
            GROUP BY models.id, models.name, models.default_branch, models.created_at,
                     models.kind
            ORDER BY models.name
        """
        with self._read() as tx:
            return [
                ModelInfo(name, branch, decode_time(created), count, latest, kind)
                for name, branch, created, count, latest, kind in tx.rows(q)
            ]

    def model(self, name: str) -> ModelInfo:
        """One model and a summary of its versions (ModelNotFoundError if none)."""
        with self._read() as tx:
            m = self._model_row(tx, name)
            count, latest = tx.one(
                "SELECT count(*), max(number) FROM versions WHERE model_id = :id", {"id": m.id}
            )
        return ModelInfo(m.name, m.default_branch, decode_time(m.created_at), count, latest, m.kind)

    def _model_row(self, tx: Tx, name: str) -> Any:
        row = tx.first(_MODEL_BY_NAME, {"name": name})
        if row is None:
            names = [r[0] for r in tx.rows(_MODEL_NAMES)]
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
        with self._read() as tx:
            return str(self._model_row(tx, model).default_branch)

    # -- versions -----------------------------------------------------------------

    def _links(self, tx: Tx, version_ids: Sequence[int], into: _Links) -> None:
        """Parents (as numbers), datasets and labels of many versions, three queries."""
        ids = {"ids": Many(version_ids)}
        for vid, number in tx.rows(_PARENTS_OF, ids):
            into.parents.setdefault(vid, []).append(number)
        for d in tx.rows(_DATASETS_OF, ids):
            into.datasets.setdefault(d.version_id, []).append(
                DatasetRef(d.path, d.content_id, d.size)
            )
        for vid, key, value in tx.rows(_LABELS_OF, ids):
            into.labels.setdefault(vid, {})[key] = value

    def _versions(self, tx: Tx, model: str, rows: Sequence[Any]) -> list[Version]:
        links = _Links({}, {}, {})
        ids = [r.id for r in rows]
        # Chunks keep the IN lists under SQLite's bound-parameter limit.
        for start in range(0, len(ids), 500):
            self._links(tx, ids[start : start + 500], links)
        # Thousands of acyclic records at once: the cycle collector, run again and again
        # as they are made, would find nothing and cost a tenth of the time.
        with _no_cycle_collection() if len(rows) > 1000 else contextlib.nullcontext():
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

    def _version(self, tx: Tx, model: str, row: Any) -> Version:
        return self._versions(tx, model, [row])[0]

    def _version_of_row(
        self,
        model: str,
        row: Any,
        parents: tuple[int, ...],
        ds: tuple[DatasetRef, ...],
        labels: dict[str, str],
    ) -> Version:
        lineage = decode_json(row.lineage) or {}
        code = lineage.get("code")
        return Version(
            model=model,
            number=row.number,
            branch=row.branch,
            parents=parents,
            message=row.message,
            author=row.author,
            created_at=decode_time(row.created_at),
            params=decode_json(row.params),
            metrics=decode_json(row.metrics),
            datasets=ds,
            code=CodeRef(**code) if code else None,
            environment=lineage.get("environment", {}),
            tree_id=row.tree_id,
            size=row.size,
            file_count=row.file_count,
            kind=row.kind,
            status=row.status,
            artifact=decode_json(row.artifact) or {},
            annotations={k: v for k, v in lineage.items() if k not in ("code", "environment")},
            labels=labels,
        )

    def _version_row(self, tx: Tx, model_id: int, model: str, number: int) -> Any:
        row = tx.first(
            "SELECT * FROM versions WHERE model_id = :model_id AND number = :number",
            {"model_id": model_id, "number": number},
        )
        if row is None:
            latest = tx.scalar(_LATEST, {"model_id": model_id})
            raise VersionNotFoundError(
                f"{model} has no version {number} (it has versions 1..{latest})"
                if latest
                else f"{model} has no versions yet"
            )
        return row

    def version(self, model: str, number: int) -> Version:
        with self._read() as tx:
            m = self._model_row(tx, model)
            return self._version(tx, model, self._version_row(tx, m.id, model, number))

    def version_at(
        self, model: str, ref: str | None = None, kinds: Sequence[str] = REF_KINDS
    ) -> Version:
        """The version a ref names (``None``: the model's default branch), read in one
        transaction, so that a ref moved meanwhile is seen either before or after."""
        wanted = ("branch",) if ref is None else kinds
        with self._read() as tx:
            row = tx.first(_VERSION_AT_REF, {"model": model, "ref": ref})
            if row is None or row.ref_kind not in wanted:
                # The lookups one by one, which say what is missing.
                m = self._model_row(tx, model)
                ref_row = self._ref_row(tx, m.id, model, ref or m.default_branch, wanted)
                row = tx.one(_VERSION_BY_ID, {"id": ref_row.version_id})
            return self._version(tx, model, row)

    def versions(
        self, model: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Version]:
        """Versions of ``model``, newest first: all, or a page of at most ``limit``
        (numbered below ``before``), paged in SQL over the (model, number) index."""
        with self._read() as tx:
            m = self._model_row(tx, model)
            rows = tx.rows(
                _VERSIONS,
                {
                    "model_id": m.id,
                    "before": NO_LIMIT if before is None else before,
                    "limit": NO_LIMIT if limit is None else limit,
                },
            )
            return self._versions(tx, model, rows)

    def search(
        self, model: str, where: Where | None, order: Order | None, limit: int | None
    ) -> list[Version]:
        """Versions of ``model`` that ``where`` holds for, in ``order`` (default: newest
        first), at most ``limit``: filtered, sorted and paged in SQL. The one statement
        SQLAlchemy builds here: the search compiler turns a parsed query into it."""
        from sqlalchemy import select

        from modelkeep.registry import schema as t
        from modelkeep.registry.query import order_sql, to_sql

        q = select(t.versions)
        q = q.order_by(*order_sql(order)) if order else q.order_by(t.versions.c.number.desc())
        if where is not None:
            q = q.where(to_sql(where))
        if limit is not None:
            q = q.limit(limit)
        with self._read() as tx:
            m = self._model_row(tx, model)
            rows = tx.sa.execute(q.where(t.versions.c.model_id == m.id)).all()
            return self._versions(tx, model, rows)

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
        with self._write() as tx:
            m = self._model_row(tx, model)
            row = self._version_row(tx, m.id, model, number)
            was = {
                key: value
                for key, value in tx.rows(
                    "SELECT key, value FROM labels WHERE version_id = :id", {"id": row.id}
                )
            }
            absent = [k for k in remove if k not in was]
            if absent:
                raise NotFoundError(
                    f"{model}:{number} has no label {', '.join(map(repr, absent))} (it has "
                    f"{', '.join(sorted(was)) or 'none'})"
                )
            now = _now()
            for key, value in values.items():
                params = {"id": row.id, "key": key, "value": value, "at": now, "by": actor}
                if key in was:
                    tx.run(
                        "UPDATE labels SET value = :value, updated_at = :at, updated_by = :by "
                        "WHERE version_id = :id AND key = :key",
                        params,
                    )
                else:
                    tx.run(
                        "INSERT INTO labels (version_id, key, value, updated_at, updated_by) "
                        "VALUES (:id, :key, :value, :at, :by)",
                        params,
                    )
            if remove:
                tx.run(
                    "DELETE FROM labels WHERE version_id = :id AND key IN (:keys)",
                    {"id": row.id, "keys": Many(remove)},
                )
            details: dict[str, Any] = {}
            if values:
                details["set"] = values
                if changed := {k: was[k] for k in values if k in was}:
                    details["was"] = changed
            if remove:
                details["removed"] = {k: was[k] for k in remove}
            self._append_event(
                tx,
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
            return self._version(tx, model, row)

    def version_count(self, model: str) -> int:
        with self._read() as tx:
            m = self._model_row(tx, model)
            count = tx.scalar("SELECT count(*) FROM versions WHERE model_id = :id", {"id": m.id})
            return int(count or 0)

    def parents_map(self, model: str) -> dict[int, tuple[int, ...]]:
        """version number → parent numbers, for ancestry walks in one query."""
        with self._read() as tx:
            m = self._model_row(tx, model)
            out: dict[int, list[int]] = {
                n: []
                for (n,) in tx.rows(
                    "SELECT number FROM versions WHERE model_id = :id", {"id": m.id}
                )
            }
            q = """
                SELECT child.number, parent.number
                FROM version_parents
                JOIN versions AS child ON child.id = version_parents.version_id
                JOIN versions AS parent ON parent.id = version_parents.parent_id
                WHERE child.model_id = :id
                ORDER BY child.number, version_parents.position
            """
            for c, p in tx.rows(q, {"id": m.id}):
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
        created_at: datetime | None = None,
        identity: str | None = None,
    ) -> Version:
        """Append the next version of ``model`` and advance its branch, atomically.

        The model is created on its first commit. ``parents`` defaults to the
        branch head; the number is the model's highest plus one. ``created_at``: when
        the version was made, for one received from another repository (default now).
        ``identity``: that version's identity — VersionExistsError, and nothing
        written, if the model holds it already, checked in the same transaction, so
        that two processes receiving one version at once make one version of it.
        """
        for _attempt in range(20):
            try:
                with self._write() as tx:
                    return self._add_version(
                        tx,
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
                        created_at=created_at,
                        identity=identity,
                    )
            except IntegrityFailure:
                # Lost a race for the number (possible on engines without BEGIN
                # IMMEDIATE): the transaction rolled back, so try again.
                continue
            except RefMovedError:
                # Lost the branch to another process (PostgreSQL): if it published
                # this same version, that is the answer; else the move stands refused.
                if identity is not None:
                    with self._read() as tx:
                        m = tx.first(_MODEL_BY_NAME, {"name": model})
                        if m is not None:
                            self._refuse_known(tx, m.id, model, identity)
                raise
        raise RegistryBusyError("could not allocate a version number after 20 attempts; retry")

    def _add_version(
        self,
        tx: Tx,
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
        created_at: datetime | None = None,
        identity: str | None = None,
    ) -> Version:
        now = _now()
        m = tx.first(_MODEL_BY_NAME, {"name": model})
        if m is not None and identity is not None:
            self._refuse_known(tx, m.id, model, identity)
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
            model_id = tx.insert(
                "INSERT INTO models (name, default_branch, created_at, kind) "
                "VALUES (:name, :branch, :at, :kind) RETURNING id",
                {"name": model, "branch": default_branch, "at": now, "kind": entity},
            )
            branch = default_branch
            head = None
        else:
            if m.kind != entity:
                raise _other_kind(model, m.kind, entity)
            model_id = m.id
            branch = branch or m.default_branch
            head = self._ref_row(tx, model_id, model, branch, kinds=("branch",))
        head_number = tx.scalar(_NUMBER_OF, {"id": head.version_id}) if head is not None else None
        parent_numbers = (
            list(parents)
            if parents is not None
            else ([head_number] if head_number is not None else [])
        )
        parent_ids = [self._version_row(tx, model_id, model, p).id for p in parent_numbers]
        number = (tx.scalar(_LATEST, {"model_id": model_id}) or 0) + 1
        version_id = tx.insert(
            """
            INSERT INTO versions (model_id, number, branch, tree_id, size, file_count, message,
                                  author, created_at, kind, status, params, metrics, lineage,
                                  artifact)
            VALUES (:model_id, :number, :branch, :tree_id, :size, :file_count, :message,
                    :author, :created_at, :kind, :status, :params, :metrics, :lineage,
                    :artifact)
            RETURNING id
            """,
            {
                "model_id": model_id,
                "number": number,
                "branch": branch,
                "tree_id": tree_id,
                "size": size,
                "file_count": file_count,
                "message": message,
                "author": author,
                "created_at": created_at or now,
                "kind": kind,
                "status": status,
                "params": params,
                "metrics": metrics,
                "lineage": lineage,
                "artifact": artifact,
            },
        )
        for pos, parent_id in enumerate(parent_ids):
            tx.run(
                "INSERT INTO version_parents (version_id, position, parent_id) "
                "VALUES (:id, :pos, :parent)",
                {"id": version_id, "pos": pos, "parent": parent_id},
            )
        for d in datasets:
            tx.run(
                "INSERT INTO datasets (version_id, path, content_id, size) "
                "VALUES (:id, :path, :content_id, :size)",
                {"id": version_id, "path": d.path, "content_id": d.content_id, "size": d.size},
            )
        if head is None:
            tx.run(
                "INSERT INTO refs (model_id, kind, name, version_id, updated_at) "
                "VALUES (:model_id, 'branch', :name, :version_id, :at)",
                {"model_id": model_id, "name": branch, "version_id": version_id, "at": now},
            )
        else:
            self._cas(tx, head.id, head.version_id, version_id, now)
        self._append_event(
            tx,
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
        version = self._version(tx, model, tx.one(_VERSION_BY_ID, {"id": version_id}))
        # Hashed from the row as read back, as any later reader hashes it.
        self._identify_new(tx, model_id, version_id, version, parent_ids)
        return version

    # -- identities ---------------------------------------------------------------

    @staticmethod
    def _refuse_known(tx: Tx, model_id: int, model: str, identity: str) -> None:
        """VersionExistsError if a version of ``model`` holds ``identity``."""
        found = tx.rows(_NUMBERS_OF, {"model_id": model_id, "identities": Many([identity])})
        if found:
            number = int(found[0][1])
            raise VersionExistsError(f"{model}:{number} is this version already", number)

    def identities(self, model: str, numbers: Collection[int] | None = None) -> dict[int, str]:
        """Number → identity (``registry.identity``) of every version of ``model``, or of
        those of ``numbers`` that exist; empty if there is no such model. Read as stored;
        any not stored yet are filled in first (``_fill_identities``)."""
        with self._read() as tx:
            m = tx.first(_MODEL_BY_NAME, {"name": model})
            if m is None:
                return {}
            if numbers is None:
                rows = tx.rows(_IDENTITIES, {"model_id": m.id})
            else:
                wanted = sorted(set(numbers))
                rows = []
                for start in range(0, len(wanted), _IDENTITY_BATCH):
                    chunk = Many(wanted[start : start + _IDENTITY_BATCH])
                    rows += tx.rows(_IDENTITIES_OF, {"model_id": m.id, "numbers": chunk})
        found: dict[int, str | None] = dict(rows)
        if all(found.values()):
            return {n: str(i) for n, i in found.items()}
        known = self._fill_identities(model, m.id)
        return known if numbers is None else {n: known[n] for n in sorted(found)}

    def numbers_by_identity(self, model: str, identities: Collection[str]) -> dict[str, int]:
        """Identity → number of the versions of ``model`` that hold one of
        ``identities`` (those not here are left out): one query over the (model,
        identity) index, once every version's identity is stored."""
        wanted = sorted(set(identities))
        found: dict[str, int] = {}
        with self._read() as tx:
            m = tx.first(_MODEL_BY_NAME, {"name": model})
            if m is None:
                return {}
            if not tx.scalar(_UNIDENTIFIED, {"model_id": m.id}):
                for start in range(0, len(wanted), _IDENTITY_BATCH):
                    chunk = Many(wanted[start : start + _IDENTITY_BATCH])
                    found.update(tx.rows(_NUMBERS_OF, {"model_id": m.id, "identities": chunk}))
                return found
        # One asked for may be among those not stored yet: fill them in, and answer
        # from what that computed.
        asked = set(wanted)
        for number, identity in sorted(self._fill_identities(model, m.id).items(), reverse=True):
            if identity in asked:
                found[identity] = number  # the lowest number last, as the query has it
        return found

    def _fill_identities(self, model: str, model_id: int) -> dict[int, str]:
        """Number → identity of every version of the model: those not stored yet (made
        before identities were stored, or on a parent that had none then) computed in
        number order, parents first, and stored unless this process may only read.

        A write during a read, made safe: an identity is a function of its version's
        row and its parents' identities alone, so two processes filling in the same
        versions at once compute the same values, and the later insert of one stored
        meanwhile is a no-op. A batch per transaction: a crash leaves some stored and
        the rest to fill in next time, each one right."""
        with self._read() as tx:
            stored: dict[int, str | None] = dict(tx.rows(_IDENTITIES, {"model_id": model_id}))
        known = {n: i for n, i in stored.items() if i is not None}
        missing = [n for n, i in stored.items() if i is None]  # ascending, as read
        for start in range(0, len(missing), _IDENTITY_BATCH):
            chunk = Many(missing[start : start + _IDENTITY_BATCH])
            with self._read() as tx:
                rows = tx.rows(
                    "SELECT * FROM versions WHERE model_id = :model_id "
                    "AND number IN (:numbers) ORDER BY number",
                    {"model_id": model_id, "numbers": chunk},
                )
                versions = self._versions(tx, model, rows)
            computed: list[tuple[int, str]] = []
            for row, version in zip(rows, versions, strict=True):
                # A parent's number is below its child's: read or computed already.
                identity = identity_of(version, [known[p] for p in version.parents])
                known[version.number] = identity
                computed.append((row.id, identity))
            if not self.read_only:
                with self._write() as tx:
                    self._store_identities(tx, model_id, computed)
        return known

    def identity_problems(self, *, repair: bool = False) -> list[str]:
        """Stored identities that differ from those computed afresh from each version's
        row and its parents' (fsck): push, pull and clone match versions by identity,
        so a wrong one would make two versions one, or one version two. ``repair``
        stores the computed ones in their place."""
        problems: list[str] = []
        for model in self.model_names():
            with self._read() as tx:
                m = tx.first(_MODEL_BY_NAME, {"name": model})
                if m is None:
                    continue  # deleted meanwhile
                stored: dict[int, str | None] = dict(tx.rows(_IDENTITIES, {"model_id": m.id}))
                rows = tx.rows(
                    "SELECT * FROM versions WHERE model_id = :model_id ORDER BY number",
                    {"model_id": m.id},
                )
                versions = self._versions(tx, model, rows)
            fresh: dict[int, str] = {}
            wrong: list[tuple[int, str]] = []
            for row, version in zip(rows, versions, strict=True):
                identity = identity_of(version, [fresh[n] for n in version.parents])
                fresh[version.number] = identity
                held = stored.get(version.number)
                if held is not None and held != identity:
                    wrong.append((row.id, identity))
                    problems.append(
                        f"registry: {version.rev}: its stored identity {held[:12]} is not "
                        f"that of its content and lineage ({identity[:12]}): `modelkeep "
                        "fsck --repair` stores the right one"
                    )
            if repair and wrong:
                self.check_writable()
                with self._write() as tx:
                    tx.run(
                        "DELETE FROM version_identities WHERE version_id IN (:ids)",
                        {"ids": Many([version_id for version_id, _ in wrong])},
                    )
                    self._store_identities(tx, m.id, wrong)
        return problems

    @staticmethod
    def _store_identities(tx: Tx, model_id: int, pairs: Sequence[tuple[int, str]]) -> None:
        """Store (version id, identity) pairs of one model in one statement; a version
        whose identity is stored already keeps it (the same value: see
        ``_fill_identities``)."""
        if not pairs:
            return
        params: dict[str, Any] = {"model_id": model_id}
        rows = []
        for i, (version_id, identity) in enumerate(pairs):
            params[f"v{i}"], params[f"i{i}"] = version_id, identity
            rows.append(f"(:v{i}, :model_id, :i{i})")
        values = ", ".join(rows)
        sql = f"INSERT INTO version_identities (version_id, model_id, identity) VALUES {values}"  # noqa: S608 - placeholders only
        tx.run(f"{sql} ON CONFLICT (version_id) DO NOTHING", params)

    def _identify_new(
        self, tx: Tx, model_id: int, version_id: int, version: Version, parent_ids: Sequence[int]
    ) -> None:
        """Store a new version's identity in the transaction that adds it, when its
        parents' are stored (else it is filled in with theirs, when first needed)."""
        parents: dict[int, str] = {}
        if parent_ids:
            parents = dict(
                tx.rows(
                    "SELECT version_id, identity FROM version_identities "
                    "WHERE version_id IN (:ids)",
                    {"ids": Many(parent_ids)},
                )
            )
            if any(p not in parents for p in parent_ids):
                return
        identity = identity_of(version, [parents[p] for p in parent_ids])
        self._store_identities(tx, model_id, [(version_id, identity)])

    def tree_ids(self) -> list[tuple[str, int, str]]:
        """(model, number, tree id) of every version."""
        q = """
            SELECT models.name, versions.number, versions.tree_id
            FROM versions JOIN models ON models.id = versions.model_id
            ORDER BY models.name, versions.number
        """
        with self._read() as tx:
            return [(m, n, tid) for m, n, tid in tx.rows(q)]

    def artifact_ids(self) -> list[tuple[str, int, str]]:
        """(model, number, object id) of every object a version's artifact names
        outside its tree (its reference profile)."""
        q = """
            SELECT models.name, versions.number, versions.artifact
            FROM versions JOIN models ON models.id = versions.model_id
            WHERE versions.artifact IS NOT NULL
        """
        with self._read() as tx:
            found = [(m, n, decode_json(art)) for m, n, art in tx.rows(q)]
        return [
            (m, n, art["profile"])
            for m, n, art in found
            if isinstance(art, dict) and art.get("profile")
        ]

    # -- refs ---------------------------------------------------------------------

    def _ref_row(
        self,
        tx: Tx,
        model_id: int,
        model: str,
        name: str,
        kinds: Sequence[str] = REF_KINDS,
    ) -> Any:
        row = tx.first(_REF_BY_NAME, {"model_id": model_id, "name": name})
        if row is None or row.kind not in kinds:
            have = tx.rows(
                "SELECT kind, name FROM refs WHERE model_id = :model_id AND kind IN (:kinds) "
                "ORDER BY kind, name",
                {"model_id": model_id, "kinds": Many(kinds)},
            )
            what = " or ".join(kinds) if len(kinds) < len(REF_KINDS) else "branch, alias or tag"
            listing = ", ".join(f"{k} {n}" for k, n in have) or "none"
            hint = f"; it is {_a(row.kind)}" if row is not None else ""
            raise RefNotFoundError(f"{model} has no {what} named {name!r}{hint} (has: {listing})")
        return row

    def _ref(self, tx: Tx, model: str, row: Any) -> Ref:
        number = tx.scalar(_NUMBER_OF, {"id": row.version_id})
        return Ref(model, row.kind, row.name, int(number or 0), decode_time(row.updated_at))

    def ref(self, model: str, name: str, kinds: Sequence[str] = REF_KINDS) -> Ref:
        with self._read() as tx:
            m = self._model_row(tx, model)
            return self._ref(tx, model, self._ref_row(tx, m.id, model, name, kinds))

    def refs(self, model: str, kind: str | None = None) -> list[Ref]:
        q = """
            SELECT refs.kind, refs.name, versions.number, refs.updated_at
            FROM refs JOIN versions ON versions.id = refs.version_id
            WHERE refs.model_id = :model_id AND coalesce(:kind, refs.kind) = refs.kind
            ORDER BY refs.kind, refs.name
        """
        with self._read() as tx:
            m = self._model_row(tx, model)
            return [
                Ref(model, k, name, int(number), decode_time(at))
                for k, name, number, at in tx.rows(q, {"model_id": m.id, "kind": kind})
            ]

    def _cas(self, tx: Tx, ref_id: int, expected: int, new: int, now: datetime) -> None:
        done = tx.run(
            "UPDATE refs SET version_id = :new, updated_at = :at "
            "WHERE id = :id AND version_id = :expected",
            {"new": new, "at": now, "id": ref_id, "expected": expected},
        )
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
        tx: Tx | None = None,
    ) -> tuple[int | None, Ref]:
        """Point ref ``name`` at version ``to`` (creating it if allowed); logs the event.

        ``expected`` makes it a compare-and-swap on the version the caller saw;
        ``exclusive`` refuses to touch a ref that exists; ``tx``: inside that
        transaction, with what else it writes. Returns the previous target (None if
        created) and the ref now.
        """
        if tx is None:
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
                    tx=own,
                )
        m = self._model_row(tx, model)
        target = self._version_row(tx, m.id, model, to)
        row = tx.first(_REF_BY_NAME, {"model_id": m.id, "name": name})
        now = _now()
        if row is None:
            if not create:
                self._ref_row(tx, m.id, model, name, (kind,))  # raises with a listing
            if expected is not None:
                # The caller saw it at a version: someone deleted it since.
                raise RefMovedError(
                    f"{model}@{name} does not exist, not at {expected}: another change came "
                    "first; look at its history and try again"
                )
            tx.run(
                "INSERT INTO refs (model_id, kind, name, version_id, updated_at) "
                "VALUES (:model_id, :kind, :name, :version_id, :at)",
                {"model_id": m.id, "kind": kind, "name": name, "version_id": target.id, "at": now},
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
            before = tx.scalar(_NUMBER_OF, {"id": row.version_id})
            if expected is not None and before != expected:
                raise RefMovedError(
                    f"{model}@{name} points at {before}, not {expected}: another change came "
                    "first; look at its history and try again",
                    hint=Hint(
                        cli=f"`modelkeep history {model}@{name}` shows it",
                        api=f"Repo.history('{model}@{name}') shows it",
                    ),
                )
            self._cas(tx, row.id, row.version_id, target.id, now)
        self._append_event(
            tx,
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
        new = tx.one(_REF_BY_NAME, {"model_id": m.id, "name": name})
        return before, self._ref(tx, model, new)

    def delete_ref(self, *, model: str, name: str, kind: str, actor: str, message: str = "") -> Ref:
        with self._write() as tx:
            m = self._model_row(tx, model)
            row = self._ref_row(tx, m.id, model, name, (kind,))
            ref = self._ref(tx, model, row)
            if kind == "branch" and name == m.default_branch:
                raise RefExistsError(
                    f"{name!r} is the default branch of {model} and cannot be deleted"
                )
            tx.run("DELETE FROM refs WHERE id = :id", {"id": row.id})
            self._append_event(
                tx,
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

    def _deployment(self, model: str, row: Any) -> Deployment:
        return Deployment(
            row.id,
            model,
            row.alias,
            row.strategy,
            row.primary_version,
            row.candidate_version,
            row.percent,
            tuple(decode_json(row.steps)),
            row.interval_seconds,
            row.status,
            row.actor,
            decode_time(row.created_at),
            decode_time(row.updated_at),
            decode_json(row.stats),
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
        with self._write() as tx:
            m = self._model_row(tx, model)
            self._version_row(tx, m.id, model, candidate)
            active = tx.first(
                "SELECT id, strategy FROM deployments "
                "WHERE model_id = :model_id AND alias = :alias AND status = 'active'",
                {"model_id": m.id, "alias": alias},
            )
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
            did = tx.insert(
                """
                INSERT INTO deployments (model_id, alias, strategy, primary_version,
                                         candidate_version, percent, steps, interval_seconds,
                                         status, actor, created_at, updated_at, stats)
                VALUES (:model_id, :alias, :strategy, :primary, :candidate, :percent, :steps,
                        :interval, :status, :actor, :at, :at, :stats)
                RETURNING id
                """,
                {
                    "model_id": m.id,
                    "alias": alias,
                    "strategy": strategy,
                    "primary": primary,
                    "candidate": candidate,
                    "percent": percent,
                    "steps": list(steps),
                    "interval": interval_seconds,
                    "status": status,
                    "actor": actor,
                    "at": now,
                    "stats": {},
                },
            )
            self._append_event(
                tx,
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
            row = tx.one("SELECT * FROM deployments WHERE id = :id", {"id": did})
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
        with self._write() as tx:
            row = tx.first(_DEPLOYMENTS + " WHERE deployments.id = :id", {"id": deployment_id})
            if row is None:
                raise NotFoundError(f"no deployment #{deployment_id}")
            if promote is not None:
                expected, why = promote
                self.move_ref(
                    tx=tx,
                    model=row.model_name,
                    name=row.alias,
                    kind="alias",
                    to=row.candidate_version,
                    actor=actor,
                    action="promote",
                    message=why,
                    expected=expected,
                )
            done = tx.run(
                "UPDATE deployments SET status = :status, updated_at = :at "
                "WHERE id = :id AND status = :expected",
                {"status": status, "at": _now(), "id": deployment_id, "expected": expected_status},
            )
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
                tx,
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
            new = tx.one("SELECT * FROM deployments WHERE id = :id", {"id": deployment_id})
            return self._deployment(row.model_name, new)

    def record_deployment_stats(self, deployment_id: int, stats: dict[str, Any]) -> None:
        """Shadow/canary figures measured by the servers (not an event: a gauge)."""
        with self._write() as tx:
            tx.run(
                "UPDATE deployments SET stats = :stats WHERE id = :id",
                {"stats": stats, "id": deployment_id},
            )

    def deployments(
        self, model: str | None = None, alias: str | None = None, active: bool = False
    ) -> list[Deployment]:
        q = (
            _DEPLOYMENTS
            + """
            WHERE coalesce(:model, models.name) = models.name
              AND coalesce(:alias, deployments.alias) = deployments.alias
              AND (deployments.status = 'active' OR :any_status = 1)
            ORDER BY deployments.id DESC
            """
        )
        params = {"model": model, "alias": alias, "any_status": 0 if active else 1}
        with self._read() as tx:
            if model is not None:
                self._model_row(tx, model)
            return [self._deployment(r.model_name, r) for r in tx.rows(q, params)]

    def report_replica(
        self,
        model: str,
        alias: str,
        server: str,
        replica: str,
        *,
        host: str,
        pid: int,
        version: int | None,
        versions: Sequence[int],
        state: str,
        error: str | None,
    ) -> None:
        """What a replica serves now (not an event: a gauge, like deployment stats): one
        row per (server, replica), overwritten by each report. Rows of replicas silent
        for ``REPLICA_KEPT`` are deleted in the same transaction."""
        with self._write() as tx:
            m = self._model_row(tx, model)
            now = _now()
            tx.run(
                _REPORT_REPLICA,
                {
                    "server": server,
                    "replica": replica,
                    "model_id": m.id,
                    "alias": alias,
                    "host": host,
                    "pid": pid,
                    "version": version,
                    "versions": list(versions),
                    "state": state,
                    "error": error,
                    "now": now,
                },
            )
            tx.run("DELETE FROM replicas WHERE seen_at < :old", {"old": now - REPLICA_KEPT})

    def replicas(self, model: str | None = None, alias: str | None = None) -> list[Replica]:
        """Replicas as they last reported, by model, alias, server and replica."""
        with self._read() as tx:
            if model is not None:
                self._model_row(tx, model)
            return [
                Replica(
                    r.model_name,
                    r.alias,
                    r.server,
                    r.replica,
                    r.host,
                    r.pid,
                    r.version,
                    tuple(decode_json(r.versions)),
                    r.state,
                    r.error,
                    decode_time(r.started_at),
                    decode_time(r.seen_at),
                )
                for r in tx.rows(_REPLICAS, {"model": model, "alias": alias})
            ]

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
        merged window, never both, never neither). A part already gone means another
        worker merged it (two briefly believed they led): ConflictError, nothing
        stored, so no window is counted twice."""
        with self._write() as tx:
            m = self._model_row(tx, model)
            v = self._version_row(tx, m.id, model, number)
            if replaces:
                gone = len(set(replaces)) - tx.run(
                    "DELETE FROM monitor_reports WHERE id IN (:ids) "
                    "AND version_id = :version_id AND kind = 'window-part'",
                    {"ids": Many(sorted(set(replaces))), "version_id": v.id},
                )
                if gone:
                    raise ConflictError(
                        f"{gone} of the window parts of {model}:{number} to merge were "
                        "merged already by another worker; read the reports again"
                    )
            new = tx.insert(
                "INSERT INTO monitor_reports (version_id, at, kind, source, drifted, body) "
                "VALUES (:version_id, :at, :kind, :source, :drifted, :body) RETURNING id",
                {
                    "version_id": v.id,
                    "at": _now(),
                    "kind": kind,
                    "source": source,
                    "drifted": drifted,
                    "body": body,
                },
            )
            return new

    def reports(
        self, model: str, number: int, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Reports of one version (of one ``kind`` if given), newest first."""
        q = """
            SELECT * FROM monitor_reports
            WHERE version_id = :version_id AND coalesce(:kind, kind) = kind
            ORDER BY id DESC LIMIT :limit
        """
        with self._read() as tx:
            m = self._model_row(tx, model)
            v = self._version_row(tx, m.id, model, number)
            params = {"version_id": v.id, "kind": kind, "limit": limit or NO_LIMIT}
            return [
                {
                    "id": r.id,
                    "at": decode_time(r.at).isoformat(),
                    "kind": r.kind,
                    "source": r.source,
                    "drifted": bool(r.drifted),
                    **decode_json(r.body),
                }
                for r in tx.rows(q, params)
            ]

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
        with self._read() as tx:
            body = "monitor_reports.body"
            if not profiles:
                body = _WITHOUT_PROFILE.get(tx.dialect, body)
            q = f"""
                SELECT monitor_reports.id, monitor_reports.at, monitor_reports.kind,
                       monitor_reports.source, monitor_reports.drifted, versions.number,
                       {body} AS body
                FROM monitor_reports JOIN versions ON monitor_reports.version_id = versions.id
                WHERE versions.model_id = :model_id AND monitor_reports.at >= :since
                ORDER BY monitor_reports.at DESC, monitor_reports.id DESC
                LIMIT :limit
            """  # noqa: S608 - {body} is one of our constants, never input
            m = self._model_row(tx, model)
            params = {
                "model_id": m.id,
                "since": since if since is not None else datetime(1, 1, 1, tzinfo=UTC),
                "limit": limit or NO_LIMIT,
            }
            out = [
                {
                    "id": row.id,
                    "at": decode_time(row.at).isoformat(),
                    "kind": row.kind,
                    "source": row.source,
                    "drifted": bool(row.drifted),
                    "number": row.number,
                    **decode_json(row.body),
                }
                for row in tx.rows(q, params)
            ]
        if not profiles:
            for report in out:  # dialects without a JSON "remove key" leave it in
                report.pop("profile", None)
        return out

    # -- monitoring schedules -----------------------------------------------------

    def _schedule(self, row: Any) -> Schedule:
        return Schedule(
            id=row.id,
            model=row.model_name,
            revision=row.revision,
            every=int(row.every_seconds),
            data=row.data,
            target=row.target,
            created_at=decode_time(row.created_at),
            created_by=row.created_by,
            last_slot=(
                None if row.last_slot is None else datetime.fromtimestamp(row.last_slot, UTC)
            ),
            last_run_at=None if row.last_run_at is None else decode_time(row.last_run_at),
            last_status=row.last_status,
            last_report=row.last_report,
            last_error=row.last_error,
            active=bool(row.active),
        )

    def _schedule_row(self, tx: Tx, schedule_id: int) -> Any:
        row = tx.first(_SCHEDULES + " WHERE monitor_schedules.id = :id", {"id": schedule_id})
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
        with self._write() as tx:
            m = self._model_row(tx, model)
            same = tx.first(
                """
                SELECT id FROM monitor_schedules
                WHERE model_id = :model_id AND active = :yes AND revision = :revision
                  AND every_seconds = :every AND data = :data
                  AND coalesce(target, '') = coalesce(:target, '')
                  AND (target IS NULL) = (:target IS NULL)
                """,
                {
                    "model_id": m.id,
                    "yes": True,
                    "revision": revision,
                    "every": every,
                    "data": data,
                    "target": target,
                },
            )
            if same is not None:
                raise ConflictError(
                    f"schedule #{same.id} already checks {revision} every {period_text(every)} on "
                    f"{data}; remove it first",
                    hint=Hint(
                        cli=f"`modelkeep monitor unschedule {same.id}` removes it",
                        api=f"Repo.unschedule({same.id}) removes it",
                    ),
                )
            sid = tx.insert(
                """
                INSERT INTO monitor_schedules (model_id, revision, every_seconds, data, target,
                                               created_at, created_by, active)
                VALUES (:model_id, :revision, :every, :data, :target, :at, :actor, :yes)
                RETURNING id
                """,
                {
                    "model_id": m.id,
                    "revision": revision,
                    "every": every,
                    "data": data,
                    "target": target,
                    "at": _now(),
                    "actor": actor,
                    "yes": True,
                },
            )
            self._append_event(
                tx,
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
            return self._schedule(self._schedule_row(tx, sid))

    def schedule(self, schedule_id: int) -> Schedule:
        with self._read() as tx:
            return self._schedule(self._schedule_row(tx, schedule_id))

    def schedules(self, model: str | None = None, *, active: bool = True) -> list[Schedule]:
        """Schedules by id; only the active ones unless ``active`` is False."""
        q = (
            _SCHEDULES
            + """
            WHERE coalesce(:model, models.name) = models.name
              AND (monitor_schedules.active = :yes OR :any_state = 1)
            ORDER BY monitor_schedules.id
            """
        )
        params = {"model": model, "yes": True, "any_state": 0 if active else 1}
        with self._read() as tx:
            if model is not None:
                self._model_row(tx, model)
            return [self._schedule(r) for r in tx.rows(q, params)]

    def end_schedule(
        self, schedule_id: int, *, actor: str, ref_name: str | None, message: str
    ) -> Schedule:
        """Deactivate a schedule (kept, with its last outcome, for the record)."""
        with self._write() as tx:
            row = self._schedule_row(tx, schedule_id)
            done = tx.run(
                "UPDATE monitor_schedules SET active = :no WHERE id = :id AND active = :yes",
                {"id": schedule_id, "yes": True, "no": False},
            )
            if done != 1:
                raise ConflictError(
                    f"schedule #{schedule_id} ({row.revision}) was already removed",
                    hint=Hint(
                        cli="`modelkeep monitor schedules` lists the active ones",
                        api="Repo.schedules() lists the active ones",
                    ),
                )
            self._append_event(
                tx,
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
            return self._schedule(self._schedule_row(tx, schedule_id))

    def claim_slot(self, schedule_id: int, *, expected: int | None, slot: int) -> bool:
        """Compare-and-swap ``last_slot`` from ``expected`` (what the caller saw) to
        ``slot``. Exactly one of any number of racing callers gets True: only it runs
        the check, so a slot never runs twice."""
        with self._write() as tx:
            done = tx.run(
                """
                UPDATE monitor_schedules
                SET last_slot = :slot, last_run_at = :at, last_status = 'running',
                    last_report = NULL, last_error = NULL
                WHERE id = :id AND active = :yes
                  AND coalesce(last_slot, -1) = coalesce(:expected, -1)
                  AND (last_slot IS NULL) = (:expected IS NULL)
                """,
                {"slot": slot, "at": _now(), "id": schedule_id, "yes": True, "expected": expected},
            )
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
        with self._write() as tx:
            tx.run(
                "UPDATE monitor_schedules "
                "SET last_status = :status, last_report = :report, last_error = :error "
                "WHERE id = :id AND last_slot = :slot",
                {
                    "status": status,
                    "report": report,
                    "error": error,
                    "id": schedule_id,
                    "slot": slot,
                },
            )

    # -- tokens -------------------------------------------------------------------

    @staticmethod
    def _token(row: Any) -> Token:
        def when(value: Any) -> datetime | None:
            return None if value is None else decode_time(value)

        return Token(
            id=row.id,
            user=row.user,
            scope=row.scope,
            models=row.models,
            created_at=decode_time(row.created_at),
            created_by=row.created_by,
            expires_at=when(row.expires_at),
            revoked_at=when(row.revoked_at),
            revoked_by=row.revoked_by,
            last_used_at=when(row.last_used_at),
            secret_hash=row.secret_hash,
        )

    def _token_row(self, tx: Tx, token_id: str) -> Any:
        row = tx.first(_TOKENS_BY_ID, {"id": token_id})
        if row is None:
            raise NotFoundError(
                f"no token {quantities.named(token_id)}",
                hint=Hint(
                    cli="`modelkeep token list --all` lists them",
                    api="Repo.tokens.list(include_revoked=True) lists them",
                ),
            )
        return row

    def add_token(
        self,
        *,
        token_id: str,
        user: str,
        scope: str,
        models: str,
        secret_hash: str,
        expires_at: datetime | None,
        actor: str,
        message: str = "",
    ) -> Token:
        """Store a token (the hash of its secret, never the secret) and log
        ``token.create`` in one transaction; the event names the token, its user, scope,
        models and expiry, and nothing of its secret."""
        with self._write() as tx:
            if tx.first(_TOKENS_BY_ID, {"id": token_id}) is not None:
                raise ConflictError(f"a token {token_id} exists already; make another id")
            tx.run(
                _INSERT_INTO_TOKENS,
                {
                    "id": token_id,
                    "user": user,
                    "scope": scope,
                    "models": models,
                    "secret_hash": secret_hash,
                    "now": _now(),
                    "actor": actor,
                    "expires_at": expires_at,
                },
            )
            token = self._token_event(tx, token_id, "token.create", actor, message)
        return token

    def token(self, token_id: str) -> Token:
        with self._read() as tx:
            return self._token(self._token_row(tx, token_id))

    def tokens(self, include_revoked: bool = False) -> list[Token]:
        """Tokens oldest first; revoked ones too with ``include_revoked``."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL "
        q = f"SELECT * FROM tokens {where}ORDER BY created_at, id"  # noqa: S608 - our text
        with self._read() as tx:
            return [self._token(r) for r in tx.rows(q)]

    def revoke_token(self, token_id: str, by: str, message: str = "") -> Token:
        """Revoke a token for good and log ``token.revoke``, in one transaction."""
        with self._write() as tx:
            row = self._token_row(tx, token_id)
            if row.revoked_at is not None:
                raise ConflictError(
                    f"token {token_id} was revoked already, at "
                    f"{decode_time(row.revoked_at).isoformat(timespec='seconds')} by "
                    f"{row.revoked_by}"
                )
            tx.run(
                "UPDATE tokens SET revoked_at = :now, revoked_by = :by "
                "WHERE id = :id AND revoked_at IS NULL",
                {"id": token_id, "now": _now(), "by": by},
            )
            token = self._token_event(tx, token_id, "token.revoke", by, message)
        return token

    def _token_event(self, tx: Tx, token_id: str, action: str, actor: str, message: str) -> Token:
        """The token as it now is, its change logged (what it allows, never its secret)."""
        token = self._token(self._token_row(tx, token_id))
        self._append_event(
            tx,
            actor=actor,
            action=action,
            model=None,
            ref_kind=None,
            ref_name=None,
            before=None,
            after=None,
            message=message,
            details=_token_details(token),
        )
        return token

    def touch_token(
        self, token_id: str, every: timedelta = timedelta(minutes=1), at: datetime | None = None
    ) -> bool:
        """Record that a token was used ``at`` (default: now), unless that was recorded
        less than ``every`` before (one statement; not an event). False when nothing was
        written, also on a registry this process may only read."""
        if self.read_only:
            return False
        now = at or _now()
        with self._write() as tx:
            return bool(
                tx.run(
                    "UPDATE tokens SET last_used_at = :now WHERE id = :id "
                    "AND (last_used_at IS NULL OR last_used_at <= :stale)",
                    {"id": token_id, "now": now, "stale": now - every},
                )
            )

    # -- events -------------------------------------------------------------------

    def _append_event(
        self,
        tx: Tx,
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
        """Every event goes through here. Inside ``lineage.acting_as`` (a team server's
        request) it records the acting user as its actor, whatever author a caller gave
        a version, and the token and address the change came through."""
        now = acting()
        tx.run(
            _INSERT_EVENT,
            {
                "at": _now(),
                "actor": actor if now is None else now.user,
                "action": action,
                "model": model,
                "ref_kind": ref_kind,
                "ref_name": ref_name,
                "before": before,
                "after": after,
                "message": message,
                "details": details,
                "token_id": None if now is None else now.token_id,
                "address": None if now is None else now.address,
            },
        )

    def set_policy(
        self, model: str, text: str, fmt: str, *, actor: str, message: str, details: dict[str, Any]
    ) -> None:
        """Attach (or replace) the policy of ``model`` and log it, in one transaction."""
        with self._write() as tx:
            m = self._model_row(tx, model)
            values = {"id": m.id, "text": text, "format": fmt, "at": _now(), "by": actor}
            moved = tx.run(
                "UPDATE policies SET text = :text, format = :format, updated_at = :at, "
                "updated_by = :by WHERE model_id = :id",
                values,
            )
            if not moved:
                tx.run(
                    "INSERT INTO policies (model_id, text, format, updated_at, updated_by) "
                    "VALUES (:id, :text, :format, :at, :by)",
                    values,
                )
            self._append_event(
                tx,
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
        with self._read() as tx:
            m = self._model_row(tx, model)
            row = tx.first("SELECT text, format FROM policies WHERE model_id = :id", {"id": m.id})
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
        with self._write() as tx:
            self._model_row(tx, model)
            self._append_event(
                tx,
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
        # Only the filters given, so that SQLite plans each query on the index of
        # (model, ref_name); the values are bound, never spliced.
        given = {"model": model, "ref_name": ref_name, "action": action}
        where = " AND ".join(f"{col} = :{col}" for col, v in given.items() if v is not None)
        q = f"SELECT * FROM events {'WHERE ' if where else ''}{where} ORDER BY id DESC LIMIT :limit"  # noqa: S608 - column names are ours
        params = {k: v for k, v in given.items() if v is not None} | {"limit": limit or NO_LIMIT}
        with self._read() as tx:
            if model is not None:
                self._model_row(tx, model)
            return [
                Event(
                    r.id,
                    decode_time(r.at),
                    r.actor,
                    r.action,
                    r.model,
                    r.ref_kind,
                    r.ref_name,
                    r.before_version,
                    r.after_version,
                    r.message,
                    decode_json(r.details),
                    r.token_id,
                    r.address,
                )
                for r in tx.rows(q, params)
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
        self.db.dispose()
