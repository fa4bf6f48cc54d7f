"""Keeping a repository sound: fsck (every object against its hash, every version
against its tree, and the registry's own check), gc, upgrade of the format, and the
salvage of a damaged registry."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from modelkeep._engine.engine import Service, no_progress
from modelkeep._engine.layout import FORMAT
from modelkeep.errors import Hint, StoreError
from modelkeep.results import FsckReport, GcReport, UpgradeReport
from modelkeep.store import LocalBackend, ObjectId

if TYPE_CHECKING:
    import os

    from modelkeep._engine.engine import ProgressStart
    from modelkeep.registry.salvage import Salvaged


class Maintenance(Service):
    """Checks and repairs that hold the store lock."""

    def fsck(self, progress: ProgressStart = no_progress, *, repair: bool = False) -> FsckReport:
        """Verify every stored object against its hash and every version against its tree.

        Holds the store lock (shared; exclusive with ``repair``) so gc cannot move
        objects underneath, and reads the versions before listing objects, so a
        commit landing meanwhile is either fully seen or not at all. ``repair`` moves
        damaged objects to quarantine/: committing the original files again then
        stores them afresh.
        """
        if repair:
            self.ctx.registry.check_writable()
        # The registry first: a damaged one cannot say which objects are in use.
        damage = self.ctx.registry.integrity_problems()
        salvaged = None
        if damage and not repair:
            return FsckReport(0, 0, damage, 0)
        if damage:
            salvaged = self.ctx.salvage_registry()
        with self.ctx.exclusive() if repair else self.ctx.shared():
            report, bad = self._fsck(progress)
            wrong = self.ctx.registry.identity_problems(repair=repair)
            if wrong:
                report = dataclasses.replace(report, problems=[*report.problems, *wrong])
            if salvaged is not None:
                report = with_salvage(report, damage, salvaged)
            if bad and self.ctx.store.trust is not None:
                # Damage that left a file's stat alone (the media, a write through a
                # shared map) is what fsck exists to find: loads must hash it again.
                self.ctx.store.trust.prune(lambda oid: oid not in bad)
            if repair and bad:
                self.ctx.store.quarantine(bad)
        return report

    def _fsck(self, progress: ProgressStart) -> tuple[FsckReport, set[ObjectId]]:
        rows = self.ctx.registry.tree_ids()
        artifact_rows = self.ctx.registry.artifact_ids()
        ids = set(self.ctx.store.iter_ids())
        tick = progress("verify objects", len(ids))
        bad: dict[ObjectId, str] = {}
        for oid in sorted(ids):
            try:
                self.ctx.store.get(oid)
            except StoreError as exc:
                bad[oid] = str(exc)
            if tick:
                tick(1)
        problems: list[str] = list(self.ctx.store.damaged_packs.values())
        seen_bad: set[ObjectId] = set()
        live: set[ObjectId] = set()
        for model, number, tree_hex in rows:
            rev = f"{model}:{number}"
            tid = ObjectId(tree_hex)
            live.add(tid)
            try:
                tree = self.ctx.store.tree(tid)
            except StoreError as exc:
                problems.append(f"{rev}: its tree: {exc}")
                seen_bad.add(tid)
                continue
            for rel, entry in tree.entries.items():
                live.add(entry.file)
                try:
                    manifest = self.ctx.store.file_manifest(entry.file)
                except StoreError as exc:
                    problems.append(f"{rev}: file {rel}: {exc}")
                    seen_bad.add(entry.file)
                    continue
                if sum(c.size for c in manifest.chunks) != entry.size:
                    problems.append(f"{rev}: file {rel}: chunk sizes do not add up to its size")
                for chunk in manifest.chunks:
                    live.add(chunk.id)
                    if chunk.id in bad:
                        problems.append(f"{rev}: file {rel}: {bad[chunk.id]}")
                        seen_bad.add(chunk.id)
                    elif chunk.id not in ids:
                        problems.append(
                            f"{rev}: file {rel}: object {chunk.id.short} is missing from the store"
                        )
        for model, number, hex_id in artifact_rows:
            oid = ObjectId(hex_id)
            live.add(oid)
            if oid in bad:
                problems.append(f"{model}:{number}: its profile: {bad[oid]}")
                seen_bad.add(oid)
            elif oid not in ids:
                problems.append(f"{model}:{number}: its profile {oid.short} is missing")
        problems.extend(
            f"unreferenced {msg}"
            for oid, msg in sorted(bad.items())
            if oid not in seen_bad and oid not in live
        )
        return FsckReport(len(ids), len(rows), problems, len(ids - live)), set(bad)

    def upgrade(self, progress: ProgressStart = no_progress) -> UpgradeReport:
        """Bring the repository to this release's format (``FORMAT``).

        Format 2 stores large raw objects page-aligned, so that state dicts load in
        place: the config says format 2 first (releases knowing only format 1 then
        refuse the repository instead of misreading it), then the objects of the old
        layout are rewritten. Run again after an interruption, it finishes the job.

        Stop every process of an older release first: one that opened the repository
        before the upgrade would take the rewritten objects for damaged ones (and
        `fsck --repair` would move them aside). Processes of this release follow the
        upgrade at their next commit."""
        self.ctx.registry.check_writable()
        self.ctx.config()  # an in-memory repository has none: refused before the lock
        with self.ctx.exclusive():
            before = int(self.ctx.config()["format"])
            try:
                old = self.ctx.store.unaligned()
            except StoreError as exc:
                raise type(exc)(
                    f"{exc.message}; nothing was upgraded — repair the repository first",
                    hint=Hint(
                        cli="run `modelkeep fsck --repair` first", api="run Repo.repair() first"
                    ),
                ) from None
            if before < FORMAT:
                # Durable before any object changes: a release that cannot read the new
                # layout must find the new format first.
                self.ctx.write_format(FORMAT)
            tick = progress("upgrade", sum(n for _, n in old))
            size = self.ctx.store.align_pages((oid for oid, _ in old), tick)
        return UpgradeReport(before, FORMAT, len(old), size)

    def gc(self) -> GcReport:
        """Delete objects no version references. Safe beside running commits: it holds
        the store lock exclusively, so no commit is between writing and publishing."""
        self.ctx.registry.check_writable()
        with self.ctx.exclusive():
            trees = [ObjectId(tid) for _, _, tid in self.ctx.registry.tree_ids()]
            try:
                live = self.ctx.store.referenced_by(trees)
                live.update(ObjectId(oid) for _, _, oid in self.ctx.registry.artifact_ids())
            except StoreError as exc:
                raise type(exc)(
                    f"{exc.message}; gc cannot tell what is in use and removed nothing",
                    hint=Hint(cli="run `modelkeep fsck`", api="run Repo.fsck()"),
                ) from None
            removed, freed = self.ctx.store.collect_garbage(live, self.ctx.gc_grace())
            temp = 0
            if isinstance(self.ctx.store.backend, LocalBackend):
                temp = self.ctx.store.backend.clean_temp(older_than=0)
            # Loaded models are checked out there; they are made again on demand.
            self.ctx.drop_cache()
        return GcReport(removed, freed, temp)


def with_salvage(report: FsckReport, damage: list[str], salvaged: Salvaged) -> FsckReport:
    """An fsck report that also tells of the registry's damage and what its salvage
    kept and lost."""
    return dataclasses.replace(
        report,
        problems=[*damage, *salvaged.problems(), *report.problems],
        salvaged=salvaged.to_dict(),
    )


def repair(path: str | os.PathLike[str] | None, progress: ProgressStart) -> FsckReport:
    """``fsck(repair=True)`` of the repository at ``path``, also when its registry is too
    damaged to open: it is salvaged first (``layout.salvage``), and the report says what
    the salvage kept and lost."""
    from modelkeep._engine import layout
    from modelkeep._engine.engine import Engine
    from modelkeep.errors import RegistryDamagedError

    try:
        engine = Engine.open(path)
    except RegistryDamagedError:
        salvaged = layout.salvage(path)
        engine = Engine.open(path)
        try:
            return with_salvage(engine.maintenance.fsck(progress, repair=True), [], salvaged)
        finally:
            engine.close()
    try:
        return engine.maintenance.fsck(progress, repair=True)
    finally:
        engine.close()
