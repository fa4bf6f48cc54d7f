"""Review: a stepped canary that reaches 100 % after someone moved the alias past its
candidate. ``routing`` promotes it through ``end_deployment(promote=True)``, whose
forward-only check raises UsageError, which routing does not expect: every routing call
(each server's start and sync) fails until someone aborts the rollout by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import modelkeep

if TYPE_CHECKING:
    from pathlib import Path


def test_routing_survives_an_alias_moved_past_the_candidate(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        for i in range(3):
            f = tmp_path / f"m{i}.txt"
            f.write_text(str(i))
            repo.commit("churn", f, f"v{i + 1}")
        repo.set_alias("churn@production", "churn:1")
        repo.deploy("churn", strategy="canary", candidate="churn:2", steps=[100], interval=3600)
        repo.promote("churn:3", "production")  # a hot fix, by hand, mid-rollout
        table = repo.routing("churn", "production")
        assert table.primary == 3
        assert table.candidate is None  # the superseded rollout no longer routes
        assert repo.resolve("churn@production").number == 3  # never moved back
