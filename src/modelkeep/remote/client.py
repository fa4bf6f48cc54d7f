"""An HTTP client of a team server: its answers as records, its errors as ours.

Every error the server answers is one line (``{"error": …}``) mapped back to the
error class it came from by status, so a caller over HTTP catches what a caller of a
local repository catches: 404 → NotFoundError, 409 → ConflictError, and so on.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, TypeGuard

from modelkeep import errors
from modelkeep.errors import (
    AuthenticationError,
    ConflictError,
    Hint,
    ModelkeepError,
    NotFoundError,
    PermissionDeniedError,
    UnreachableError,
    UsageError,
)
from modelkeep.store.frames import Pieces

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import httpx

    from modelkeep.store.frames import Readable

API = "/api/v1"
_BY_STATUS: dict[int, type[ModelkeepError]] = {
    400: UsageError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: UsageError,
    422: UsageError,
    429: AuthenticationError,
    503: UnreachableError,
}
_CONNECT_SECONDS = 10.0
_NO_TOKEN = Hint(
    cli="set MODELKEEP_TOKEN, or store one with `modelkeep login URL`",
    api="pass token= to Repo.open, or set MODELKEEP_TOKEN",
)


def is_url(where: object) -> TypeGuard[str]:
    """Whether ``where`` names a team server rather than a folder."""
    return isinstance(where, str) and where.startswith(("http://", "https://"))


class Client:
    """One server, one token; thread-safe (httpx's pool), closed with ``close()``."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 300.0) -> None:
        import httpx

        if not is_url(url):
            raise UsageError(f"{url!r} is not a team server's URL: give http://HOST:PORT")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers, self._timeout = headers, timeout
        self._http = httpx.Client(
            base_url=self.url + API,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=_CONNECT_SECONDS),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            # Plain http never uses TLS: loading the CA bundle for it would cost a
            # push ~25 ms. https verifies certificates as always.
            verify=self.url.startswith("https://"),
        )

        self._direct = _direct(self.url)
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise UnreachableError(
                f"the team server at {self.url} cannot be reached ({exc or type(exc).__name__}): "
                f"check that it runs and the URL"
            ) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_params(params)).json()

    def post(self, path: str, body: Any, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=_params(params)).json()

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body).json()

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path).json()

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, a page at a time."""
        offset: int | None = 0
        while offset is not None:
            page = self.get(path, **params, offset=offset, limit=1000)
            yield from page["items"]
            offset = page.get("next_offset")

    def post_bytes(self, path: str, parts: Iterable[bytes | memoryview]) -> Any:
        body = b"".join(parts)
        headers = {"Content-Type": "application/octet-stream"}
        return self.request("POST", path, content=body, headers=headers).json()

    @contextlib.contextmanager
    def post_for_stream(self, path: str, body: Any) -> Iterator[Readable]:
        """The answer's body to read as it arrives, for a ``with`` block: a download is
        never gathered whole in memory.

        Over plain http (no proxy) it is read with the standard library's
        ``http.client``, whose ``readinto`` receives straight into the reader's
        buffer. httpx (h11) copies each byte twice on the way and holds the GIL to do
        it: for a clone on a fast network that was a third of the client's work."""
        if self._direct is None:
            with self._stream_httpx(path, body) as pieces:
                yield Pieces(pieces)
            return
        response, connection = self._post_direct(path, body)
        try:
            yield _Body(response, self._broke)
        except BaseException:
            connection.close()
            raise
        # Read to its end, on a connection the server keeps open: it may serve again.
        if response.isclosed() and connection.sock is not None:
            with self._idle_lock:
                self._idle.append(connection)
        else:
            connection.close()

    def _post_direct(
        self, path: str, body: Any
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        assert self._direct is not None
        host, port, prefix = self._direct
        data = json.dumps(body).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        with self._idle_lock:
            kept = self._idle.pop() if self._idle else None
        while True:
            connection = kept or self._connect(host, port)
            try:
                connection.request("POST", prefix + path, body=data, headers=headers)
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if kept is None:
                    raise self._broke(exc, "cannot be reached") from None
                kept = None  # the server has closed it since: a fresh one is tried
        if response.status >= 400:
            import httpx

            try:
                content = response.read()
            except (OSError, http.client.HTTPException):
                content = b""  # the status alone names the error
            connection.close()
            raise self._error(
                httpx.Response(response.status, headers=response.getheaders(), content=content)
            )
        return response, connection

    def _connect(self, host: str, port: int) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(host, port, timeout=_CONNECT_SECONDS)
        try:
            connection.connect()
        except OSError as exc:
            raise self._broke(exc, "cannot be reached") from None
        assert connection.sock is not None
        connection.sock.settimeout(self._timeout)
        return connection

    def _broke(self, exc: BaseException, how: str = "broke off") -> UnreachableError:
        return UnreachableError(
            f"the team server at {self.url} {how} ({exc or type(exc).__name__}): "
            f"check that it runs, then try again"
        )

    @contextlib.contextmanager
    def _stream_httpx(self, path: str, body: Any) -> Iterator[Iterator[bytes]]:
        import httpx

        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield response.iter_bytes()
        except httpx.TransportError as exc:
            raise self._broke(exc, "cannot be reached or broke off") from None

    def _error(self, response: httpx.Response) -> ModelkeepError:
        try:
            doc = response.json()
        except (json.JSONDecodeError, ValueError):
            doc = {}
        message = doc.get("error") if isinstance(doc, dict) else None
        if message is None and isinstance(doc, dict) and "detail" in doc:
            message = _detail(doc["detail"])
        message = message or f"{response.status_code} {response.reason_phrase}"
        status = response.status_code
        cls = _BY_STATUS.get(status)
        kind = getattr(errors, str(doc.get("kind")), None) if isinstance(doc, dict) else None
        if isinstance(kind, type) and issubclass(kind, ModelkeepError) and cls is not None:
            cls = kind if issubclass(kind, cls) else cls  # the server's class, if it fits
        if cls is None:
            return ModelkeepError(f"the team server at {self.url} failed: {message}")
        if cls is AuthenticationError and status == 401:
            return AuthenticationError(f"{self.url}: {message}", hint=_NO_TOKEN)
        return cls(message)


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class _Body:
    """An answer's body as a ``Readable``; a connection that breaks is UnreachableError."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        broke: Callable[[BaseException], UnreachableError],
    ) -> None:
        self._response, self._broke = response, broke

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._response.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise self._broke(exc) from None


def _direct(url: str) -> tuple[str, int, str] | None:
    """(host, port, path of the API) when ``url`` is plain http reached without a proxy
    (what httpx would use, from the environment); None otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    proxies = urllib.request.getproxies_environment()
    if (proxies.get("http") or proxies.get("all")) and not urllib.request.proxy_bypass(
        parts.hostname
    ):
        return None
    return parts.hostname, parts.port or 80, parts.path.rstrip("/") + API


def _detail(detail: Any) -> str:
    """FastAPI's validation answer as one line: the first problem and where."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return str(detail)
