"""Moving objects between a repository and a team server, in parallel batches.

Upload: the ids a version needs are sent in batches of up to 10,000; the server
answers which it lacks; only those are read from the local store and sent, as they
are stored, in batches of about 32 MiB on a few connections at once. Each batch is
verified and durable on the server before it answers, so after an interruption the
next negotiation leaves out every batch that arrived: nothing is sent twice.
Download is the same the other way, each object written to disk as it arrives and
verified before it counts, so an interrupted pull keeps every object that came whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelkeep.errors import ObjectsNotHereError, UsageError
from modelkeep.store import ObjectId
from modelkeep.store.frames import HEADER, header

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from modelkeep._engine import Engine
    from modelkeep._engine.engine import Progress
    from modelkeep.remote.client import Client

NEGOTIATE = 10_000  # ids per "which are missing?" question (the server's bound)
BATCH_BYTES = 32 << 20
BATCH_OBJECTS = 2_000
WORKERS = 4
MAX_UPLOAD = 80 << 20  # the server's bound on one request (server/transfer.py)


@dataclass
class Moved:
    objects: int = 0
    bytes: int = 0
    skipped: int = 0


def _batches(oids: Sequence[ObjectId], size_of: dict[ObjectId, int]) -> Iterator[list[ObjectId]]:
    batch: list[ObjectId] = []
    total = 0
    for oid in oids:
        size = size_of.get(oid, 0)
        if batch and (total + size > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield batch
            batch, total = [], 0
        batch.append(oid)
        total += size
    if batch:
        yield batch


def _parallel(work: list[list[ObjectId]], do: Callable[[list[ObjectId]], None]) -> None:
    """Run ``do`` on every batch on a few threads; the first error stops the rest."""
    if not work:
        return
    from concurrent.futures import ThreadPoolExecutor  # not at import: `log` never needs it

    with ThreadPoolExecutor(min(WORKERS, len(work)), thread_name_prefix="modelkeep-xfer") as pool:
        futures = [pool.submit(do, batch) for batch in work]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def upload(
    engine: Engine, client: Client, model: str, size_of: dict[ObjectId, int], tick: Progress | None
) -> Moved:
    """Send the objects of ``size_of`` the server lacks."""
    ids = sorted(size_of)
    lacking: list[ObjectId] = []
    for start in range(0, len(ids), NEGOTIATE):
        asked = [o.hex for o in ids[start : start + NEGOTIATE]]
        answer = client.post(f"/models/{model}/objects/missing", {"ids": asked})
        lacking.extend(ObjectId(i) for i in answer["missing"])
    moved = Moved(skipped=len(ids) - len(lacking))
    if tick is not None:
        tick(sum(size_of[o] for o in ids) - sum(size_of[o] for o in lacking))
    store = engine.ctx.store

    def send(batch: list[ObjectId]) -> None:
        parts: list[bytes | memoryview] = []
        size = 0
        for oid in batch:
            codec, payload = store.stored(oid)
            if len(payload) + HEADER.size > MAX_UPLOAD:
                raise UsageError(
                    f"object {oid.short} is {len(payload)} bytes, more than one request may "
                    f"carry ({MAX_UPLOAD}): commit with a smaller max_tensor_chunk"
                )
            parts += [header(oid, codec, len(payload)), payload]
            size += len(payload)
        client.post_bytes(f"/models/{model}/objects", parts)
        moved.objects += len(batch)
        moved.bytes += size
        if tick is not None:
            tick(sum(size_of[o] for o in batch))

    _parallel(list(_batches(lacking, size_of)), send)
    return moved


def download(
    engine: Engine, client: Client, model: str, size_of: dict[ObjectId, int], tick: Progress | None
) -> Moved:
    """Fetch the objects of ``size_of`` this repository lacks, verified on arrival."""
    lacking = engine.exchange.missing(sorted(size_of))
    moved = Moved(skipped=len(size_of) - len(lacking))
    if tick is not None:
        tick(sum(size_of.values()) - sum(size_of[o] for o in lacking))

    def fetch(batch: list[ObjectId]) -> None:
        asked, got = set(batch), set()

        def arrived(oid: ObjectId, _size: int) -> None:
            if oid not in asked:
                raise UsageError(f"the server sent object {oid.short}, not asked for: pull again")
            got.add(oid)
            if tick is not None:
                tick(size_of[oid])

        body = {"ids": [o.hex for o in batch]}
        with client.post_for_stream(f"/models/{model}/objects/get", body) as answer:
            count, size = engine.exchange.receive_stream(answer, arrived)
        moved.objects += count
        moved.bytes += size
        if got != asked:
            raise UsageError(
                f"the server sent {len(got)} of the {len(batch)} objects asked for: pull again"
            )

    _parallel(list(_batches(lacking, size_of)), fetch)
    return moved


def publish(
    engine: Engine,
    client: Client,
    model: str,
    record: dict[str, Any],
    objects: dict[ObjectId, int],
    **params: Any,
) -> dict[str, Any]:
    """Have the server publish ``record`` (whose ``objects`` were uploaded) and return
    its answer. Should the server lack some of them now — its gc ran between their
    upload and this, as nothing referenced them yet — they are sent again, and the
    version published once more: an admin's gc does not fail a push."""
    try:
        answer: dict[str, Any] = client.post(f"/models/{model}/versions", record, **params)
    except ObjectsNotHereError:
        upload(engine, client, model, objects, None)
        answer = client.post(f"/models/{model}/versions", record, **params)
    return answer
