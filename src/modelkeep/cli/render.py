"""How the CLI prints things: tables for people, JSON for programs."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from modelkeep.registry.records import Event, Replica, Schedule, Token, Version
    from modelkeep.results import DiffResult


class _Console:
    """A rich Console made on first use: importing rich costs a command that prints
    nothing through it (``--help``, ``--json``) a twentieth of a second."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def print(self, *objects: Any, markup: bool = False, **options: Any) -> None:
        # Plain text while no rich console is made (no pager, table or progress bar
        # yet): written as it is, as rich would with markup, highlighting and soft
        # wrap off — without importing rich, and without rich turning ":smile:" in a
        # message into an emoji.
        if self._console is None and not options and all(isinstance(o, str) for o in objects):
            stream = sys.stderr if self._options.get("stderr") else sys.stdout
            stream.write(" ".join(objects) + "\n")
            return
        self._made().print(*objects, markup=markup, **options)

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)


out: Any = _Console(highlight=False, soft_wrap=True, markup=False)
err: Any = _Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def _table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)


def emit_json(value: Any) -> None:
    import orjson

    # orjson: `log --json --all` of many versions is mostly this (10x json.dumps).
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
    sys.stdout.buffer.write(orjson.dumps(value, default=str, option=option))
    sys.stdout.flush()


