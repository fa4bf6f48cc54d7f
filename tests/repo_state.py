"""What a repository holds, as one comparable value: a refused command must leave it equal.

Read through the public API (fsck, the event log, refs, schedules, deployments,
policies), so the same snapshot serves whatever engine is under the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modelkeep


def snapshot(root: Path | modelkeep.Repo) -> dict[str, Any]:
    repo = root if isinstance(root, modelkeep.Repo) else modelkeep.Repo(root)
    models = repo.models()
    state: dict[str, Any] = {
        "fsck": repo.fsck().to_dict(),
        "events": [e.to_dict() for e in repo.events()],
        "models": [m.to_dict() for m in models],
        "refs": {m.name: [r.to_dict() for r in repo.refs(m.name)] for m in models},
        "versions": {m.name: [v.to_dict() for v in repo.log(m.name)] for m in models},
        "schedules": [s.to_dict() for s in repo.schedules(include_removed=True)],
        "deployments": [d.to_dict() for d in repo.deployments()],
        "policies": {
            m.name: [vars(r) for r in repo.policy(m.name) or []]
            for m in models
            if m.kind == "model"
        },
    }
    return state
