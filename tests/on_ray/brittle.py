"""A scikit-learn model that breaks after it was committed, in any process.

Ray replicas are other processes: a flag in the test process cannot reach them, a file
can. skops stores the class by import path (``brittle.Brittle``): conftest.py puts this
folder on ``PYTHONPATH`` before Ray starts, so every replica imports it.
"""

from __future__ import annotations

import os
from typing import Any

from sklearn.linear_model import LogisticRegression

# While this file exists, every prediction (the warm-up on load included) raises.
MARKER_ENV = "MODELKEEP_TEST_BRITTLE_MARKER"
# The same, but this variable is set only in Ray's processes (conftest.py): a model that
# loads in the driver and fails on the cluster's nodes, as with a library missing there.
RAY_ONLY_MARKER_ENV = "MODELKEEP_TEST_BRITTLE_RAY_ONLY_MARKER"


class Brittle(LogisticRegression):
    def predict(self, X: Any) -> Any:
        for env in (MARKER_ENV, RAY_ONLY_MARKER_ENV):
            marker = os.environ.get(env)
            if marker and os.path.exists(marker):
                raise RuntimeError("Brittle is broken on purpose")
        return super().predict(X)
