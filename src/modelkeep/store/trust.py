"""Loose objects known to be good on this machine, so an in-place read need not hash them.

An object this store wrote (temp file, fsync, rename, from bytes it had just hashed)
or once mapped, hashed whole and fsynced is known good. The ledger records its file's
identity and times — device, inode, size, modification and change time — and a later
read that finds the same stat trusts the bytes, as git's index trusts an unchanged work
tree. A write(2) to the file changes its change time, which no call can set back, so a
file written since is hashed again; a copy of the store elsewhere (other inodes) is
hashed once there. What leaves the stat alone — damage on the medium, a second write
through a shared map of a page already dirty — is what ``modelkeep fsck`` finds: it
hashes everything, whatever the ledger says, and strikes what it finds damaged from the
ledger.

The ledger is an append-only text file. Losing it, or a torn line, costs a re-hash and
nothing else, so it is never fsynced; concurrent writers append whole lines with
O_APPEND, and lines that do not parse are skipped.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from modelkeep.store.ids import ObjectId

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

StatKey = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _parse(line: bytes) -> tuple[str, StatKey] | None:
    fields = line.split()
    if len(fields) != 6:
        return None
    try:
        oid = ObjectId(fields[0].decode("ascii"))
        dev, ino, size, mtime, ctime = (int(f) for f in fields[1:])
    except (UnicodeDecodeError, ValueError):
        return None
    return oid.hex, (dev, ino, size, mtime, ctime)


class Ledger:
    """The objects whose current file was verified, by stat (see the module's doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[str, StatKey] = {}
        self._lock = threading.Lock()
        self._file: tuple[int, int] | None = None  # (dev, inode) of the ledger read so far
        self._read_to = 0

    def knows(self, oid: ObjectId, st: os.stat_result) -> bool:
        """Whether ``oid``'s file, as ``st`` finds it now, is the one verified."""
        want = stat_key(st)
        with self._lock:
            if self._known.get(oid.hex) != want:
                self._catch_up()
            return self._known.get(oid.hex) == want

    def _catch_up(self) -> None:
        """Read what other processes appended since the last read (all of it again if
        the ledger was rewritten by ``prune``)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                ident = (st.st_dev, st.st_ino)
                if ident != self._file or st.st_size < self._read_to:
                    self._known.clear()
                    self._file, self._read_to = ident, 0
                f.seek(self._read_to)
                data = f.read()
        except FileNotFoundError:
            self._known.clear()
            self._file, self._read_to = None, 0
            return
        end = data.rfind(b"\n") + 1  # a line still being appended waits for next time
        for line in data[:end].splitlines():
            parsed = _parse(line)
            if parsed is not None:
                self._known[parsed[0]] = parsed[1]
        self._read_to += end

    def record(self, verified: Iterable[tuple[ObjectId, os.stat_result]]) -> None:
        """Note objects whose file (as stat found it) holds exactly their content."""
        lines = "".join(
            f"{oid.hex} {' '.join(map(str, stat_key(st)))}\n" for oid, st in verified
        ).encode()
        if not lines:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return  # a read-only store: objects are hashed on every in-place read
        try:
            os.write(fd, lines)  # one write: appended whole, next to other writers' lines
        except OSError:
            pass
        finally:
            os.close(fd)

    def prune(self, keep: Callable[[ObjectId], bool]) -> None:
        """Rewrite the ledger without the objects ``keep`` rejects (gc calls this with
        the store locked, so no writer appends meanwhile; a reader's line lost to the
        rewrite only costs a re-hash)."""
        with self._lock:
            self._file, self._read_to = None, 0
            self._catch_up()
            kept = {h: k for h, k in self._known.items() if keep(ObjectId(h))}
            if len(kept) == len(self._known):
                return
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text("".join(f"{h} {' '.join(map(str, k))}\n" for h, k in kept.items()))
                os.replace(tmp, self.path)
            except OSError:
                # A user who may only read the store cannot strike anything: the next
                # fsck by one who can write does.
                tmp.unlink(missing_ok=True)
                return
            self._known = kept
            self._file, self._read_to = None, 0
