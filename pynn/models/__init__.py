"""Models: `Model` (functional and subclassed), `Sequential`, and loading/saving them."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pynn.models.model import Model
from pynn.models.saving import load_model, save_model
from pynn.models.sequential import Sequential


def model_from_config(config: dict[str, Any],
                      custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A model from ``{"class_name": ..., "config": ...}`` (as `serialize` gives)."""
    from pynn import layers

    model = layers.deserialize(config, custom_objects)
    if not isinstance(model, Model):
        raise ValueError(f"config: expected a model, got a {type(model).__name__}")
    return model


def model_from_json(json_string: str,
                    custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A model (freshly initialised) from `Model.to_json`'s JSON, or Keras 3's."""
    from pynn.models.keras_format import model_from_json as _from_json

    return _from_json(json_string, custom_objects)


def clone_model(model: Model, custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A new model with the same architecture and freshly initialised weights."""
    from pynn import layers

    return model_from_config(layers.serialize(model), custom_objects)


__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_config",
           "model_from_json", "save_model"]
