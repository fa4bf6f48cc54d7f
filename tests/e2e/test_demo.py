"""`modelkeep demo`: the whole story on a throw-away repository (the only demo run)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_story(cli: Any, e2e_base: Any) -> None:
    run = cli("demo", cwd=e2e_base)
    out = run.out
    assert "Traceback" not in run.err
    assert "$ modelkeep promote churn:2 production" in out
    assert "$ modelkeep rollback churn@production" in out
    assert "→ churn@production is churn:1 again" in out
    assert "rollback  2 → 1" in out  # history, newest first
    assert "$ modelkeep branch churn experiment --from churn:1" in out
    assert "churn:3 on experiment, parent (1,)" in out
    assert "matches churn:1 byte for byte" in out
    assert "$ modelkeep fsck" in out
    assert "→ ok:" in out
    # The monitoring loop, then its HTML report (the dev extra has the report extra).
    assert "policy 'quality drop' fired on windows" in out
    assert "$ modelkeep monitor report churn:2 --html report.html" in out
    assert "KB, self-contained" in out
    # The demo cleans up after itself (TMPDIR is the test folder).
    assert not list(e2e_base.glob("modelkeep-demo-*"))
