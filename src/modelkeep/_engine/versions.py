"""Reading versions: resolve a revision, list and show versions, their trees and files,
load what they hold, and their reference profiles."""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from modelkeep import quantities
from modelkeep._engine.engine import Service
from modelkeep.errors import Hint, StoreError, VersionNotFoundError
from modelkeep.graph import ancestors
from modelkeep.registry import ModelInfo, Version
from modelkeep.revision import Revision, check_name
from modelkeep.store import ObjectId

# Loading, file listings and profiles import what they need when called: a command
# that lists versions must not pay for every format's module.
if TYPE_CHECKING:
    from pathlib import Path

    from modelkeep.formats.base import LoadsInPlace
    from modelkeep.profiles import Profile
    from modelkeep.results import FileInfo
    from modelkeep.store import Tree

# What to do about a store error met reading a version, said for each face.
_FSCK = Hint(cli="run `modelkeep fsck`", api="run Repo.fsck()")


class Versions(Service):
    """Versions as they are read: by revision, by model, with their content."""

    def resolve(self, rev: str | Revision) -> Version:
        """The version a revision names (see ``modelkeep.revision``)."""
        r = rev if isinstance(rev, Revision) else Revision.parse(rev)
        if r.number is None and not r.back and not r.ancestry:
            return self.ctx.registry.version_at(r.model, r.ref)
        if r.number is not None:
            number = r.number
        elif r.ref is not None:
            number = self.ctx.registry.ref(r.model, r.ref).version
            if r.back:
                number = self.before_moves(r.model, r.ref, r.back)
        else:
            number = self.ctx.registry.ref(
                r.model, self.ctx.registry.default_branch(r.model), ("branch",)
            ).version
        if r.ancestry:
            parents = self.ctx.registry.parents_map(r.model)
            for step in range(r.ancestry):
                up = parents.get(number, ())
                if not up:
                    raise VersionNotFoundError(
                        f"{r} goes back {r.ancestry} steps but {r.model}:{number} has no "
                        f"parent (after {step} steps)"
                    )
                number = up[0]
        return self.ctx.registry.version(r.model, number)

    def locate(self, rev: str | Revision) -> tuple[str, int]:
        """The model and number a revision names. A plain ``model:N`` is not read here:
        a caller that writes checks the version in its own transaction."""
        r = rev if isinstance(rev, Revision) else Revision.parse(rev)
        if r.number is not None and not r.back and not r.ancestry:
            return r.model, r.number
        version = self.resolve(r)
        return version.model, version.number

    def version(self, rev: str | Version) -> Version:
        return rev if isinstance(rev, Version) else self.resolve(rev)

    def before_moves(self, model: str, ref: str, back: int) -> int:
        moves = self.ctx.registry.ref_moves(model, ref)
        if len(moves) < back or moves[back - 1].before is None:
            raise VersionNotFoundError(
                f"{model}@{ref}{'^' * back}: the ref has moved only "
                f"{max(0, len(moves) - 1)} time(s) since it was created; no earlier target"
            )
        before = moves[back - 1].before
        assert before is not None
        return before

    def models(self) -> list[ModelInfo]:
        return self.ctx.registry.models()

    def log(
        self, name: str, branch: str | None = None, *, limit: int | None = None
    ) -> list[Version]:
        """Versions of ``name`` newest first (at most ``limit``, paged in SQL); with
        ``branch``, only its ancestry."""
        check_name(name)
        if limit is not None:
            limit = quantities.whole(limit, "limit", low=1)
        if branch is None:
            return self.ctx.registry.versions(name, limit=limit)
        everything = self.ctx.registry.versions(name)
        head = self.ctx.registry.ref(name, branch, ("branch",)).version
        seen = ancestors(self.ctx.registry.parents_map(name), [head])
        return [v for v in everything if v.number in seen][:limit]

    def search(
        self,
        name: str,
        where: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Version]:
        """Versions of ``name`` that the filter ``where`` holds for (the query language
        of ``modelkeep.registry.query``), in ``order_by``, at most ``limit``."""
        from modelkeep.registry.query import parse_order, parse_where

        check_name(name)
        if limit is not None:
            limit = quantities.whole(limit, "limit", low=1)
        return self.ctx.registry.search(
            name,
            None if where is None else parse_where(where),
            None if order_by is None else parse_order(order_by),
            limit,
        )

    def show(self, rev: str) -> Version:
        return self.resolve(rev)

    def tree(self, version: Version) -> Tree:
        try:
            return self.ctx.store.tree(ObjectId(version.tree_id))
        except StoreError as exc:
            raise type(exc)(f"{exc.message} — the tree of {version.rev}", hint=_FSCK) from None

    def files(self, rev: str | Version) -> list[FileInfo]:
        from modelkeep.results import FileInfo

        version = self.version(rev)
        out = []
        for path, entry in self.tree(version).entries.items():
            manifest = self.manifest(version, path, entry.file)
            out.append(FileInfo(path, entry.size, entry.mode, entry.file.hex, len(manifest.chunks)))
        return out

    def manifest(self, version: Version, path: str, oid: ObjectId) -> Any:
        try:
            return self.ctx.store.file_manifest(oid)
        except StoreError as exc:
            raise type(exc)(f"{exc.message} — file {path} of {version.rev}", hint=_FSCK) from None

    def load(self, rev: str | Version, *, trusted: Any = None) -> Any:
        """The model a version holds, ready to predict.

        Plain files come back as a path (the file, or the folder of several); a
        dataset as a DataFrame. The files are checked out (and so verified) into
        ``.modelkeep/cache`` first. ``trusted``: types to trust beyond skops'
        defaults, or True (needed for pickles).
        """
        from modelkeep import formats
        from modelkeep.formats import tabular
        from modelkeep.formats.base import LoadsInPlace

        version = self.version(rev)
        record = version.artifact
        if record and record["format"] != "dataset":
            flavor = formats.flavor(record["format"])
            formats.warn_versions(record.get("libraries", {}), version.rev)
            if isinstance(flavor, LoadsInPlace) and self.ctx.store.trust is not None:
                model = self._load_in_place(version, flavor, record["main"], trusted)
                if model is not None:
                    return model
            return flavor.load(self._materialize(version) / record["main"], record, trusted)
        folder = self._materialize(version)
        if not record:
            entries = self.tree(version).entries
            return folder / next(iter(entries)) if len(entries) == 1 else folder
        return tabular.read(folder / record["main"])

    def _load_in_place(self, version: Version, flavor: LoadsInPlace, rel: str, trusted: Any) -> Any:
        """The model read from the store where its bytes lie (None: load it from a file).

        Nothing is checked out: large chunks are mapped, verified once per machine (the
        store's trust ledger), small ones read and verified."""
        entry = self.tree(version).entries.get(rel)
        if entry is None:
            return None  # a damaged record: the file route says what is missing
        from modelkeep.store.inplace import StoredFile

        file = StoredFile(self.ctx.store, self.manifest(version, rel, entry.file))
        try:
            return flavor.load_in_place(file, version.artifact, trusted)
        except StoreError as exc:
            raise type(exc)(f"{exc.message} — file {rel} of {version.rev}", hint=_FSCK) from None

    def _materialize(self, version: Version) -> Path:
        """The version's files in the load cache, verified.

        The first load checks the files out (every chunk verified against its hash) and
        records each file's inode, size and change times; later loads trust files whose
        stat still matches — as git's index does — instead of hashing them again. Any
        write to a cached file changes its ctime, and then it is checked out afresh.
        """
        folder = self.ctx.cache_dir() / version.model / str(version.number)
        stamp = folder.parent / f"{version.number}.verified.json"
        entries = self.tree(version).entries
        try:
            recorded = json.loads(stamp.read_text())
            fresh = recorded.get("tree") == version.tree_id and all(
                _stat_key(folder / rel) == recorded["files"].get(rel) for rel in entries
            )
        except (OSError, ValueError, AttributeError):
            fresh = False
        if fresh:
            return folder
        stamp.unlink(missing_ok=True)
        self.e.worktree.checkout(version, folder, force=True)
        doc = {"tree": version.tree_id, "files": {rel: _stat_key(folder / rel) for rel in entries}}
        tmp = stamp.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, stamp)
        return folder

    def profile(self, rev: str | Version) -> Profile | None:
        """The reference profile stored with a version (None if it has none)."""
        from modelkeep.profiles import Profile

        version = self.version(rev)
        oid = version.artifact.get("profile")
        if oid is None:
            return None
        try:
            return Profile.from_json(json.loads(bytes(self.ctx.store.get(ObjectId(oid)))))
        except StoreError as exc:
            raise type(exc)(f"{exc.message} — the profile of {version.rev}", hint=_FSCK) from None


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode]
