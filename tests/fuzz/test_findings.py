"""Defects the fuzz tests found, each as the smallest command that shows it: they
failed before their fixes and guard them now. A new finding goes here as a strict
xfail with an entry in fuzzkit.OPEN (which the fuzz tests steer around, so they keep
looking for other defects), until it is fixed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from fuzzkit import BAD_INPUT, CONFLICT, run_checked

if TYPE_CHECKING:
    from collections.abc import Callable

    from fuzzkit import Cli, Example


def test_commit_on_a_dataset_name_changes_nothing(fresh: Callable[[], Example], cli: Cli) -> None:
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    run_checked(cli, ex, "commit", "clf-train", str(blob), codes={CONFLICT}, succeeds=False)


@pytest.mark.parametrize("option", ["--param", "--metric"])
def test_a_value_past_the_json_parsers_depth(
    fresh: Callable[[], Example], cli: Cli, option: str
) -> None:
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    run_checked(cli, ex, "commit", "churn", str(blob), option, "k=" + "[" * 2000, codes={BAD_INPUT})


def test_a_stored_param_can_be_shown(fresh: Callable[[], Example], cli: Cli) -> None:
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    value = "[" * 500 + "]" * 500
    res = run_checked(cli, ex, "commit", "churn", str(blob), "--param", f"k={value}")
    if res.code == 0:  # refusing it (exit 2) is as good as showing it
        for args in (["show", "churn", "--json"], ["log", "churn", "--json"]):
            shown = run_checked(cli, ex, *args, changes=False, succeeds=True)
            assert json.loads(shown.out)


def test_a_policy_file_that_is_not_utf8(fresh: Callable[[], Example], cli: Cli) -> None:
    ex = fresh()
    path = ex.scratch / "policy.toml"
    path.write_bytes(b"\x80")
    run_checked(cli, ex, "monitor", "policy", "clf", str(path), codes={BAD_INPUT}, succeeds=False)


def test_branch_error_is_one_line(fresh: Callable[[], Example], cli: Cli) -> None:
    ex = fresh()
    run_checked(cli, ex, "branch", "x\ny", "fuzzed", "--from", "churn:1", codes={BAD_INPUT})


@pytest.mark.parametrize("item", ["--metric=k\n=x", "--param=k\n=NaN"])
def test_pair_error_is_one_line(fresh: Callable[[], Example], cli: Cli, item: str) -> None:
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    run_checked(cli, ex, "commit", "churn", str(blob), item, codes={BAD_INPUT})
