"""Remotes of a repository: named team servers to push to and pull from.

A remote's URL is kept in the registry's settings (``remote.NAME.url``), so a shared
repository's remotes are the same on every machine; tokens never are (see
``credentials``). Version numbers belong to each side: the mapping of local numbers
to the server's (``churn:4 (local) = churn:9``) is found by identity on every
transfer and kept (``remote.NAME.map.MODEL``) to be shown without asking the server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from modelkeep._engine.engine import no_progress
from modelkeep.errors import ConflictError, Hint, NotFoundError, UsageError
from modelkeep.graph import ancestors
from modelkeep.remote import credentials, transfer
from modelkeep.remote.client import Client, is_url
from modelkeep.results import Mapped, TransferResult
from modelkeep.revision import check_name
from modelkeep.store import ObjectId

if TYPE_CHECKING:
    from modelkeep._engine import Engine
    from modelkeep._engine.engine import ProgressStart


class Remotes:
    """Named servers of one repository, and push, fetch and pull to and from them."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    # -- names -----------------------------------------------------------------------

    def add(self, name: str, url: str) -> None:
        check_name(name, "remote name")
        if not is_url(url):
            raise UsageError(f"{url!r} is not a team server's URL: give http://HOST:PORT")
        if name in self.urls():
            raise ConflictError(
                f"remote {name!r} exists already ({self.urls()[name]}): remove it first"
            )
        self.e.ctx.registry.set_settings({f"remote.{name}.url": url.rstrip("/")})

    def remove(self, name: str) -> None:
        self.url(name)  # raises if unknown
        settings = self.e.ctx.registry.settings()
        self.e.ctx.registry.set_settings(
            {k: "" for k in settings if k.startswith(f"remote.{name}.")}
        )

    def urls(self) -> dict[str, str]:
        """Name → URL of every remote."""
        return {
            k.split(".")[1]: v
            for k, v in self.e.ctx.registry.settings().items()
            if k.startswith("remote.") and k.endswith(".url") and v
        }

    def url(self, name: str) -> str:
        known = self.urls()
        if name not in known:
            raise NotFoundError(
                f"no remote {name!r}"
                + (f" (there are {', '.join(sorted(known))})" if known else ""),
                hint=Hint(
                    cli="add it with `modelkeep remote add NAME URL`",
                    api="add it with repo.remotes.add(name, url)",
                ),
            )
        return known[name]

    def mapping(self, name: str, model: str) -> dict[int, int]:
        """Local version number → the remote's, as last transferred."""
        raw = self.e.ctx.registry.settings().get(f"remote.{name}.map.{model}")
        return {int(k): int(v) for k, v in json.loads(raw).items()} if raw else {}

    def _remember(self, name: str, model: str, mapped: list[Mapped], extra: dict[str, str]) -> None:
        known = self.mapping(name, model)
        known.update({m.local: m.remote for m in mapped})
        values = {
            f"remote.{name}.map.{model}": json.dumps({str(k): v for k, v in sorted(known.items())})
        }
        self.e.ctx.registry.set_settings({**values, **extra})

    def client(self, where: str, token: str | None = None) -> Client:
        """A client of remote ``where`` (a name, or a URL)."""
        url = where if is_url(where) else self.url(where)
        return Client(url, credentials.token_for(url, token))

    # -- push ------------------------------------------------------------------------

    def push(
        self,
        rev: str,
        remote: str = "origin",
        *,
        alias: str | None = None,
        token: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> TransferResult:
        """Send the version ``rev`` names, with every ancestor the server lacks, and
        publish them there in order. ``alias``: then move that alias on the server to
        it, compare-and-swap on where this repository last saw it there."""
        version = self.e.versions.resolve(rev)
        model = version.model
        ex = self.e.exchange
        mine = ex.identities(model)
        wanted = ancestors(self.e.ctx.registry.parents_map(model), [version.number])
        with self.client(remote, token) as client:
            answer = client.get(f"/models/{model}/identities")
            theirs = answer["identities"]
            at_remote = {ident: int(n) for n, ident in theirs.items()}
            to_send = sorted(n for n in wanted if mine[n] not in at_remote)
            head = answer["branches"].get(version.branch)
            known_here = {mine[n] for n in wanted}
            if to_send and head is not None and theirs[str(head)] not in known_here:
                # Refused before a byte moves: the server would refuse to publish it.
                raise ConflictError(
                    f"{model}@{version.branch} on {client.url} is at {model}:{head} there, "
                    f"which {version.rev} does not descend from: pull, then push again"
                )
            versions = {n: self.e.ctx.registry.version(model, n) for n in to_send}
            needs = {n: ex.objects_of(v) for n, v in versions.items()}
            size_of: dict[ObjectId, int] = {}
            for objects in needs.values():
                size_of.update(objects)
            tick = progress(f"push {model}", sum(size_of.values())) if size_of else None
            moved = transfer.upload(self.e, client, model, size_of, tick)
            mapped = []
            for n in sorted(wanted):
                if n in versions:
                    record = ex.record(versions[n], mine)
                    answer = transfer.publish(self.e, client, model, record, needs[n])
                    at_remote[mine[n]] = int(answer["version"]["number"])
                    mapped.append(
                        Mapped(model, n, at_remote[mine[n]], mine[n], bool(answer["created"]))
                    )
                else:
                    mapped.append(Mapped(model, n, at_remote[mine[n]], mine[n], False))
            moved_aliases: dict[str, int] = {}
            extra: dict[str, str] = {}
            if alias is not None:
                check_name(alias, "alias name")
                target = at_remote[mine[version.number]]
                key = f"remote.{remote}.alias.{model}.{alias}"
                seen = self.e.ctx.registry.settings().get(key)
                expected = int(seen) if seen else self._alias_now(client, model, alias)
                client.put(
                    f"/models/{model}/aliases/{alias}",
                    {"to": str(target), "expected": expected, "message": f"pushed {version.rev}"},
                )
                moved_aliases[alias] = target
                extra[key] = str(target)
        self._remember(remote, model, mapped, extra)
        return TransferResult(
            remote, "push", tuple(mapped), moved.objects, moved.bytes, moved.skipped, moved_aliases
        )

    @staticmethod
    def _alias_now(client: Client, model: str, alias: str) -> int | None:
        refs = client.get(f"/models/{model}/refs", kind="alias")
        return next((int(r["version"]) for r in refs if r["name"] == alias), None)

    # -- fetch and pull --------------------------------------------------------------

    def fetch(
        self,
        model: str | None = None,
        remote: str = "origin",
        *,
        token: str | None = None,
        progress: ProgressStart = no_progress,
        follow_refs: bool = False,
    ) -> TransferResult:
        """Bring over every version of ``model`` (default: every model the token can
        read) this repository lacks, with their objects; branches advance where they
        only move forward. ``follow_refs`` (pull): aliases and tags here then point
        where the server's do."""
        with self.client(remote, token) as client:
            names = [model] if model else [m["name"] for m in client.pages("/models")]
            mapped: list[Mapped] = []
            total = transfer.Moved()
            aliases: dict[str, int] = {}
            for name in names:
                check_name(name)
                got, moved = self._fetch_model(client, remote, name, progress)
                mapped += got
                total.objects += moved.objects
                total.bytes += moved.bytes
                total.skipped += moved.skipped
                if follow_refs:
                    aliases.update(self._follow_refs(client, remote, name, got))
        return TransferResult(
            remote, "pull", tuple(mapped), total.objects, total.bytes, total.skipped, aliases
        )

    def pull(
        self,
        model: str | None = None,
        remote: str = "origin",
        *,
        token: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> TransferResult:
        """``fetch``, then aliases and tags here point where the server's do."""
        return self.fetch(model, remote, token=token, progress=progress, follow_refs=True)

    def _fetch_model(
        self, client: Client, remote: str, model: str, progress: ProgressStart
    ) -> tuple[list[Mapped], transfer.Moved]:
        ex = self.e.exchange
        answer = client.get(f"/models/{model}/identities")
        theirs = {int(n): ident for n, ident in answer["identities"].items()}
        if not theirs:
            raise NotFoundError(f"{model} has no versions on {client.url}")
        mine = {ident: n for n, ident in ex.identities(model).items()}
        wanted = sorted(n for n, ident in theirs.items() if ident not in mine)
        records = [client.get(f"/versions/{model}:{n}/record") for n in wanted]
        size_of: dict[ObjectId, int] = {}
        for rec in records:
            size_of.update((ObjectId(i), int(s)) for i, s in rec.pop("objects").items())
        tick = progress(f"pull {model}", sum(size_of.values())) if size_of else None
        moved = transfer.download(self.e, client, model, size_of, tick)
        for rec in records:
            version, _ = ex.publish(rec)
            mine[rec["identity"]] = version.number
        mapped = [
            Mapped(model, mine[ident], n, ident, n in wanted) for n, ident in sorted(theirs.items())
        ]
        self._remember(remote, model, mapped, {})
        return mapped, moved

    def _follow_refs(
        self, client: Client, remote: str, model: str, mapped: list[Mapped]
    ) -> dict[str, int]:
        local_of = {m.remote: m.local for m in mapped}
        here = {(r.kind, r.name): r.version for r in self.e.refs.refs(model)}
        moved: dict[str, int] = {}
        seen: dict[str, str] = {}
        for ref in client.get(f"/models/{model}/refs"):
            kind, name, number = ref["kind"], ref["name"], int(ref["version"])
            local = local_of.get(number)
            if kind == "branch" or local is None or here.get((kind, name)) == local:
                if kind == "alias":
                    seen[f"remote.{remote}.alias.{model}.{name}"] = str(number)
                continue
            message = f"as on {remote} ({model}:{number} there)"
            if kind == "alias":
                self.e.refs.set_alias(f"{model}@{name}", f"{model}:{local}", message)
                seen[f"remote.{remote}.alias.{model}.{name}"] = str(number)
                moved[name] = local
            elif (kind, name) not in here:
                self.e.refs.tag(f"{model}:{local}", name, message)
                moved[name] = local
        if seen:
            self.e.ctx.registry.set_settings(seen)
        return moved
