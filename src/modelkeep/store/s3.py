"""An S3-compatible bucket (AWS S3, MinIO, Ceph, moto…) as a store ``Backend``, on obstore.

The client library was chosen on measurement (``benchmarks/s3_clients.py``: the moto
server on 127.0.0.1, 2 cores, best of 3; wall-clock, then CPU of the client process):

    operation            obstore        boto3          s3fs
    put 200 x 64 KiB     0.72 s 1.0x    0.99 s 1.4x    1.01 s 1.4x    CPU 0.11 / 0.42 / 0.46 s
    get 200 x 64 KiB     0.60 s 1.0x    0.89 s 1.5x    1.63 s 2.7x    CPU 0.13 / 0.39 / 0.82 s
    put 64 MiB (parts)   0.93 s 1.0x    0.90 s 1.0x    1.02 s 1.1x    CPU 0.06 / 0.18 / 0.16 s
    get 64 MiB           0.18 s 1.0x    0.54 s 3.0x    0.36 s 2.0x    CPU 0.13 / 0.14 / 0.19 s
    HEAD x 200           0.63 s 1.0x    0.76 s 1.2x    0.83 s 1.3x    CPU 0.07 / 0.34 / 0.41 s
    list 1,000 keys      0.21 s 1.0x    0.36 s 1.7x    0.34 s 1.6x    CPU 0.01 / 0.12 / 0.11 s
    total                3.27 s 1.0x    4.44 s 1.4x    5.18 s 1.6x    CPU 0.49 / 1.59 / 2.16 s

obstore (Rust's ``object_store``) is the fastest or level at every operation and costs
a third of boto3's CPU (a quarter of s3fs's): moto itself is most of the wall-clock, so
on a real endpoint the gap in client cost matters more, not less. It also has what the
store needs built in: conditional create (``If-None-Match: *``), multipart uploads with
parallel parts, retries with backoff, and short connect timeouts. One package, no
botocore. (boto3 is used only when present, to read credentials from AWS profile files.)
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from modelkeep.errors import MissingDependencyError, StoreError, UnreachableError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from obstore.store import ClientConfig, RetryConfig, S3Config, S3Store

# Larger payloads go as a multipart upload of parts this large, several in flight.
MULTIPART_THRESHOLD = 8 << 20
PART_SIZE = 8 << 20
PART_CONCURRENCY = 8
# An endpoint that went away must fail in seconds: a refused connection fails at once
# (after the retries' short backoff), a silent host after CONNECT_TIMEOUT per attempt, a
# stalled answer after READ_TIMEOUT without a byte. No retry starts once RETRY_TIMEOUT
# has passed, so the worst case is two attempts, about 16 s (measured: a listener that
# never answers fails a HEAD in 16 s, a refused port in 0.3 s). The whole-request
# timeout only bounds a large transfer that still moves.
CONNECT_TIMEOUT = timedelta(seconds=5)
READ_TIMEOUT = timedelta(seconds=8)
REQUEST_TIMEOUT = timedelta(minutes=5)
MAX_RETRIES = 2
RETRY_TIMEOUT = timedelta(seconds=10)
# Two writers' conditional puts of one key racing on AWS: the loser may get 409
# ConditionalRequestConflict ("retry"), not 412; a few tries settle it.
_CONFLICT_TRIES = 4

# With no credentials in the environment or profile files, obstore asks the EC2
# instance metadata service (or ECS's, or STS for a web identity): a failure there
# names that service's URL, not the endpoint's.
_CREDENTIAL_SOURCES = ("/latest/api/token", "/latest/meta-data/", "169.254.170.2", "WebIdentity")
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>(\w+)</Code>")
_CREDENTIAL_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
}  # fmt: skip
# How obstore (reqwest, hyper) words a failure below HTTP. Not "timeout": every
# message of a retried request quotes its "retry_timeout" setting.
_CONNECTION_WORDS = (
    "error sending request", "tcp connect error", "connection refused", "timed out",
    "dns error", "connection reset", "connection closed", "broken pipe",
    "incomplete message", "error decoding response body", "kind: timeout",
)  # fmt: skip


def _obstore() -> Any:
    try:
        import obstore
    except ImportError:
        raise MissingDependencyError(
            "an S3 object store needs obstore, which is not installed: "
            "`pip install 'modelkeep[s3]'`"
        ) from None
    return obstore


def _endpoint_from_env(endpoint: str | None) -> str | None:
    return endpoint or os.environ.get("MODELKEEP_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")


def _region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def _profile_files() -> bool:
    """Whether the usual AWS configuration names credentials that obstore does not read
    itself (it reads the environment, web identity and instance metadata, not the
    profile files of ~/.aws)."""
    if os.environ.get("AWS_PROFILE"):
        return True
    home = Path.home() / ".aws"
    files = (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials",
        os.environ.get("AWS_CONFIG_FILE") or home / "config",
    )
    return any(Path(f).is_file() for f in files)


def _credential_provider() -> Any:
    """boto3's credential chain when the credentials live in AWS profile files and boto3
    is installed; None leaves obstore to its own chain (environment first)."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or not _profile_files():
        return None
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None  # obstore's chain then says what is missing
    import botocore.exceptions

    try:
        return Boto3CredentialProvider()
    except ValueError:  # boto3 found no credentials either: obstore's chain says so
        return None
    except botocore.exceptions.BotoCoreError as exc:  # AWS_PROFILE names no profile, …
        raise UnreachableError(
            f"cannot read AWS credentials from the profile files ({type(exc).__name__}): "
            "check AWS_PROFILE and ~/.aws/config, or set AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY"
        ) from exc


