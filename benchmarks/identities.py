"""Version identities at many versions: hashing every version of a model (what
``Exchange.identities`` did on every push, pull, publish and identities route) next to
reading them as the registry stores them, the lookup a publish makes, and the one-time
fill of a registry upgraded from before stored identities.

    python benchmarks/identities.py [--versions 5000] [--db URL]

Without ``--db``: a SQLite file in a temporary folder (removed after).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _bench import row, secs, timed

from modelkeep.registry import Registry
from modelkeep.registry.identity import identity_of


def _hash_every_version(reg: Registry, model: str) -> dict[int, str]:
    """Before: every identity hashed afresh from every version, per call."""
    if model not in reg.model_names():
        return {}
    found: dict[int, str] = {}
    for v in sorted(reg.versions(model), key=lambda v: v.number):
        found[v.number] = identity_of(v, [found[p] for p in v.parents])
    return found


def _fill(reg: Registry, count: int) -> None:
    for i in range(count):
        reg.add_version(
            model="churn",
            branch=None,
            tree_id=f"{i:064x}",
            size=1000 + i,
            file_count=3,
            message=f"version {i}",
            author="bench <bench@example.org>",
            params={"lr": 0.01, "layers": [64, 32, 8], "seed": i},
            metrics={"f1": 0.8 + i * 1e-6, "auc": 0.9},
            lineage={"environment": {"python": "3.11", "numpy": "2.1"}},
            datasets=[],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=5000)
    parser.add_argument("--db", help="a registry database URL (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.db or f"sqlite:///{Path(folder) / 'registry.db'}"
        reg = Registry(url)
        try:
            reg.create()
            made, _ = timed(lambda: _fill(reg, args.versions))
            before, expected = timed(lambda: _hash_every_version(reg, "churn"))
            after, stored = timed(lambda: reg.identities("churn"))
            assert stored == expected
            head = [expected[args.versions], expected[args.versions - 1]]
            lookup, found = timed(lambda: reg.numbers_by_identity("churn", head))
            assert found == {head[0]: args.versions, head[1]: args.versions - 1}
            with reg.db.write() as tx:
                tx.run("DELETE FROM version_identities")
            fill, filled = timed(lambda: reg.identities("churn"))
            assert filled == expected
            again, _ = timed(lambda: reg.identities("churn"))
        finally:
            reg.dispose()
    n = args.versions
    print(f"identities of one model of {n} versions ({'--db' if args.db else 'SQLite file'})")
    print(row("adding the versions", secs(made), f"{made / n * 1e3:.2f} ms each"))
    print(row("before: hash every version", secs(before), "per push, pull, publish, GET"))
    print(row("after: read as stored", secs(after), "one query"))
    print(row("publish's lookup of 2", secs(lookup), "indexed, after a count"))
    print(row("first fill after an upgrade", secs(fill), "once per model"))
    print(row("read after that fill", secs(again), ""))


if __name__ == "__main__":
    main()
