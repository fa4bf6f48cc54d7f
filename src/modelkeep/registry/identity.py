"""A version's identity across repositories: a BLAKE3 hash of what it is — content
(tree) and lineage (who, when, why, parameters, metrics, datasets, code, environment,
artifact) — and of its parents' identities, as a git commit id covers its parents.

It lives in the registry, beside the records it hashes, so that the registry can store
each version's identity in the same transaction that adds it (whatever path adds it:
commit, update, a received version) and fill in those it lacks; it depends on nothing
but the version's own row, so any process computing it gets the same value.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import blake3

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelkeep.registry.records import Version

# Fields of a version that are not part of its identity: where it sits in one
# repository (number, model name, parents as numbers) and what may change after it.
_LOCAL = ("model", "number", "rev", "parents", "labels")


def identity_of(version: Version, parent_identities: Sequence[str]) -> str:
    """The version's identity given its parents' (see the module's docstring)."""
    doc = {k: v for k, v in version.to_dict().items() if k not in _LOCAL}
    doc["parents"] = list(parent_identities)
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    # The same hash as the store's object ids (ObjectId.of): the registry does not
    # import the store for it.
    return blake3.blake3(blob.encode()).hexdigest()
