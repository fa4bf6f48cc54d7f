"""One way to get predictions out of any loaded model, as a NumPy array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

from modelkeep.formats.base import module_roots


def predict(model: Any, x: Any) -> Any:
    return predictor(model)(x)


def predictor(model: Any) -> Callable[[Any], Any]:
    """The prediction function for ``model``, decided once (servers call it per request)."""
    roots = module_roots(model)
    if (
        "onnx" not in roots
        and "torch" not in roots
        and "onnxruntime" not in roots
        and not ("xgboost" in roots and type(model).__name__ == "Booster")
        and hasattr(model, "predict")
    ):
        import numpy as np

        method = model.predict
        return lambda x: np.asarray(method(x))
    return lambda x: _predict_any(model, x)


def _predict_any(model: Any, x: Any) -> Any:
    import numpy as np

    roots = module_roots(model)
    if "onnx" in roots and hasattr(model, "graph"):  # a ModelProto: run it in a session
        from modelkeep.formats._deps import need

        ort = need("onnxruntime", "onnx")
        model = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        roots = module_roots(model)
    if "onnxruntime" in roots:
        inputs = model.get_inputs()
        arr = np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x)
        if "float" in inputs[0].type:
            arr = arr.astype(np.float32)
        return np.asarray(model.run(None, {inputs[0].name: arr})[0])
    if "torch" in roots and callable(model):
        import torch

        arr = x.to_numpy() if hasattr(x, "to_numpy") else x
        with torch.no_grad():
            tensor = arr if isinstance(arr, torch.Tensor) else torch.as_tensor(np.asarray(arr))
            if tensor.is_floating_point():
                tensor = tensor.to(torch.float32)
            out = model(tensor)
        return out.detach().cpu().numpy()
    if "xgboost" in roots and type(model).__name__ == "Booster":
        return np.asarray(model.inplace_predict(x))
    if hasattr(model, "predict"):
        return np.asarray(model.predict(x))
    raise TypeError(f"do not know how to get predictions from a {type(model).__name__}")


def task_of(model: Any) -> str | None:
    """classification / regression, when the model says so."""
    kind = getattr(model, "_estimator_type", None)
    if kind in ("classifier", "regressor"):
        return "classification" if kind == "classifier" else "regression"
    if "sklearn" not in module_roots(model):
        return None
    try:
        from sklearn.base import is_classifier, is_regressor
    except ImportError:
        return None
    try:
        if is_classifier(model):
            return "classification"
        if is_regressor(model):
            return "regression"
    except AttributeError:  # not a complete estimator
        return None
    return None
