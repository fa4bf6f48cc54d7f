"""What a commit takes from disk: files and folders gathered into the paths of a
version, and the symlinks inside a folder, kept as links and never followed out of it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from modelkeep._engine.layout import REPO_DIR
from modelkeep.errors import EmptyCommitError, PathNotFoundError, UnsafePathError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


# Only permission bits travel with a version: never setuid, setgid or sticky.
MODE_BITS = 0o777


# The mode of a model file saved from memory (as a file saved under umask 022 has).
SAVED_MODE = 0o644


# A tree entry that is a symlink: git's mode for one; its content is the target.
LINK_MODE = stat.S_IFLNK | 0o777


@dataclass(frozen=True, slots=True)
class Link:
    """A symlink inside a committed folder, kept as its target text."""

    target: str

    @property
    def parts(self) -> tuple[memoryview, ...]:
        return (memoryview(os.fsencode(self.target)),)

    @property
    def size(self) -> int:
        return len(os.fsencode(self.target))


def escaping_link(links: Mapping[str, str]) -> str | None:
    """The first link (relative path in a tree) whose target, followed through the
    tree's own links as the kernel would follow them, leaves the tree; None if none
    does. Reading the text alone is not enough: ``d/L -> ..`` stays inside, and so
    does ``M -> d/L/..`` read as text, but M leads to the tree's parent."""
    for rel in sorted(links):
        folder = list(PurePosixPath(rel).parent.parts)
        if _leaves(folder, links[rel], links):
            return rel
    return None


def _leaves(folder: list[str], target: str, links: Mapping[str, str]) -> bool:
    if not target or "\x00" in target:
        return True
    stack = list(folder)
    pending = list(PurePosixPath(target).parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part.startswith("/"):
            return True  # absolute: never inside a folder that can be anywhere
        if part == ".":
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        inner = links.get("/".join(stack))
        if inner is not None:
            hops += 1
            if hops > 40 or not inner:  # a loop, as ELOOP would say
                return True
            stack.pop()
            pending[:0] = PurePosixPath(inner).parts
    return False


def is_paths(source: Any) -> bool:
    if isinstance(source, str | os.PathLike):
        return True
    return isinstance(source, list | tuple) and all(
        isinstance(p, str | os.PathLike) for p in source
    )


def gather(
    paths: Sequence[str | os.PathLike[str]], holds: Callable[[Path], bool]
) -> dict[str, Path | Link]:
    """Relative POSIX path in the version → file on disk (or symlink to keep).

    One folder alone commits its contents; otherwise each argument keeps its
    own name (a folder as a prefix). Inside a folder a symlink is kept as a link
    with its target, as git does, and never followed: a link whose target leaves
    the folder is refused (its bytes are not the folder's to store). A path named
    on the command line is what the user means, and is followed.
    """
    if not paths:
        raise EmptyCommitError("nothing to commit: give one or more files or folders")
    sources = [Path(p) for p in paths]
    for src in sources:
        if not src.exists():
            raise PathNotFoundError(f"{src}: no such file or folder")
        if holds(src):
            raise UsageError(
                f"{src} is inside the repository's own {REPO_DIR} folder; commit the "
                "model's files, not the repository"
            )
    files: dict[str, Path | Link] = {}

    def add(rel: str, item: Path | Link) -> None:
        if rel in files:
            raise UsageError(f"two inputs both give {rel!r}; commit them from one folder")
        files[rel] = item

    single_dir = len(sources) == 1 and sources[0].is_dir()
    folder_links: dict[Path, dict[str, str]] = {src: {} for src in sources}
    for src in sources:
        if src.is_dir():
            prefix = PurePosixPath() if single_dir else PurePosixPath(src.resolve().name)
            for dirpath, dirs, names in os.walk(src):
                dirs[:] = sorted(d for d in dirs if d != REPO_DIR)
                # os.walk lists a link to a folder among the folders (and does
                # not enter it): it is a link to keep, like a link to a file.
                links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
                dirs[:] = [d for d in dirs if d not in links]
                for name in sorted([*names, *links]):
                    full = Path(dirpath, name)
                    rel = full.relative_to(src).as_posix()
                    if full.is_symlink():
                        add((prefix / rel).as_posix(), Link(os.readlink(full)))
                        folder_links[src][rel] = os.readlink(full)
                    elif full.is_file():
                        add((prefix / rel).as_posix(), full)
                    # sockets and fifos are not content
        elif src.is_file():
            add(src.name, src)
        else:
            raise UsageError(f"{src}: not a regular file or folder")
        escaping = escaping_link(folder_links[src])
        if escaping is not None:
            raise UnsafePathError(
                f"{src / escaping} is a symlink to {folder_links[src][escaping]!r}, "
                "which leads outside the folder being committed; commit the file it "
                "points to, or make the link point inside"
            )
    if not files:
        raise EmptyCommitError(f"nothing to commit: {', '.join(map(str, sources))} holds no files")
    return files
