"""The CLI run in-process, for tests: the typer app on ``--repo ROOT ARGS``.

The test process has already paid for importing skops (several seconds: it imports
every scikit-learn estimator), which a subprocess would pay again on every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The message of a failed command, checked to be one `error: …` line on stderr."""
        assert self.code != 0, f"succeeded: {self.out}"
        assert "Traceback" not in self.err, self.err
        assert self.out == "", f"printed on stdout: {self.out!r}"
        message = self.err.strip()
        assert "\n" not in message, f"multi-line error:\n{self.err}"
        assert message.startswith("error: "), message
        return message


def run(root: Path, *args: str | os.PathLike[str]) -> Result:
    """`modelkeep --repo ROOT ARGS`; an exception other than the exit is re-raised."""
    from typer.testing import CliRunner

    from modelkeep.cli.app import app

    runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200"})
    res = runner.invoke(app, ["--repo", str(root), *map(str, args)])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)
