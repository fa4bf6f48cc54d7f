"""Comparing two versions: files and the chunks that differ, params and metrics,
signatures, tensors, scikit-learn specifics, and predictions on the same rows."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import artifact
from modelkeep._engine.engine import Service
from modelkeep.errors import Hint, SignatureError
from modelkeep.formats import modeldiff, signature, tabular, tensordiff
from modelkeep.results import DiffResult, FileChange

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from modelkeep.formats.tensordiff import TensorDiff, TensorInfo
    from modelkeep.store import FileManifest


class Compare(Service):
    """What changed between two versions."""

    def diff(
        self,
        rev_a: str,
        rev_b: str,
        *,
        data: str | os.PathLike[str] | None = None,
        target: str | None = None,
        trusted: Any = None,
    ) -> DiffResult:
        """Files added, removed and changed (with the bytes that differ as stored
        chunks), params and metrics before → after, signature changes, tensors that
        changed (safetensors), what changed in a scikit-learn model, and — with
        ``data`` — both versions' predictions on the same rows."""
        va, vb = self.e.versions.resolve(rev_a), self.e.versions.resolve(rev_b)
        ta, tb = self.e.versions.tree(va), self.e.versions.tree(vb)
        added: list[FileChange] = []
        removed: list[FileChange] = []
        changed: list[FileChange] = []
        tensors: list[TensorDiff] = []
        for rel in sorted(set(ta.entries) | set(tb.entries)):
            ea, eb = ta.entries.get(rel), tb.entries.get(rel)
            if ea is not None and eb is not None and ea.file == eb.file and ea.mode == eb.mode:
                continue
            ma = self.e.versions.manifest(va, rel, ea.file) if ea else None
            mb = self.e.versions.manifest(vb, rel, eb.file) if eb else None
            chunks_a = {c.id for c in ma.chunks} if ma else set()
            chunks_b = mb.chunks if mb else ()
            new = [c for c in chunks_b if c.id not in chunks_a]
            change = FileChange(
                path=rel,
                size_before=ea.size if ea else None,
                size_after=eb.size if eb else None,
                bytes_changed=sum(c.size for c in new),
                chunks_changed=len(new),
                chunks_total=len(chunks_b),
                mode_before=ea.mode if ea else None,
                mode_after=eb.mode if eb else None,
            )
            (added if ea is None else removed if eb is None else changed).append(change)
            if ma is not None and mb is not None and ma.id != mb.id:
                td = self._tensor_diff(rel, ma, mb)
                if td is not None:
                    tensors.append(td)
        model: dict[str, Any] = {}
        predictions = None
        if va.format == vb.format == "sklearn" or data is not None:
            load = self.e.versions.load
            a, b = load(va, trusted=trusted), load(vb, trusted=trusted)
            if va.format == vb.format == "sklearn":
                model = modeldiff.sklearn(a, b)
            if data is not None:
                frame = tabular.read(Path(data))
                features = artifact.features_of(frame, vb.artifact, target)
                labels = frame[target] if target is not None else None
                task = vb.artifact.get("task") or va.artifact.get("task")
                try:
                    predictions = modeldiff.predictions(a, b, features, labels, task)
                except (ValueError, TypeError, KeyError) as exc:
                    raise SignatureError(
                        f"the rows of {Path(data).name} do not fit the models: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                        "(name the label column as the target)",
                        hint=Hint(cli="give --target COL", api="pass target='COL'"),
                    ) from None
        return DiffResult(
            va.rev,
            vb.rev,
            added,
            removed,
            changed,
            params=_delta(va.params, vb.params),
            metrics=_delta(va.metrics, vb.metrics),
            signature=signature.changes(va.artifact.get("signature"), vb.artifact.get("signature")),
            tensors=tensors,
            model=model,
            predictions=predictions,
        )

    def _tensor_diff(self, rel: str, ma: FileManifest, mb: FileManifest) -> TensorDiff | None:
        """Tensor-level diff when both files are safetensors (only changed tensors read)."""
        if not ma.chunks or not mb.chunks:
            return None
        head_a, head_b = self.ctx.store.get(ma.chunks[0].id), self.ctx.store.get(mb.chunks[0].id)
        if not (_looks_like_header(head_a) and _looks_like_header(head_b)):
            return None

        def same(a: TensorInfo, b: TensorInfo) -> bool:
            ca = self.ctx.store.chunks_of_range(ma, a.begin, a.end)
            cb = self.ctx.store.chunks_of_range(mb, b.begin, b.end)
            return bool(ca) and [c.id for c in ca] == [c.id for c in cb]

        try:
            return tensordiff.compare(
                rel,
                bytes(head_a),
                bytes(head_b),
                lambda lo, hi: self.ctx.store.read_range(ma, lo, hi),
                lambda lo, hi: self.ctx.store.read_range(mb, lo, hi),
                same,
            )
        except (ValueError, KeyError, struct.error):
            return None


def _looks_like_header(head: bytes | memoryview) -> bool:
    """The first chunk of a safetensors file is its whole header (see store.chunking)."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack_from("<Q", head, 0)
    return len(head) == 8 + length and bytes(head[8:9]) == b"{"


def _delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
