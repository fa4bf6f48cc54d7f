"""Work trees: a version's files written into a folder (checkout), and a folder
compared with a version (status). Checkout plans before it writes: every conflict is
found first, and nothing is written when there is one (unless forced)."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from modelkeep._engine.engine import Service, no_progress
from modelkeep._engine.layout import REPO_DIR
from modelkeep._engine.sources import MODE_BITS, Link, escaping_link
from modelkeep.errors import (
    Hint,
    ModelkeepError,
    PathNotFoundError,
    StoreError,
    UnsafePathError,
    UsageError,
    WorkingTreeConflictError,
)
from modelkeep.results import CheckoutResult, StatusResult

if TYPE_CHECKING:
    from modelkeep._engine.engine import Progress, ProgressStart
    from modelkeep.registry import Version
    from modelkeep.store import Tree, TreeEntry


class WorkTree(Service):
    """Folders of files that a version was, or will be."""

    @staticmethod
    def _target(dest_real: Path, rel: str) -> Path:
        """The file ``rel`` inside ``dest``, refusing a path that could escape it."""
        pure = PurePosixPath(rel)
        if (
            "\x00" in rel
            or pure.is_absolute()
            or not rel
            or any(p in ("..", "") for p in pure.parts)
        ):
            raise UnsafePathError(f"refusing path {rel!r}: it would escape the destination")
        # A symlink or file on the way is never written or read through: checkout and
        # status treat it as something in the way (_non_folder_on_the_way).
        return dest_real.joinpath(*pure.parts)

    def _matches(self, target: Path, entry: TreeEntry, link: Link | None) -> bool:
        if link is not None:
            return target.is_symlink() and os.readlink(target) == link.target
        if target.is_symlink() or not target.is_file():
            return False
        if target.stat().st_size != entry.size:
            return False
        return self.ctx.store.manifest_of_file(target) == entry.file

    def _links(self, version: Version, tree: Tree) -> dict[str, Link]:
        """The symlinks a tree holds, refused if one leads outside the folder."""
        links = {}
        for rel, entry in tree.entries.items():
            if stat.S_ISLNK(entry.mode):
                manifest = self.e.versions.manifest(version, rel, entry.file)
                text = b"".join(bytes(c) for c in self.ctx.store.iter_chunks(manifest))
                links[rel] = Link(os.fsdecode(text))
        escaping = escaping_link({rel: link.target for rel, link in links.items()})
        if escaping is not None:
            raise UnsafePathError(
                f"refusing {escaping!r} of {version.rev}: a symlink to "
                f"{links[escaping].target!r}, which leads outside the folder it is checked "
                "out into"
            )
        return links

    def checkout(
        self,
        rev: str | Version,
        dest: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
        progress: ProgressStart = no_progress,
    ) -> CheckoutResult:
        """Write a version's files into ``dest`` (default: ./MODEL), byte-identical.

        Plans first, and finds every conflict before writing anything: files that
        differ, a file or symlink where the version has a folder, a folder where it has
        a file. Any of them stops the checkout (nothing is written) unless ``force``,
        which replaces what blocks. Each file is written to a temp file and renamed.
        """
        version = self.e.versions.version(rev)
        tree = self.e.versions.tree(version)
        dest_path = Path(dest) if dest is not None else Path.cwd() / version.model
        if dest_path.exists() and not dest_path.is_dir():
            raise UsageError(f"{dest_path} exists and is not a folder")
        dest_real = dest_path.resolve()
        plan: list[tuple[str, Path, TreeEntry, Link | None]] = []
        unchanged: list[str] = []
        conflicts: list[str] = []
        blockers: dict[Path, str] = {}  # in the way of the version: path → what it is
        links = self._links(version, tree)
        for rel, entry in tree.entries.items():
            target = self._target(dest_real, rel)
            link = links.get(rel)
            blocker = _non_folder_on_the_way(dest_real, target)
            if blocker is not None:
                if blocker not in blockers:
                    blockers[blocker] = "symlink" if blocker.is_symlink() else "file"
                    conflicts.append(
                        f"{blocker.relative_to(dest_real).as_posix()} (a {blockers[blocker]} "
                        f"where {version.rev} has a folder)"
                    )
            elif target.is_symlink() or target.exists():
                if self._matches(target, entry, link):
                    unchanged.append(rel)
                    continue
                if target.is_dir() and not target.is_symlink():
                    blockers[target] = "folder"
                    conflicts.append(f"{rel} (a folder where {version.rev} has a file)")
                else:
                    conflicts.append(rel)
            plan.append((rel, target, entry, link))
        if conflicts and not force:
            listed = "; ".join(conflicts[:10]) + (
                f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
            )
            raise WorkingTreeConflictError(
                f"checkout would overwrite {len(conflicts)} path(s) that differ from "
                f"{version.rev}: {listed}; commit or move them first, or force the checkout "
                "to replace them",
                conflicts,
                hint=Hint(cli="--force replaces them", api="force=True replaces them"),
            )
        dest_real.mkdir(parents=True, exist_ok=True)
        for path, kind in blockers.items():
            # Forced: what blocks the version goes (a folder only after every check).
            if kind == "folder":
                shutil.rmtree(path)
            else:
                path.unlink()
        for rel in unchanged:
            entry = tree.entries[rel]
            target = dest_real.joinpath(*PurePosixPath(rel).parts)
            if stat.S_ISLNK(entry.mode):
                continue  # a link has no mode of its own
            if stat.S_IMODE(target.stat().st_mode) != entry.mode & MODE_BITS:
                target.chmod(entry.mode & MODE_BITS)
        total = sum(e.size for _, _, e, _ in plan)
        tick = progress(f"checkout {version.rev}", total)
        written: list[str] = []
        failures: list[str] = []
        for rel, target, entry, link in plan:
            try:
                if link is not None:
                    _replace_with_link(target, link)
                    if tick is not None:
                        tick(entry.size)
                else:
                    self._write_file(version, rel, target, entry, tick)
                written.append(rel)
            except StoreError:
                raise
            except OSError as exc:
                failures.append(f"{rel}: {exc.strerror or exc}")
        if failures:
            raise ModelkeepError(
                f"checkout of {version.rev} could not write {len(failures)} file(s): "
                + "; ".join(failures)
            )
        return CheckoutResult(version.rev, str(dest_real), written, unchanged, total)

    def _write_file(
        self, version: Version, rel: str, target: Path, entry: TreeEntry, tick: Progress | None
    ) -> None:
        manifest = self.e.versions.manifest(version, rel, entry.file)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.mk-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                self.ctx.store.write_file(manifest, fd, tick)
            except StoreError as exc:
                raise type(exc)(
                    f"{exc.message} — file {rel} of {version.rev}; nothing wrong was written",
                    hint=Hint(cli="run `modelkeep fsck`", api="run Repo.fsck()"),
                ) from None
            os.fchmod(fd, entry.mode & MODE_BITS)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, target)

    def status(
        self, rev: str | Version, path: str | os.PathLike[str] | None = None
    ) -> StatusResult:
        """Compare folder ``path`` (default ./MODEL) with the version ``rev`` names."""
        version = self.e.versions.version(rev)
        tree = self.e.versions.tree(version)
        folder = Path(path) if path is not None else Path.cwd() / version.model
        if not folder.is_dir():
            raise PathNotFoundError(f"{folder}: no such folder")
        real = folder.resolve()
        modified, missing = [], []
        unchanged = 0
        links = self._links(version, tree)
        for rel, entry in tree.entries.items():
            target = self._target(real, rel)
            link = links.get(rel)
            if _non_folder_on_the_way(real, target) is not None:
                modified.append(rel)
            elif not target.exists() and not target.is_symlink():
                missing.append(rel)
            elif self._matches(target, entry, link) and (
                link is not None or stat.S_IMODE(target.stat().st_mode) == entry.mode & MODE_BITS
            ):
                unchanged += 1
            else:
                modified.append(rel)
        untracked = []
        for dirpath, dirs, names in os.walk(real):
            dirs[:] = sorted(d for d in dirs if d != REPO_DIR)
            # A link to a folder is listed among the folders, and not entered.
            linked = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted([*names, *linked]):
                rel = Path(dirpath, name).relative_to(real).as_posix()
                if rel not in tree.entries and not name.endswith(".mk-tmp"):
                    untracked.append(rel)
        return StatusResult(version.rev, str(real), modified, missing, untracked, unchanged)


def _non_folder_on_the_way(dest: Path, target: Path) -> Path | None:
    """The first folder of ``target`` inside ``dest`` that is a file or a symlink."""
    for parent in reversed(target.relative_to(dest).parents[:-1]):
        here = dest / parent
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            return here
    return None


def _replace_with_link(target: Path, link: Link) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.mk-tmp"
    os.symlink(link.target, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
