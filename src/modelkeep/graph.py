"""A model's version graph: the versions a version descends from, and a text drawing
of the graph (git-style lanes) shared by faces."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from modelkeep.registry.records import Ref, Version


def ancestors(parents: Mapping[int, Sequence[int]], starts: Iterable[int]) -> set[int]:
    """``starts`` and every version they descend from, given each version's parents
    (``Registry.parents_map``)."""
    seen: set[int] = set()
    todo = list(starts)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(parents.get(n, ()))
    return seen


def labels_by_version(refs: Iterable[Ref]) -> dict[int, list[str]]:
    out_: dict[int, list[str]] = {}
    for r in refs:
        mark = {"branch": r.name, "alias": f"@{r.name}", "tag": f"tag:{r.name}"}[r.kind]
        out_.setdefault(r.version, []).append(mark)
    return out_


def graph_lines(versions: Sequence[Version], labels: dict[int, list[str]]) -> list[str]:
    """A git-style lane drawing of the version graph, newest first."""
    lanes: list[int | None] = []
    lines: list[str] = []
    for v in versions:
        cols = [i for i, want in enumerate(lanes) if want == v.number]
        if cols:
            col = cols[0]
        else:
            col = lanes.index(None) if None in lanes else len(lanes)
            if col == len(lanes):
                lanes.append(None)
        if len(cols) > 1:  # branches that forked from v join its lane here
            row = ["│" if w is not None else " " for w in lanes]
            row[col] = "├"
            for other in cols[1:]:
                row[other] = "╯"
                lanes[other] = None
            for i in range(col + 1, max(cols[1:])):
                if row[i] == " ":
                    row[i] = "─"
            lines.append(_join(row))
        row = ["│" if w is not None else " " for w in lanes]
        row[col] = "●"
        refs = labels.get(v.number)
        tail = f" ({', '.join(refs)})" if refs else ""
        lines.append(f"{_join(row)}  {v.rev}{tail}  {v.message}")
        lanes[col] = v.parent
        while lanes and lanes[-1] is None:
            lanes.pop()
    return lines


def _join(cells: list[str]) -> str:
    text = ""
    for i, c in enumerate(cells):
        text += c
        if i < len(cells) - 1:
            text += "─" if c in "├─" and cells[i + 1] in "─╯" else " "
    return text.rstrip()