class S3Backend:
    """Blobs in a bucket under a key prefix; every method is safe from many threads.

    Writes are create-only (``If-None-Match: *``): keys are content-addressed (or
    unique, as a new pack's), so a key that already exists holds the same bytes
    another writer stored, and ``put`` returns quietly. A completed PUT is durable,
    so ``sync`` has nothing to do. Failures to reach the bucket, refused credentials
    and a missing bucket raise UnreachableError naming the URL and what to do.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
    ) -> None:
        if not bucket:
            raise UsageError("an S3 store URL needs a bucket: s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = _endpoint_from_env(endpoint)
        self.region = region or _region()
        self._obs = _obstore()
        from obstore.exceptions import BaseError
        from obstore.store import S3Store

        # What obstore raises: its own errors, and OSError kinds (FileNotFoundError for a
        # 404). Anything else is a bug here, left to surface as it is.
        self._errors: tuple[type[Exception], ...] = (BaseError, OSError)

        config: S3Config = {"region": self.region}
        if self.endpoint:
            config["endpoint"] = self.endpoint
        client: ClientConfig = {
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "timeout": REQUEST_TIMEOUT,
            # Plain http only when the endpoint says so (moto, a MinIO on a private net).
            "allow_http": bool(self.endpoint and self.endpoint.startswith("http://")),
        }
        retry: RetryConfig = {
            "max_retries": MAX_RETRIES,
            "retry_timeout": RETRY_TIMEOUT,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        self._store: S3Store = S3Store(
            bucket,
            prefix=self.prefix or None,
            config=config,
            client_options=client,
            retry_config=retry,
            credential_provider=_credential_provider(),
        )

    @classmethod
    def from_url(cls, url: str, endpoint: str | None = None) -> S3Backend:
        """``s3://BUCKET/PREFIX``; the endpoint from ``endpoint``, else the environment
        (MODELKEEP_S3_ENDPOINT, then AWS_ENDPOINT_URL), else AWS itself."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise UsageError(f"not an S3 store URL: {url!r} (expected s3://BUCKET/PREFIX)")
        return cls(parts.netloc, parts.path, endpoint=endpoint)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r}, endpoint={self.endpoint!r})"

    # -- errors -------------------------------------------------------------------

    def _where(self) -> str:
        at = self.endpoint or f"AWS S3 ({self.region})"
        return f"{self.url} at {at}"

    def _fail(self, exc: Exception, key: str | None = None) -> NoReturn:
        """Turn a library error into the modelkeep error a user can act on. The
        library's own text is never shown: it may quote request details."""
        text = str(exc)
        status_m = _STATUS.search(text)
        status = int(status_m.group(1)) if status_m else None
        code_m = _CODE.search(text)
        code = code_m.group(1) if code_m else None
        where = self._where()
        if any(marker in text for marker in _CREDENTIAL_SOURCES):
            raise UnreachableError(
                f"found no credentials for the object store {where} (the instance "
                "metadata or container credentials service did not answer): set "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with boto3 "
                "installed"
            ) from exc
        if code == "NoSuchBucket":
            raise UnreachableError(
                f"the object store {where} has no bucket {self.bucket!r}: "
                "create the bucket, or correct the URL"
            ) from exc
        if status in (401, 403) or code in _CREDENTIAL_CODES or _is_auth(exc):
            why = code or (f"HTTP {status}" if status else "no usable credentials")
            raise UnreachableError(
                f"the object store {where} refused the credentials ({why}): check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, "
                "AWS_PROFILE) and the bucket's policy"
            ) from exc
        if status is not None and status >= 500:
            raise UnreachableError(
                f"the object store {where} kept failing (HTTP {status}"
                f"{', ' + code if code else ''}) after {MAX_RETRIES} retries: "
                "is the endpoint up? try again later"
            ) from exc
        lowered = text.lower()
        if status is None and any(w in lowered for w in _CONNECTION_WORDS):
            if "refused" in lowered:
                why = "connection refused"
            elif "timed out" in lowered or "kind: timeout" in lowered:
                why = "timed out"
            else:
                why = "the connection failed"
            raise UnreachableError(
                f"cannot reach the object store {where} ({why}): is the endpoint up, "
                "and is its URL (MODELKEEP_S3_ENDPOINT) right?"
            ) from exc
        what = f" on {key}" if key else ""
        detail = ", ".join(str(x) for x in (status and f"HTTP {status}", code) if x)
        raise StoreError(
            f"the object store {where} failed{what} ({detail or type(exc).__name__})"
        ) from exc

    def _missing(self, exc: FileNotFoundError, key: str) -> FileNotFoundError:
        """A 404 is a missing key, unless the bucket itself is missing."""
        if "<Code>NoSuchBucket</Code>" in str(exc):
            self._fail(exc)
        return FileNotFoundError(f"{self.url}/{key}")

    # -- the Backend protocol ----------------------------------------------------

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._obs.get(self._store, key).bytes())
        except FileNotFoundError as exc:
            raise self._missing(exc, key) from None
        except self._errors as exc:  # every library error is mapped in _fail
            self._fail(exc, key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length == 0:
            self.size(key)  # FileNotFoundError when absent, as the other backends
            return b""
        try:
            data = self._obs.get_range(self._store, key, start=offset, length=length)
        except FileNotFoundError as exc:
            raise self._missing(exc, key) from None
        except self._errors as exc:
            if _status(exc) == 416:  # the range starts past the end
                raise EOFError(f"{key}: wanted {length} bytes at {offset}, got 0") from None
            self._fail(exc, key)
        if len(data) != length:  # S3 returns what there is of a range past the end
            raise EOFError(f"{key}: wanted {length} bytes at {offset}, got {len(data)}")
        return bytes(data)

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        body = memoryview(data)
        if body.ndim != 1 or body.itemsize != 1:
            body = body.cast("B")  # obstore takes flat unsigned bytes only
        if len(header) + len(body) > MULTIPART_THRESHOLD:
            self._put_large(key, body, header)
            return
        # Joining copies at most MULTIPART_THRESHOLD bytes: cheaper than a second request.
        payload: bytes | memoryview = b"".join((header, body)) if header else body
        for attempt in range(_CONFLICT_TRIES):
            try:
                self._obs.put(self._store, key, payload, mode="create", use_multipart=False)
            except self._errors as exc:  # a 404 on PUT is a missing bucket: _fail says so
                if _already_exists(exc):
                    return  # another writer stored these very bytes
                if _conflict(exc) and attempt + 1 < _CONFLICT_TRIES:
                    time.sleep(0.05 * 2**attempt)
                    continue
                self._fail(exc, key)
            return

    def _put_large(self, key: str, body: memoryview, header: bytes) -> None:
        """A multipart upload of parallel parts, streamed from ``header`` and ``body`` as
        they are (no joined copy). obstore sends a conditional put only as a single
        request, so this one overwrites: a HEAD first skips the upload when the key
        exists, and a writer racing past it stores the same bytes (content-addressed
        keys), which S3 swaps in atomically."""
        if self.exists(key):
            return
        parts = [header, body] if header else [body]
        try:
            self._obs.put(
                self._store,
                key,
                parts,
                use_multipart=True,
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        except self._errors as exc:  # a 404 on PUT is a missing bucket: _fail says so
            self._fail(exc, key)

    def _head(self, key: str) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = dict(self._obs.head(self._store, key))
        except FileNotFoundError as exc:
            # A HEAD answer has no body: a missing bucket reads as a missing key here
            # (check() at open tells the two apart).
            raise self._missing(exc, key) from None
        except self._errors as exc:
            self._fail(exc, key)
        return meta

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["size"])

    def age_seconds(self, key: str) -> float:
        written = float(self._head(key)["last_modified"].timestamp())
        # A server clock ahead of ours makes a blob look younger than now: keep it.
        return max(0.0, time.time() - written)

    def delete(self, key: str) -> None:
        try:
            self._obs.delete(self._store, key)
        except FileNotFoundError as exc:
            # Absent keys are not an error (S3 says 204 anyway); a missing bucket is.
            if "<Code>NoSuchBucket</Code>" in str(exc):
                self._fail(exc, key)
        except self._errors as exc:
            self._fail(exc, key)

    def list(self, prefix: str) -> Iterator[str]:
        # obstore lists by whole path segments ("packs/ab" would not match
        # "packs/abc.pack"): list the folder and keep the keys that start with prefix.
        folder = prefix[: prefix.rfind("/") + 1].rstrip("/")
        try:
            for batch in self._obs.list(self._store, folder or None, chunk_size=1000):
                for meta in batch:
                    path: str = meta["path"]
                    if path.startswith(prefix):
                        yield path
        except self._errors as exc:
            self._fail(exc)

    def sync(self) -> None:
        """Nothing to do: S3 acknowledges a PUT once it is durable."""

    def local_path(self, key: str) -> str | None:
        return None

    # -- beyond the protocol -----------------------------------------------------

    def check(self) -> None:
        """Raise UnreachableError unless the bucket answers a listing under the prefix
        with these credentials (what opening a repository needs before anything else:
        the store lists its packs first)."""
        try:
            stream = self._obs.list(self._store, None, chunk_size=1)
            with contextlib.suppress(StopIteration):
                next(iter(stream))
        except self._errors as exc:
            self._fail(exc)


def _status(exc: Exception) -> int | None:
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def _is_auth(exc: Exception) -> bool:
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    return isinstance(exc, PermissionDeniedError | UnauthenticatedError)


def _already_exists(exc: Exception) -> bool:
    from obstore.exceptions import AlreadyExistsError

    return isinstance(exc, AlreadyExistsError | FileExistsError) or _status(exc) == 412


def _conflict(exc: Exception) -> bool:
    from obstore.exceptions import PreconditionError

    return _status(exc) == 409 or (
        isinstance(exc, PreconditionError) and "ConditionalRequestConflict" in str(exc)
    )
