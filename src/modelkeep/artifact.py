"""What a version records about the model it holds: format, signature, task, profile.

Everything here runs before a single byte is stored, so a model, example or dataset
that does not fit fails the commit with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelkeep import formats
from modelkeep.errors import DataFormatError, Hint, SignatureError, UntrustedModelError
from modelkeep.formats import signature, tabular
from modelkeep.formats.base import SavesToMemory, qualname
from modelkeep.formats.predict import predict, task_of

if TYPE_CHECKING:
    from pathlib import Path

    from modelkeep.formats.base import Buffer


@dataclass
class Described:
    """The artifact record of a version, and its reference profile (stored apart)."""

    artifact: dict[str, Any] | None
    profile: dict[str, Any] | None


def save_object(
    obj: Any, folder: Path, init_args: dict[str, Any] | None
) -> tuple[formats.Saved, dict[str, Buffer] | None]:
    """Save a model object with the flavor that recognises it: as buffers in memory
    when the flavor can (nothing written to disk twice), else into ``folder`` (then
    the buffers are None and the files are there)."""
    flavor = formats.detect(obj)
    options = {"init_args": init_args}
    if isinstance(flavor, SavesToMemory):
        in_memory = flavor.save_to_memory(obj, options)
        if in_memory is not None:
            return in_memory
    folder.mkdir(parents=True, exist_ok=True)
    return flavor.save(obj, folder, options), None


def _load_for_checks(saved: formats.Saved, files: dict[str, Path], trusted: Any) -> Any:
    """The model of committed files, to infer outputs and profile predictions."""
    flavor = formats.flavor(saved.format)
    try:
        return flavor.load(files[saved.main], formats.record(saved), trusted)
    except UntrustedModelError:
        return None


def describe(
    files: dict[str, Path],
    *,
    saved: formats.Saved | None,
    model: Any = None,
    input_example: Any = None,
    training_data: Path | None = None,
    target: str | None = None,
    trusted: Any = None,
) -> Described:
    if saved is None:
        saved = formats.describe(files)
    if saved is None:
        if input_example is not None:
            raise SignatureError(
                "an input example needs a model modelkeep can load (these files are not one "
                "of its formats): commit the model object, or drop the example"
            )
        return Described(None, None)
    record = formats.record(saved)
    untrusted = saved.options.get("untrusted_types") or []
    if model is None and untrusted and trusted is not True and set(untrusted) - set(trusted or ()):
        raise UntrustedModelError(
            f"{saved.main} holds types skops does not trust by default: "
            f"{', '.join(untrusted)}; trust them explicitly if you vouch for them",
            hint=Hint(
                cli=f"commit it with {' '.join(f'--trust {t}' for t in untrusted)}",
                api=f"commit it with trusted={untrusted!r}",
            ),
        )
    if model is None and (input_example is not None or training_data is not None):
        model = _load_for_checks(saved, files, trusted)
    if target is not None:
        # The label column's name: what later updates (e.g. by policy) train on.
        record["target"] = target
    if model is not None:
        record["task"] = task_of(model)
        if not record["class"]:
            record["class"] = qualname(model)
    if input_example is not None:
        example = tabular.as_example(input_example)
        if target is not None and hasattr(example, "columns") and target in example.columns:
            example = example.drop(columns=[target])
        sig: dict[str, Any] = {"inputs": signature.infer(example)}
        if model is not None:
            try:
                sig["outputs"] = signature.infer(_quiet_predict(model, example))
            except Exception as exc:  # any library's complaint: the example does not fit
                raise SignatureError(
                    f"the input example does not fit the model: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:300]}"
                ) from None
        record["signature"] = sig
        record["example"] = example_doc(example)
    profile = None
    if training_data is not None:
        profile = _profile(training_data, record, model, target)
    return Described(record, profile)


def example_doc(example: Any, rows: int = 5) -> Any:
    """The first rows of an input example as JSON (servers warm new versions with it)."""
    import json

    if hasattr(example, "columns"):
        head = example.head(rows)
        return {
            "columns": [str(c) for c in head.columns],
            "data": json.loads(head.to_json(orient="values")),
        }
    if isinstance(example, dict):
        return None  # tensors by name: too model-specific to replay
    try:
        import numpy as np

        arr = np.asarray(example)[:rows]
        return {"data": json.loads(json.dumps(arr.tolist()))}
    except (TypeError, ValueError):
        return None


def example_frame(doc: Any) -> Any:
    """An input example back from ``example_doc``."""
    if not doc:
        return None
    if "columns" in doc:
        import pandas as pd

        return pd.DataFrame(doc["data"], columns=doc["columns"])
    import numpy as np

    return np.asarray(doc["data"])


def features_of(frame: Any, record: dict[str, Any], target: str | None) -> Any:
    """The model's input columns of ``frame``: those of its signature, else all but target."""
    cols = list(frame.columns)
    if target is not None and target not in cols:
        raise DataFormatError(
            f"target column {target!r} is not in the data (columns: {', '.join(map(str, cols))})"
        )
    sig = record.get("signature", {}).get("inputs")
    if sig and sig["type"] == "tabular":
        wanted = [c["name"] for c in sig["columns"]]
        missing = [c for c in wanted if c not in cols]
        if missing:
            raise SignatureError(
                f"the data lacks the model's input column(s) {', '.join(missing)} "
                f"(it has {', '.join(map(str, cols))})"
            )
        return frame[wanted]
    return frame.drop(columns=[target]) if target is not None else frame


def _profile(
    path: Path, record: dict[str, Any], model: Any, target: str | None
) -> dict[str, Any] | None:
    from modelkeep.profiles import Profile

    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        return None  # only tables are profiled
    frame = tabular.read(path)
    if not len(frame):
        raise DataFormatError(f"{path}: the training data has no rows")
    features = features_of(frame, record, target)
    # Told which columns are inputs (a signature) or which is the label: the data must
    # fit. Told neither, the table may hold anything: profile it, predictions if they come.
    described = target is not None or "signature" in record
    preds = None
    if model is not None:
        try:
            preds = _quiet_predict(model, features)
        except Exception as exc:
            if described:
                raise SignatureError(
                    f"the training data {path.name} does not fit the model: "
                    f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                ) from None
    return Profile.of(features, preds).to_json()


def _quiet_predict(model: Any, x: Any) -> Any:
    """Predictions for checks; a library's warnings about its input are ours to judge."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict(model, x)
