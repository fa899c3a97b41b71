"""Layers (Keras 3 names)."""
from pynn.layers.activation import ELU, Activation, LeakyReLU, PReLU, ReLU, Softmax
from pynn.layers.dense import Dense
from pynn.layers.layer import Layer
from pynn.layers.regularization import BatchNormalization, Dropout
from pynn.layers.reshaping import Flatten, Input, InputLayer

_CLASSES = {cls.__name__: cls for cls in (
    Activation, BatchNormalization, Dense, Dropout, ELU, Flatten, InputLayer, LeakyReLU, PReLU,
    ReLU, Softmax)}


def serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: dict) -> Layer:
    """A layer from ``{"class_name": ..., "config": ...}``; unknown classes are refused."""
    if not isinstance(config, dict):
        raise ValueError(f"layer config: expected a dict, got {type(config).__name__}")
    name = config.get("class_name")
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"layer config: unknown layer type {name!r}; pynn knows "
                         f"{sorted(_CLASSES)}")
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise ValueError(f"layer config of {name}: expected a dict")
    try:
        return cls.from_config(inner)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer config of {name}: {exc}") from None


__all__ = ["Activation", "BatchNormalization", "Dense", "Dropout", "ELU", "Flatten", "Input",
           "InputLayer", "Layer", "LeakyReLU", "PReLU", "ReLU", "Softmax", "serialize",
           "deserialize"]
