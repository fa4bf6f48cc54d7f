"""The query language: parsed by a real parser into a tree, errors pointing at the bad
token, and searches done in SQL that agree with the same filter done in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep.registry.query import (
    Both,
    Compare,
    Field,
    Not,
    QuerySyntaxError,
    parse_order,
    parse_where,
)


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    tree = parse_where("metrics.f1 > 0.9 or labels.stage = 'prod' and not status = 'rejected'")
    assert tree == Both(
        "or",
        (
            Compare(Field("metrics", "f1"), ">", 0.9),
            Both(
                "and",
                (
                    Compare(Field("labels", "stage"), "=", "prod"),
                    Not(Compare(Field("status"), "=", "rejected")),
                ),
            ),
        ),
    )
    grouped = parse_where("(metrics.f1 > 0.9 or labels.stage = 'prod') and number >= 3")
    assert isinstance(grouped, Both)
    assert grouped.op == "and"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metrics.f1 >", "ends too soon at the end"),
        ("metrics.f1 > 0.9 and", "ends too soon"),
        ("foo = 1", "unknown field 'foo'"),
        ("metrics.f1 >> 2", "at column 13"),
        ("metrics.f1 > 0.9 extra", "unexpected 'extra' at column 18"),
        ("(metrics.f1 > 1", "ends too soon"),
        ("metrics.f1 = 'x' ; drop table versions", "unexpected ';' at column 18"),
        ("params.x = 'unterminated", "unexpected"),
        ("metrics.f1 > 1e999", "not a finite number"),
        ("x" * 3000, "too long"),
        ("\u0661 = 1", "unexpected"),
    ],
)
def test_a_bad_filter_is_one_line_pointing_at_the_token(text: str, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_where(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert len(message) < 400


def test_orderings() -> None:
    assert parse_order("metrics.f1").descending
    assert not parse_order("metrics.rmse asc").descending
    assert parse_order("created_at DESC").field == Field("created_at")
    for bad in ("", "metrics.f1 sideways", "nope", "metrics.f1 asc desc"):
        with pytest.raises(QuerySyntaxError):
            parse_order(bad)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> modelkeep.Repo:
    root = tmp_path_factory.mktemp("query") / "repo"
    repo = modelkeep.Repo.init(root)
    weights = root.parent / "w.bin"
    for i in range(1, 13):
        weights.write_bytes(b"v%d" % i)
        repo.commit(
            "churn",
            weights,
            f"version {i}",
            metrics={"f1": i / 12, **({"rmse": 1 / i} if i % 2 else {})},
            params={"dataset": f"ds-{i % 3}", "trees": i * 10},
        )
    repo.label("churn:3", reviewed_by="alice", stage="prod")
    repo.label("churn:7", reviewed_by="bob")
    repo.label("churn:11", reviewed_by="alice", stage="candidate")
    return repo


def _python(repo: modelkeep.Repo, keep: Any) -> list[int]:
    return [v.number for v in repo.log("churn") if keep(v)]


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        ("metrics.f1 > 0.5", lambda v: v.metrics["f1"] > 0.5),
        ("params.dataset = 'ds-1'", lambda v: v.params["dataset"] == "ds-1"),
        ("params.trees >= 60", lambda v: v.params["trees"] >= 60),
        ("labels.reviewed_by = 'alice'", lambda v: v.labels.get("reviewed_by") == "alice"),
        (
            "metrics.f1 > 0.2 and params.dataset = 'ds-0' and labels.reviewed_by = 'alice'",
            lambda v: (
                v.metrics["f1"] > 0.2
                and v.params["dataset"] == "ds-0"
                and v.labels.get("reviewed_by") == "alice"
            ),
        ),
        ("metrics.rmse < 0.2", lambda v: "rmse" in v.metrics and v.metrics["rmse"] < 0.2),
        ("not labels.stage = 'prod'", lambda v: v.labels.get("stage") != "prod"),
        ("number <= 3 or message = 'version 12'", lambda v: v.number <= 3 or v.number == 12),
        ("labels.stage != 'prod'", lambda v: "stage" in v.labels and v.labels["stage"] != "prod"),
    ],
)
def test_a_search_in_sql_agrees_with_the_same_filter_in_python(
    repo: modelkeep.Repo, where: str, keep: Any
) -> None:
    found = [v.number for v in repo.search("churn", where)]
    assert found == _python(repo, keep)


def test_order_and_limit(repo: modelkeep.Repo) -> None:
    top = repo.search("churn", "params.dataset = 'ds-1'", order_by="metrics.f1", limit=2)
    assert [v.number for v in top] == [10, 7]
    low = repo.search("churn", None, order_by="metrics.rmse asc", limit=3)
    assert [v.number for v in low] == [11, 9, 7]  # versions without rmse come last


def test_labels_change_and_every_change_is_an_event(repo: modelkeep.Repo) -> None:
    before = repo.resolve("churn:7")
    repo.label("churn:7", reviewed_by="carol", message="second look")
    repo.unlabel("churn:7", "reviewed_by")
    after = repo.resolve("churn:7")
    assert after.labels == {}
    assert after.tree_id == before.tree_id  # the version itself never changes
    changes = [e for e in repo.events("churn", action="label") if e.after == 7]
    assert [e.details for e in changes][:2] == [
        {"removed": {"reviewed_by": "carol"}},
        {"set": {"reviewed_by": "carol"}, "was": {"reviewed_by": "bob"}},
    ]


def test_the_cli_filters_orders_and_labels(cli: Any, repo: modelkeep.Repo, tmp_path: Path) -> None:
    res = cli(
        repo.root,
        "log",
        "churn",
        "--where",
        "labels.reviewed_by = 'alice'",
        "--order-by",
        "metrics.f1",
        "--json",
    )
    assert res.code == 0, res.err
    assert [v["number"] for v in __import__("json").loads(res.out)] == [11, 3]
    bad = cli(repo.root, "log", "churn", "--where", "metrics.f1 >")
    assert bad.code == 2
    assert "ends too soon" in bad.one_line_error()
    labelled = cli(repo.root, "label", "churn:2", "owner=dana", "--json")
    assert labelled.code == 0, labelled.err
    assert repo.resolve("churn:2").labels == {"owner": "dana"}
    wrong = cli(repo.root, "label", "churn:2", "no-equals-sign")
    assert wrong.code == 2
    assert "KEY=VALUE" in wrong.one_line_error()
