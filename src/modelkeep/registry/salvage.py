"""Salvage a damaged SQLite registry: every row that can still be read, into a new one.

A registry file can be truncated (a full disk, a copy cut short) or overwritten. What
is lost is lost, but a damaged page takes only its own rows with it: the rest can be
read, one range of rows at a time where a whole-table read fails. The salvage

1. copies the damaged file (and its -wal, which holds committed transactions) aside,
   as ``registry.db.damaged-<time>``, and reads only that copy;
2. builds a new registry at the current schema beside it, inserting every readable row
   in the order of the foreign keys, so a row whose parent was lost is dropped rather
   than left dangling;
3. only then replaces ``registry.db`` (the old -wal and -shm removed first, or SQLite
   would replay them into the new file).

A crash at any step leaves the damaged copy beside the registry, and the registry
either as it was or salvaged. The caller holds the store lock exclusively.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, create_engine, func, insert, literal_column, select
from sqlalchemy.exc import DatabaseError, IntegrityError

from modelkeep.errors import RegistryDamagedError
from modelkeep.registry import schema as t
from modelkeep.registry.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Connection, Table

# Rows read per statement when a whole-table read fails; then one by one in a range
# that fails. Bounded so that a table whose rowids are scattered over 2**63 cannot
# keep the salvage busy for ever.
_RANGE = 256
_MAX_ROWID_SPAN = 10_000_000


@dataclass
class Salvaged:
    """What a salvage kept and lost, per table."""

    damaged_copy: str
    kept: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)  # rows unreadable or orphaned
    unreadable: list[str] = field(default_factory=list)  # tables not read at all

    def problems(self) -> list[str]:
        """What was lost, as fsck reports problems (empty when every row was kept)."""
        # Lost rows are counted by the rowids that could not be read: an upper bound.
        out = [f"registry: up to {n} row(s) of {name} lost" for name, n in self.lost.items()]
        out.extend(f"registry: table {name} unreadable" for name in self.unreadable)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "damaged_copy": self.damaged_copy,
            "kept": self.kept,
            "lost": self.lost,
            "unreadable": self.unreadable,
        }


def _url(path: Path, read_only: bool = False) -> str:
    if not read_only:
        return URL.create("sqlite", database=str(path)).render_as_string()
    # The damaged copy is ours alone: read it through a URI, never written.
    return URL.create(
        "sqlite", database=f"file:{path}", query={"mode": "ro", "uri": "true"}
    ).render_as_string()


def _durable_copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def salvage(db: Path) -> Salvaged:
    """Rebuild the registry at ``db`` from what can still be read of it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    _durable_copy(db, aside)
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        _durable_copy(wal, aside.with_name(aside.name + "-wal"))
    report = Salvaged(str(aside))
    new = db.with_name(f"{db.name}.salvage-{stamp}")
    target = Registry(_url(new))
    try:
        target.create()
        source = create_engine(_url(aside, read_only=True))
        try:
            with source.connect() as src, target.engine.connect() as dst:
                for table in t.metadata.sorted_tables:
                    _copy_table(src, dst, table, report)
                dst.commit()
        finally:
            source.dispose()
        if len(report.unreadable) == len(t.metadata.sorted_tables):
            raise RegistryDamagedError(
                f"nothing in the registry {db} can be read (not even its list of tables), "
                "so there is nothing to salvage; restore it from a backup (it is unchanged)"
            )
    except BaseException:
        target.dispose()
        for leftover in (
            new,
            new.with_name(new.name + "-wal"),
            new.with_name(new.name + "-shm"),
            aside,
            aside.with_name(aside.name + "-wal"),
            aside.with_name(aside.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)
        raise
    # The last connection closed checkpoints the WAL into the file and removes the
    # -wal: one file, about to be renamed, with nothing of it left beside.
    target.dispose()
    if new.with_name(new.name + "-wal").exists():
        raise RegistryDamagedError(f"the salvaged registry {new} kept a write-ahead log; retry")
    fd = os.open(new, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for sidecar in ("-wal", "-shm"):
        db.with_name(db.name + sidecar).unlink(missing_ok=True)
    os.replace(new, db)
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return report


def _copy_table(src: Connection, dst: Connection, table: Table, report: Salvaged) -> None:
    try:
        have = {row[1] for row in src.exec_driver_sql(f'PRAGMA table_info("{table.name}")')}
    except DatabaseError:
        have = set()
    columns = [c for c in table.columns if c.name in have]
    if not columns:
        report.unreadable.append(table.name)
        return
    kept = lost = 0
    for row in _rows(src, table, columns, report):
        values = dict(zip([c.name for c in columns], row, strict=True))
        if table is t.meta and values.get("key") in ("schema_version", "changes"):
            continue  # the new registry's own: at the current schema, its own count
        try:
            with dst.begin_nested():
                dst.execute(insert(table), values)
            kept += 1
        except IntegrityError:
            lost += 1  # its parent row was lost (or a duplicate): dangling, dropped
    report.kept[table.name] = kept
    if lost:
        report.lost[table.name] = report.lost.get(table.name, 0) + lost


def _rows(src: Connection, table: Table, columns: list[Any], report: Salvaged) -> list[Any]:
    rowid: Any = literal_column("rowid")
    query = select(*[table.c[c.name] for c in columns]).select_from(table).order_by(rowid)
    try:
        return list(src.execute(query))
    except DatabaseError:
        pass
    try:
        low, high = src.execute(select(func.min(rowid), func.max(rowid)).select_from(table)).one()
    except DatabaseError:
        report.unreadable.append(table.name)
        return []
    if low is None:
        return []
    high = min(int(high), int(low) + _MAX_ROWID_SPAN)
    rows: list[Any] = []
    lost = 0
    for start in range(int(low), high + 1, _RANGE):
        chunk = query.where(rowid.between(start, start + _RANGE - 1))
        try:
            rows.extend(src.execute(chunk))
            continue
        except DatabaseError:
            pass
        for one in range(start, min(start + _RANGE, high + 1)):
            try:
                rows.extend(src.execute(query.where(rowid == one)))
            except DatabaseError:
                lost += 1  # a rowid with no row is counted too: an upper bound
    if lost:
        report.lost[table.name] = report.lost.get(table.name, 0) + lost
    return rows
