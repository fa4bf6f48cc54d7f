"""Updating models: batch, incremental and custom strategies behind a validation gate.

A job: it takes the engine (``modelkeep._engine``), never ``Repo``.
"""

from modelkeep.update.gate import Gate, Verdict
from modelkeep.update.runner import STRATEGIES, UpdateResult, run_update

__all__ = ["STRATEGIES", "Gate", "UpdateResult", "Verdict", "run_update"]
