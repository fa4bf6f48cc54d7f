"""Installed library versions: looked up once, looked up again after an install."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from modelkeep.formats.base import versions

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _install(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    _later(site)


def _later(site: Path) -> None:
    # A folder's mtime ticks with the kernel's clock (a few ms): steps this quick could
    # share one tick, which an install that takes seconds never does.
    stamp = site.stat().st_mtime_ns + 1_000_000_000
    os.utime(site, ns=(stamp, stamp))


def test_versions_follow_installs_and_removals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert versions("mk-fake-lib") == {}
    _install(site, "mk_fake_lib", "1.0")
    assert versions("mk-fake-lib") == {"mk-fake-lib": "1.0"}
    assert versions("mk-fake-lib") == {"mk-fake-lib": "1.0"}  # from the cache
    shutil.rmtree(site / "mk_fake_lib-1.0.dist-info")  # an upgrade, as pip does it
    _install(site, "mk_fake_lib", "2.0")
    assert versions("mk-fake-lib") == {"mk-fake-lib": "2.0"}
    shutil.rmtree(site / "mk_fake_lib-2.0.dist-info")
    _later(site)
    assert versions("mk-fake-lib") == {}