def check_output_file(path: Path) -> None:
    """Fail before any work when ``path`` cannot be written as a file."""
    from modelkeep.errors import PathNotFoundError, UsageError

    folder = path.parent
    if not folder.is_dir():
        raise PathNotFoundError(
            f"{path}: the folder {folder} does not exist; create it or name a file elsewhere"
        )
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name a file in it, e.g. {path / 'report.html'}")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a reader (a browser reloading the
    page) never sees half a file, and a failure leaves the old one in place."""
    import os
    import tempfile

    from modelkeep.errors import UsageError

    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from a web server
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise UsageError(f"{path}: cannot write it: {exc.strerror or exc}") from None


def when(ts: datetime) -> str:
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def who(author: str) -> str:
    """The name part of ``Name <email>``: tables have no room for addresses."""
    name = author.split(" <", 1)[0].strip()
    return name or author


def fmt_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def columns(header: Sequence[str] | None, rows: Sequence[Sequence[str]], squeeze: int) -> str:
    """Rows aligned under a header, two spaces apart, as `git branch -v` or `docker ps`
    print them. Not rich's Table: importing it and measuring 30 rows cost 0.1 s, most of
    a `modelkeep log`. On a terminal, column ``squeeze`` (free text) is cut to fit its
    width; piped, nothing is cut, so every row stays one line for grep and awk."""
    from rich.cells import cell_len, set_cell_size

    table = [[" ".join(c.split()) for c in row] for row in ([header] if header else []) + [*rows]]
    if not table:
        return ""
    widths = [max(cell_len(row[i]) for row in table) for i in range(len(table[0]))]
    if sys.stdout.isatty():
        room = shutil.get_terminal_size().columns - sum(widths) - 2 * (len(widths) - 1)
        widths[squeeze] = max(12, widths[squeeze] + min(room, 0))
    lines = []
    for row in table:
        cells = [
            cell if cell_len(cell) <= width else set_cell_size(cell, width - 1) + "…"
            for cell, width in zip(row, widths, strict=True)
        ]
        padded = [set_cell_size(c, w) for c, w in zip(cells[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(lines)


def version_table(
    versions: Sequence[Version], labels: dict[int, list[str]], rolled_back_to: set[int]
) -> str:
    header = ("version", "branch", "made by", "refs", "created", "author", "message", "metrics")
    rows = [
        (
            v.rev,
            v.branch,
            made_by(v) + ("; rollback target" if v.number in rolled_back_to else ""),
            ", ".join(labels.get(v.number, [])),
            when(v.created_at),
            who(v.author),
            v.message,
            fmt_values(v.metrics),
        )
        for v in versions
    ]
    return columns(header, rows, squeeze=header.index("message"))


def made_by(v: Version) -> str:
    """How a version was made: commit, batch/incremental update (with the gate's
    verdict), or an update that was rejected."""
    if v.kind.startswith("update."):
        verdict = v.annotations.get("update", {}).get("verdict", v.status)
        return f"{v.kind.split('.', 1)[1]} update ({verdict})"
    return v.kind if v.status == "ok" else f"{v.kind} ({v.status})"


def show_version(v: Version, files: Sequence[Any], refs: list[str]) -> None:
    rows: list[tuple[str, str]] = [
        ("version", v.rev + (f"  ({', '.join(refs)})" if refs else "")),
        ("branch", v.branch),
        ("parents", ", ".join(f"{v.model}:{p}" for p in v.parents) or "-"),
        ("kind", f"{v.kind} ({v.status})"),
        ("author", v.author),
        ("created", when(v.created_at)),
        ("message", v.message or "-"),
        ("params", fmt_values(v.params) or "-"),
        ("metrics", fmt_values(v.metrics) or "-"),
    ]
    if v.code:
        dirty = " (dirty)" if v.code.dirty else ""
        rows.append(("code", f"{v.code.commit[:12]}{dirty} in {v.code.repository}"))
    else:
        rows.append(("code", "- (not in a git work tree)"))
    env = v.environment
    if env:
        pk = " ".join(f"{k}=={ver}" for k, ver in env.get("packages", {}).items())
        rows.append(("python", f"{env.get('python')} on {env.get('platform')}"))
        rows.append(("packages", pk or "-"))
    for d in v.datasets:
        rows.append(("dataset", f"{d.path}  {size(d.size)}  blake3:{d.content_id[:16]}"))
    rows.append(("content", f"{v.file_count} file(s), {size(v.size)}, tree {v.tree_id[:16]}"))
    art = v.artifact
    if art:
        what = art["format"] + (f" ({art['class']})" if art.get("class") else "")
        rows.append(("format", what + (f", {art['task']}" if art.get("task") else "")))
        libs = " ".join(f"{k}=={ver}" for k, ver in art.get("libraries", {}).items())
        if libs:
            rows.append(("saved with", f"{libs}, Python {art.get('python')}"))
        sig = art.get("signature") or {}
        for side in ("inputs", "outputs"):
            if sig.get(side):
                rows.append((side, signature_text(sig[side])))
        if art.get("profile"):
            rows.append(("profile", f"reference profile {art['profile'][:16]}"))
        if art["format"] == "dataset":
            rows.append(("table", f"{art['rows']} rows; " + signature_text(art)))
    out.print(columns(None, rows, squeeze=1))
    header = ("path", "size", "mode", "chunks", "content")
    listed = [(f.path, size(f.size), oct(f.mode), str(f.chunks), f.content_id[:16]) for f in files]
    out.print("\n" + columns(header, listed, squeeze=0))


def update_table(result: Any) -> None:
    """Parent and candidate side by side (on the new holdout, then on the parent's
    validation data when it is stored), then the verdict."""
    cand = result.candidate
    out.print(
        f"{result.strategy} update of {result.parent.rev} → {cand.rev} on {cand.branch} "
        f"({'PASSED' if result.passed else 'REJECTED'})",
        markup=False,
    )
    evaluations = [(result.parent_metrics, result.candidate_metrics)]
    if result.validation is not None:
        val = result.validation
        evaluations.append((val.parent_metrics, val.candidate_metrics))
    for i, (parent_metrics, cand_metrics) in enumerate(evaluations):
        # Headings only when there are two tables: one needs no telling apart.
        if i:
            out.print(
                f"on {result.parent.rev}'s validation data {result.validation.data} "
                f"({result.validation.rows} rows):",
                markup=False,
            )
        elif result.validation is not None:
            rows = cand.annotations.get("update", {}).get("holdout", {}).get("rows")
            out.print(f"on the new holdout{f' ({rows} rows)' if rows else ''}:", markup=False)
        table = _table(box=None, pad_edge=False, header_style="bold")
        for col in ("metric", result.parent.rev, cand.rev, "change"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for name, value in cand_metrics.items():
            before = parent_metrics.get(name)
            change = "" if before is None else f"{value - before:+.4f}"
            table.add_row(name, "-" if before is None else f"{before:.4f}", f"{value:.4f}", change)
        out.print(table)
    out.print(f"gate: {result.gate}  →  {result.reason}", markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)
    if result.promoted:
        out.print(f"promoted: {cand.model}@{result.promoted} → {cand.rev}", markup=False)
    elif not result.passed:
        line = f"kept on branch {cand.branch} with status rejected; the alias did not move"
        if result.contradiction and not result.accepted_contradiction:
            line += " (--accept-contradicting-data lets the gate decide)"
        out.print(line, markup=False)


def deployment_line(d: Any) -> str:
    share = "" if d.strategy != "canary" else f" {d.percent:g} %"
    steps = f" steps {','.join(f'{s:g}' for s in d.steps)}" if d.steps else ""
    stats = ""
    if d.stats.get("compared"):
        agree = d.stats.get("agreement")
        stats = f", shadow agreement {100 * agree:.1f} % of {d.stats['compared']}"
    return (
        f"#{d.id} {d.model}@{d.alias} {d.strategy}{share}{steps}: {d.model}:{d.primary} → "
        f"{d.model}:{d.candidate} [{d.status}] by {who(d.actor)} at {when(d.created_at)}"
        f"{stats}"
    )


# A replica that has not reported for longer is shown as probably gone (servers report
# every few seconds).
REPLICA_SILENT = 30.0


def ago(seconds: float) -> str:
    """``75`` → ``1m15s``, ``7230`` → ``2h``: a time span in its largest unit, and the
    next one when it is not zero."""
    left = max(0, round(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    i = next(i for i, (_, size) in enumerate(units) if left >= size or size == 1)
    unit, size = units[i]
    text = f"{left // size}{unit}"
    if i + 1 < len(units) and left % size >= units[i + 1][1]:
        text += f"{left % size // units[i + 1][1]}{units[i + 1][0]}"
    return text


def replica_line(r: Replica, now: datetime) -> str:
    served = f"→ {r.rev}" if r.rev else "nothing loaded"
    others = [f"{r.model}:{v}" for v in r.versions if v != r.version]
    if others:
        served += f" (also loaded: {', '.join(others)})"
    silent = (now - r.seen_at).total_seconds()
    if r.state == "stopped":
        seen = f"stopped {ago(silent)} ago"
    elif silent > REPLICA_SILENT:
        seen = f"{r.state}, not seen for {ago(silent)} (probably gone)"
    else:
        seen = f"{r.state}, seen {ago(silent)} ago"
    error = f": {r.error}" if r.error else ""
    return (
        f"  {r.server} replica {r.replica} on {r.host}/{r.pid}: {r.model}@{r.alias} "
        f"{served} [{seen}]{error}"
    )


def monitor_report(body: dict[str, Any]) -> None:
    drift = body["drift"]
    verdict = "DRIFT" if drift["drifted"] else "no drift"
    out.print(
        f"{body['version']}: {verdict} — {len(drift['drifted_features'])} of "
        f"{len(drift['features'])} features drifted ({100 * drift['share']:.0f} %), "
        f"{drift['current_rows']} rows vs {drift['reference_rows']} in the reference"
    )
    table = _table(box=None, pad_edge=False, header_style="bold")
    for col in ("feature", "test", "statistic", "threshold", "PSI", "drift"):
        table.add_column(col)
    rows = list(drift["features"]) + ([drift["predictions"]] if drift["predictions"] else [])
    for f in rows:
        table.add_row(
            f["name"],
            f["test"],
            f"{f['statistic']:.4g}",
            f"{f['threshold']:g}",
            f"{f['psi']:.3f}",
            "yes" if f["drifted"] else "",
        )
    out.print(table)
    for name, value in body.get("metrics", {}).items():
        out.print(f"  {name}: {value:.4f}")


def utc(ts: datetime | None) -> str:
    """A slot time: in UTC, as the data templates are filled."""
    if ts is None:
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M:%SZ" if ts.second else "%Y-%m-%d %H:%MZ")


def schedule_line(s: Schedule) -> str:
    target = f" --target {s.target}" if s.target else ""
    state = "" if s.active else " [removed]"
    return (
        f"schedule #{s.id}: {s.revision} every {s.period} on {s.data}{target}; "
        f"next due {utc(s.next_due)}{state}"
    )


def schedule_table(schedules: Sequence[Schedule], now: datetime) -> Table:
    table = _table(box=None, pad_edge=False, header_style="bold")
    for col in ("id", "revision", "every", "data", "last slot", "last outcome", "next due"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "revision", "every"))
    for s in schedules:
        late = (now - s.next_due).total_seconds()
        if not s.active:
            due = "removed"
        elif late > s.every:
            # More than a period late: no daemon has been running.
            due = f"overdue since {utc(s.next_due)}"
        elif late >= 0:
            due = "now"
        else:
            due = utc(s.next_due)
        data = s.data + (f" (target {s.target})" if s.target else "")
        table.add_row(str(s.id), s.revision, s.period, data, utc(s.last_slot), s.outcome, due)
    return table


def signature_text(sig: dict[str, Any]) -> str:
    if "columns" in sig:
        return ", ".join(f"{c['name']}:{c['dtype']}" for c in sig["columns"])
    if sig.get("type") == "tensor":
        return f"{sig['dtype']} {sig['shape']}"
    return ", ".join(f"{k}: {signature_text(t)}" for k, t in sig.get("tensors", {}).items())


def model_diff(d: DiffResult) -> None:
    """The model-aware part of a diff."""
    for change, breaking in d.signature:
        out.print(f"  signature {'BREAKING ' if breaking else ''}{change}")
    for t in d.tensors:
        out.print(f"  tensors  {t.path}: {t.summary}")
        for name, rel in t.changed.items():
            shown = "n/a" if rel is None else f"{100 * rel:.2f} %"
            out.print(f"    changed   {name}  relative L2 {shown}")
        for name, before, after in t.reshaped:
            out.print(f"    reshaped  {name}  {before} → {after}")
        for name in t.added:
            out.print(f"    added     {name}")
        for name in t.removed:
            out.print(f"    removed   {name}")
    m = d.model
    if "class" in m:
        out.print(f"  model    class {m['class'][0]} → {m['class'][1]}")
    for k, (a, b) in m.get("hyperparameters", {}).items():
        out.print(f"  hyper    {k}: {a} → {b}")
    if "coefficients" in m:
        c = m["coefficients"]
        if "relative_l2" in c:
            out.print(
                f"  coef     relative L2 change {100 * c['relative_l2']:.2f} %, "
                f"max |Δ| {c['max_abs']:.4g}"
            )
        else:
            out.print(f"  coef     shape {c['shape'][0]} → {c['shape'][1]}")
    if "trees" in m:
        t = m["trees"]
        out.print(
            f"  trees    {t['count'][0]} → {t['count'][1]} trees, "
            f"max depth {t['max_depth'][0]} → {t['max_depth'][1]}"
        )
    p = d.predictions
    if p:
        if p["task"] == "classification":
            out.print(f"  predict  {p['rows']} rows, agreement {100 * p['agreement']:.2f} %")
        else:
            out.print(
                f"  predict  {p['rows']} rows, mean |Δ| {p['mean_abs_diff']:.4g}, "
                f"max |Δ| {p['max_abs_diff']:.4g}"
            )
        for metric in ("accuracy", "f1", "rmse", "mae"):
            if metric in p:
                a, b = p[metric]
                out.print(f"  {metric:<8} {a:.4f} → {b:.4f} ({b - a:+.4f})")


def event_table(events: Sequence[Event]) -> str:
    header = ("#", "when", "who", "action", "what", "before → after", "why")
    rows = [
        (
            str(e.id),
            when(e.at),
            who(e.actor),
            e.action,
            _what(e),
            f"{_v(e.before)} → {_v(e.after)}",
            e.message,
        )
        for e in events
    ]
    return columns(header, rows, squeeze=header.index("why"))


def _what(e: Event) -> str:
    if e.model is None and e.action.startswith("token."):
        return f"token {e.details.get('token', '')}"
    return f"{e.model or ''}" + (f"@{e.ref_name}" if e.ref_name else "")


def token_reach(t: Token) -> str:
    """What a token allows, and until when: ``write on churn*, expires 2027-03-01 12:00``."""
    models = "every model" if t.models == "*" else t.models
    until = "never expires" if t.expires_at is None else f"expires {when(t.expires_at)}"
    return f"{t.scope} on {models}, {until}"


def token_table(tokens: Sequence[Token]) -> str:
    header = ("id", "user", "scope", "models", "state", "created", "by", "expires", "last used")
    rows = [
        (
            t.id,
            t.user,
            t.scope,
            t.models,
            t.state(),
            when(t.created_at),
            who(t.created_by),
            "never" if t.expires_at is None else when(t.expires_at),
            "never" if t.last_used_at is None else when(t.last_used_at),
        )
        for t in tokens
    ]
    return columns(header, rows, squeeze=header.index("user"))


def _v(n: int | None) -> str:
    return "-" if n is None else str(n)


_active: list[Any] = []


def stop_progress() -> None:
    """Stop bars left running by an operation that failed (and restore the cursor)."""
    while _active:
        _active.pop().stop()


def progress_factory(enabled: bool) -> Callable[[str, int], Callable[[int], None] | None]:
    """Progress bars on a terminal; nothing when output is piped."""

    def start(label: str, total: int) -> Callable[[int], None] | None:
        if not enabled or total < (8 << 20):
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        task = bar.add_task(label, total=total)
        bar.start()
        _active.append(bar)
        # Chunks are stored on a thread pool, so ticks come from several threads.
        lock = threading.Lock()
        done = [0]

        def tick(n: int) -> None:
            with lock:
                done[0] += n
                bar.update(task, completed=done[0])
                if done[0] >= total:
                    bar.stop()

        return tick

    return start
