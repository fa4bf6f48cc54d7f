"""Between repositories: team servers as remotes (push, fetch, pull, clone), and the
HTTP client the Python API uses to reach one. A job: it takes the engine."""

from modelkeep.remote.remotes import Remotes

__all__ = ["Remotes"]
