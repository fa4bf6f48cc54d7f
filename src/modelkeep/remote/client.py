"""An HTTP client of a team server: its answers as records, its errors as ours.

Every error the server answers is one line (``{"error": …}``) mapped back to the
error class it came from by status, so a caller over HTTP catches what a caller of a
local repository catches: 404 → NotFoundError, 409 → ConflictError, and so on.
"""

from __future__ import annotations

import contextlib
import json
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

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import httpx

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
        self._http = httpx.Client(
            base_url=self.url + API,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            # Plain http never uses TLS: loading the CA bundle for it would cost a
            # push ~25 ms. https verifies certificates as always.
            verify=self.url.startswith("https://"),
        )

    def close(self) -> None:
        self._http.close()

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
    def post_for_stream(self, path: str, body: Any) -> Iterator[Iterator[bytes]]:
        """The answer's body in pieces as they arrive, for a ``with`` block: a
        download is never gathered whole in memory."""
        import httpx

        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield response.iter_bytes()
        except httpx.TransportError as exc:
            raise UnreachableError(
                f"the team server at {self.url} cannot be reached or broke off "
                f"({exc or type(exc).__name__}): check that it runs, then try again"
            ) from None

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


def _detail(detail: Any) -> str:
    """FastAPI's validation answer as one line: the first problem and where."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return str(detail)
