"""registry.db: the same statement text through sqlite3 and through SQLAlchemy (the
path every engine other than SQLite takes), with the same answers."""

from __future__ import annotations

from datetime import UTC, datetime

from modelkeep.registry.db import Database, Many, _SqlAlchemyTx, decode_json, decode_time


def test_lists_times_and_documents_bind_alike_on_both_paths() -> None:
    db = Database("sqlite+pysqlite:///:memory:")
    with db.write() as tx:
        tx.run("CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT, doc TEXT)")
        at = datetime(2026, 12, 4, 18, 0, 1, 250000, tzinfo=UTC)
        for i in range(1, 6):
            tx.run(
                "INSERT INTO t (id, at, doc) VALUES (:id, :at, :doc)",
                {"id": i, "at": at, "doc": {"n": i}},
            )
        direct = tx.rows(
            "SELECT id, at, doc FROM t WHERE id IN (:ids) ORDER BY id", {"ids": Many([2, 4])}
        )
        # The path PostgreSQL takes: an expanding parameter renders its own parentheses,
        # so "IN (:ids)" must not become the row value "IN ((…))".
        through = _SqlAlchemyTx(tx.sa).rows(
            "SELECT id, at, doc FROM t WHERE id IN (:ids) ORDER BY id", {"ids": Many([2, 4])}
        )
    for rows in (direct, through):
        assert [r.id for r in rows] == [2, 4]
        assert [decode_json(r.doc) for r in rows] == [{"n": 2}, {"n": 4}]
        assert {decode_time(r.at) for r in rows} == {at}
    db.dispose()
