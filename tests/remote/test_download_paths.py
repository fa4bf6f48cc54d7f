"""The two ways a download is read. Over plain http without a proxy, the client reads
the answer with ``http.client`` straight into the store's buffers; through a proxy or
over https it reads httpx's stream. Both store the same objects, verified, against a
real server; which one a URL takes follows the proxy settings httpx itself obeys."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from remote_team import MIB, Client, Team, files_of, write_random

from modelkeep.errors import AuthenticationError, NotFoundError
from modelkeep.remote import client as http_client
from modelkeep.store import ObjectId


def _pull_and_compare(team: Team, client: Client, tmp_path: Path) -> None:
    a = client("a")
    # A large chunked tensor (streamed to its file) and small files (gathered).
    folder = write_random(tmp_path / "m", 6 * MIB, seed=3)
    (folder / "config.json").write_text('{"layers": 4}')
    a.commit("mixed", folder, "mixed")
    a.remotes.push("mixed", token=team.tokens["alice"])
    objects = a.exchange.objects_of(a.show("mixed"))

    b = client("b")
    done = b.remotes.pull("mixed", token=team.tokens["reader"])
    assert done.objects_sent == len(objects)
    assert files_of(b, "mixed", tmp_path / "b-files") == files_of(a, "mixed", tmp_path / "a-files")
    assert b.fsck().ok

    again = b.remotes.pull("mixed", token=team.tokens["reader"])
    assert again.objects_sent == 0


def test_a_pull_read_by_http_client_stores_every_object(
    team: Team, client: Client, tmp_path: Path
) -> None:
    assert http_client._direct(team.url) is not None
    _pull_and_compare(team, client, tmp_path)


def test_a_pull_read_from_httpx_stores_every_object(
    team: Team, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The way a proxied or https URL is read, over this plain-http server.
    monkeypatch.setattr(http_client, "_direct", lambda url: None)
    _pull_and_compare(team, client, tmp_path)


def test_which_urls_are_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert http_client._direct("http://host:8900") == ("host", 8900, "/api/v1")
    assert http_client._direct("http://host/team") == ("host", 80, "/team/api/v1")
    assert http_client._direct("https://host:8900") is None  # TLS: httpx verifies it

    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    assert http_client._direct("http://host:8900") is None  # httpx would go through it
    monkeypatch.setenv("no_proxy", "host")
    assert http_client._direct("http://host:8900") == ("host", 8900, "/api/v1")


def test_a_kept_connection_the_server_closed_since_is_replaced(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    version = a.commit("small", write_random(tmp_path / "m", MIB, seed=5), "small")
    a.remotes.push("small", token=team.tokens["alice"])
    ids = {"ids": sorted(o.hex for o in a.exchange.objects_of(version))}
    buffer = memoryview(bytearray(MIB))

    def body_size(c: http_client.Client) -> int:
        size = 0
        with c.post_for_stream("/models/small/objects/get", ids) as body:
            while count := body.readinto(buffer):
                size += count
        return size

    with http_client.Client(team.url, team.tokens["reader"]) as c:
        connects = 0
        connect = c._connect

        def counted(host: str, port: int) -> http.client.HTTPConnection:
            nonlocal connects
            connects += 1
            return connect(host, port)

        c._connect = counted  # type: ignore[method-assign]
        first = body_size(c)
        assert len(c._idle) == 1  # read to its end, the connection is kept
        assert body_size(c) == first > MIB
        assert connects == 1  # and used again
        team.restart()  # which closes it on the server's side
        assert body_size(c) == first
        assert connects == 2


def test_an_error_answer_is_the_error_it_names(team: Team, client: Client, tmp_path: Path) -> None:
    a = client("a")
    version = a.commit("small", write_random(tmp_path / "m", MIB, seed=6), "small")
    a.remotes.push("small", token=team.tokens["alice"])
    known = sorted(o.hex for o in a.exchange.objects_of(version))
    with http_client.Client(team.url, team.tokens["reader"]) as c:
        unknown = {"ids": [ObjectId.of(b"never stored").hex]}
        with (
            pytest.raises(NotFoundError, match="not here"),
            c.post_for_stream("/models/small/objects/get", unknown),
        ):
            pass
        # The connection that answered the error is not kept for the next request.
        assert c._idle == []
    with (
        http_client.Client(team.url, "mkt_0_not-a-token") as c,
        pytest.raises(AuthenticationError),
        c.post_for_stream("/models/small/objects/get", {"ids": known}),
    ):
        pass
