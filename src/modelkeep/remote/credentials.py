"""Where a client finds its token for a server, never on a command line.

In order: the token given (Python API), ``MODELKEEP_TOKEN``, then the credentials
file (``MODELKEEP_CREDENTIALS``, else ``$XDG_CONFIG_HOME/modelkeep/credentials.json``,
else ``~/.config/modelkeep/credentials.json``): a JSON object of server URL → token,
readable by its owner only (mode 600: a file others may read is refused, as ssh
refuses a private key they may read).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from modelkeep.errors import UsageError


def path() -> Path:
    given = os.environ.get("MODELKEEP_CREDENTIALS")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelkeep" / "credentials.json"


def _key(url: str) -> str:
    return url.rstrip("/")


def _read(file: Path) -> dict[str, str]:
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"{file} may be read by others (mode {stat.S_IMODE(mode):o}): "
            f"run `chmod 600 {file}`, then try again"
        )
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{file} is not a JSON object of URL → token: fix or remove it") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{file} is not a JSON object of URL → token: fix or remove it")
    return {str(k): str(v) for k, v in doc.items()}


def token_for(url: str, given: str | None = None) -> str | None:
    """The token to send to ``url``; None when there is none (the server says 401)."""
    if given:
        return given
    env = os.environ.get("MODELKEEP_TOKEN", "").strip()
    if env:
        return env
    return _read(path()).get(_key(url))


def save(url: str, token: str) -> Path:
    """Keep ``token`` for ``url`` in the credentials file (made mode 600, replaced
    atomically); returns the file."""
    file = path()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    doc = _read(file)
    doc[_key(url)] = token
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".credentials.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file
