"""What a commit is asked to record: ``CommitDraft`` and ``Repo.commit``'s keywords.

Apart from the pipeline (``commit.py``), so that the facade names them without
importing what the pipeline imports (formats, lineage, profiles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class CommitDraft:
    """What a commit is asked to record.

    ``source`` is a file, files or a folder, or an in-memory model (scikit-learn,
    PyTorch, ONNX, XGBoost, LightGBM), stored in its format. ``input_example`` records
    the signature; ``data`` names the datasets used (paths or dataset revisions such as
    ``churn-train:3``) — the first, when it is a table, gives the reference profile
    (``target`` is its label column). ``parents`` overrides the default parent (the
    branch head); ``kind``, ``status`` and ``annotations`` (kept in the lineage) say how
    the version was made — jobs such as updates use them.
    """

    name: str
    source: Any
    message: str = ""
    branch: str | None = None
    params: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    data: Iterable[str | os.PathLike[str]] = ()
    author: str | None = None
    input_example: Any = None
    target: str | None = None
    init_args: dict[str, Any] | None = None
    trusted: Any = None
    parents: Sequence[int] | None = None
    kind: str = "commit"
    status: str = "ok"
    annotations: Mapping[str, Any] | None = None


class CommitOptions(TypedDict, total=False):
    """``Repo.commit``'s keywords: the fields of ``CommitDraft`` after the first three."""

    branch: str | None
    params: Mapping[str, Any] | None
    metrics: Mapping[str, Any] | None
    data: Iterable[str | os.PathLike[str]]
    author: str | None
    input_example: Any
    target: str | None
    init_args: dict[str, Any] | None
    trusted: Any
    parents: Sequence[int] | None
    kind: str
    status: str
    annotations: Mapping[str, Any] | None
