"""A scikit-learn model that raises on demand, for the serving tests.

skops stores it by import path (``flaky.FlakyModel``): conftest.py puts this folder on
``sys.path`` so that the server (which runs in the test process) can load it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

# A request whose first value is this makes the model raise.
BOOM = 999.0
# Set to True (after committing) to make every prediction fail, the warm-up included.
broken = False


class FlakyModel(LogisticRegression):
    """LogisticRegression that raises on ``BOOM`` as first value, or always when ``broken``."""

    def predict(self, X: Any) -> Any:
        if broken:
            raise RuntimeError("FlakyModel is broken on purpose")
        first = np.asarray(X, dtype=np.float64).ravel()[:1]
        if first.size and first[0] == BOOM:
            raise ValueError(f"FlakyModel refuses {BOOM} as first value")
        return super().predict(X)
