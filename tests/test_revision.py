"""Names and revisions: parsing every form, rejecting bad ones, and resolving them in a repo."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelkeep
from modelkeep.errors import (
    InvalidNameError,
    RefNotFoundError,
    RevisionSyntaxError,
    UsageError,
    VersionNotFoundError,
)
from modelkeep.revision import Revision, check_name, parse_alias

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# -- parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", Revision("churn")),
        ("churn:3", Revision("churn", number=3)),
        ("churn:42", Revision("churn", number=42)),
        ("churn@production", Revision("churn", ref="production")),
        ("churn@main~2", Revision("churn", ref="main", ancestry=2)),
        ("churn@main~~", Revision("churn", ref="main", ancestry=2)),
        ("churn@main~", Revision("churn", ref="main", ancestry=1)),
        ("churn@main~2~3", Revision("churn", ref="main", ancestry=5)),
        ("churn@production^", Revision("churn", ref="production", back=1)),
        ("churn@production^^", Revision("churn", ref="production", back=2)),
        ("churn@production^~1", Revision("churn", ref="production", back=1, ancestry=1)),
        ("churn:3~1", Revision("churn", number=3, ancestry=1)),
        ("churn~", Revision("churn", ancestry=1)),
        ("my-model_v2.1@exp.a-b_c", Revision("my-model_v2.1", ref="exp.a-b_c")),
        ("  churn:3  ", Revision("churn", number=3)),
    ],
)
def test_parse(text: str, expected: Revision) -> None:
    assert Revision.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "churn:",
        "@x",
        "churn@",
        "chu rn",
        "churn:abc",
        "churn@prod^x",
        "",
        "churn:3@main",
        "churn@main:3",
        "churn:3^",
        "churn@@main",
        "churn@main~x",
        "-churn",
        "churn/x",
        "churn:-1",
    ],
)
def test_parse_rejects_with_examples(text: str) -> None:
    with pytest.raises(RevisionSyntaxError) as info:
        Revision.parse(text)
    message = str(info.value)
    assert repr(text) in message
    assert "churn:3" in message
    assert "churn@production" in message
    assert "churn@main~2" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize("text", ["churn:0", "churn:00"])
def test_parse_rejects_version_zero(text: str) -> None:
    with pytest.raises(RevisionSyntaxError, match="start at 1") as info:
        Revision.parse(text)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("churn", "churn"),
        ("churn:3", "churn:3"),
        ("churn@main~~", "churn@main~2"),
        ("churn@production^^", "churn@production^^"),
        ("churn:3~1", "churn:3~1"),
    ],
)
def test_str_is_canonical(text: str, canonical: str) -> None:
    assert str(Revision.parse(text)) == canonical


_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@st.composite
def revisions(draw: st.DrawFn) -> Revision:
    model = draw(_names)
    ancestry = draw(st.integers(0, 5))
    form = draw(st.sampled_from(["head", "number", "ref"]))
    if form == "number":
        return Revision(model, number=draw(st.integers(1, 10**6)), ancestry=ancestry)
    if form == "ref":
        return Revision(model, ref=draw(_names), back=draw(st.integers(0, 4)), ancestry=ancestry)
    return Revision(model, ancestry=ancestry)


@settings(max_examples=50, deadline=None)
@given(revisions())
def test_str_parse_round_trip(rev: Revision) -> None:
    assert Revision.parse(str(rev)) == rev


def test_parse_alias() -> None:
    assert parse_alias("churn@production") == ("churn", "production")
    for bad in ("churn", "churn:3", "churn@production^", "churn@main~1"):
        with pytest.raises(RevisionSyntaxError, match="MODEL@ALIAS"):
            parse_alias(bad)


# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["churn", "a", "Churn-2", "x.y_z", "0model", "a" * 128])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("a/b", ["'/'"]),
        ("../x", ["'/'"]),
        ("x y", ["' '"]),
        ("é", ["'é'"]),
        ("modèle/v1", ["'/'", "'è'"]),
        ("a:b@c", ["':'", "'@'"]),
    ],
)
def test_check_name_names_the_characters_not_allowed(name: str, bad: list[str]) -> None:
    with pytest.raises(InvalidNameError, match="not allowed") as info:
        check_name(name, "branch name")
    message = str(info.value)
    assert f"invalid branch name {name!r}" in message
    for char in bad:
        assert char in message
    assert "letters, digits" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a..b", "ends.", "a" * 129])
def test_check_name_rejects_bad_shapes(name: str) -> None:
    with pytest.raises(InvalidNameError, match="letters, digits") as info:
        check_name(name)
    assert f"invalid model name {name!r}" in str(info.value)


# -- resolution -------------------------------------------------------------------


def _build(folder: Path) -> modelkeep.Repo:
    """churn: main 1-2-3-5, branch exp 2-4, production moved 1 → 3 → 4 then rolled back to 3.

    fraud: one version, so numbers of different models never mix.
    """
    model = folder / "model.bin"
    r = modelkeep.Repo.memory()

    def commit(name: str, content: bytes, branch: str | None = None) -> int:
        model.write_bytes(content)
        return r.commit(name, model, content.decode(), branch=branch).number

    assert [commit("churn", b"v1"), commit("churn", b"v2"), commit("churn", b"v3")] == [1, 2, 3]
    r.branch("churn", "exp", "churn:2")
    assert commit("churn", b"v4", branch="exp") == 4
    assert commit("churn", b"v5") == 5
    assert commit("fraud", b"f1") == 1
    r.promote("churn:1", "production")
    r.promote("churn:3", "production")
    r.promote("churn@exp", "production")
    before, ref = r.rollback("churn@production")
    assert (before, ref.version) == (4, 3)
    r.tag("churn:2", "v2.0")
    r.promote("churn:5", "staging")
    return r


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelkeep.Repo]:
    """One repository for the tests that only read."""
    r = _build(tmp_path_factory.mktemp("revisions"))
    yield r
    r.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    """A repository of its own, for tests that move refs."""
    r = _build(tmp_path)
    yield r
    r.close()


@pytest.mark.parametrize(
    ("rev", "number"),
    [
        ("churn", 5),
        ("churn~", 3),
        ("churn~3", 1),
        ("churn:4", 4),
        ("churn:3~1", 2),
        ("churn:4~1", 2),
        ("churn:5~~", 2),
        ("churn@main", 5),
        ("churn@main~1", 3),
        ("churn@main~2", 2),
        ("churn@main~~", 2),
        ("churn@main~3", 1),
        ("churn@main^", 3),
        ("churn@main^^", 2),
        ("churn@exp", 4),
        ("churn@exp~", 2),
        ("churn@exp^", 2),
        ("churn@production", 3),
        ("churn@production^", 4),
        ("churn@production^^", 3),
        ("churn@production^^^", 1),
        ("churn@production~1", 2),
        ("churn@production^~1", 2),
        ("churn@v2.0", 2),
        ("churn@staging", 5),
        ("fraud", 1),
        ("fraud:1", 1),
    ],
)
def test_resolve(shared: modelkeep.Repo, rev: str, number: int) -> None:
    version = shared.resolve(rev)
    assert version.number == number
    assert version.model == rev.split("@")[0].split(":")[0].split("~")[0]
    assert shared.resolve(Revision.parse(rev)) == version


def test_resolved_versions_carry_their_lineage(shared: modelkeep.Repo) -> None:
    assert shared.resolve("churn@exp").branch == "exp"
    assert shared.resolve("churn@exp").parents == (2,)
    assert shared.resolve("churn").parents == (3,)
    assert shared.resolve("churn:4").message == "v4"


def test_rollback_of_a_rollback_undoes_it(repo: modelkeep.Repo) -> None:
    before, ref = repo.rollback("churn@production")
    assert (before, ref.version) == (3, 4)
    assert repo.resolve("churn@production").number == 4
    assert repo.resolve("churn@production^").number == 3
    before, ref = repo.rollback("churn@production", to="1")
    assert (before, ref.version) == (4, 1)
    assert repo.resolve("churn@production^^").number == 3


@pytest.mark.parametrize("rev", ["churn@staging^", "churn@v2.0^", "fraud@main^"])
def test_back_step_without_an_earlier_move(shared: modelkeep.Repo, rev: str) -> None:
    with pytest.raises(VersionNotFoundError, match="no earlier target") as info:
        shared.resolve(rev)
    assert rev in str(info.value)
    assert "moved only 0 time(s)" in str(info.value)


def test_back_step_past_the_first_move(shared: modelkeep.Repo) -> None:
    with pytest.raises(VersionNotFoundError, match=r"churn@production\^\^\^\^: .* 3 time"):
        shared.resolve("churn@production^^^^")
    with pytest.raises(VersionNotFoundError, match="no earlier target"):
        shared.resolve("churn@production^^^^^^^^")


def test_rollback_without_an_earlier_move(repo: modelkeep.Repo) -> None:
    with pytest.raises(VersionNotFoundError, match="no earlier target"):
        repo.rollback("churn@staging")
    assert repo.resolve("churn@staging").number == 5


@pytest.mark.parametrize(
    ("rev", "match"),
    [
        ("churn~4", r"churn:1 has no parent \(after 3 steps\)"),
        ("churn@exp~3", r"churn:1 has no parent \(after 2 steps\)"),
        ("churn:1~", r"churn:1 has no parent \(after 0 steps\)"),
    ],
)
def test_ancestry_past_the_first_version(shared: modelkeep.Repo, rev: str, match: str) -> None:
    with pytest.raises(VersionNotFoundError, match=match):
        shared.resolve(rev)


def test_unknown_names_say_what_exists(shared: modelkeep.Repo) -> None:
    with pytest.raises(RefNotFoundError, match="has: alias production, alias staging") as info:
        shared.resolve("churn@prod")
    assert "branch exp, branch main, tag v2.0" in str(info.value)
    with pytest.raises(VersionNotFoundError, match=r"versions 1\.\.5"):
        shared.resolve("churn:6")
    with pytest.raises(LookupError, match="models here: churn, fraud"):
        shared.resolve("chrun@main")
    with pytest.raises(LookupError, match="no model named 'chrun'"):
        shared.resolve("chrun")
    with pytest.raises(RefNotFoundError, match="fraud has no branch, alias or tag named 'exp'"):
        shared.resolve("fraud@exp")
    with pytest.raises(RevisionSyntaxError):
        shared.resolve("churn@")
