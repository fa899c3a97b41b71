"""Loading and saving models, and the registry of the user's own classes.

A model file never brings code: a class named in a file loads only if it is one of pynn's
or the user registered it here (or passed it in ``custom_objects``).

    @pynn.saving.register_serializable(package="my_project")
    class Scale(pynn.layers.Layer): ...
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pynn.models.model import Model

_T = TypeVar("_T", bound=type)

_REGISTRY: dict[str, type] = {}


def register_serializable(package: str = "Custom",
                          name: str | None = None) -> Callable[[_T], _T]:
    """Registers a class so that model files naming it can be loaded (Keras's
    ``register_keras_serializable``). The file names it ``package>name``."""
    if not isinstance(package, str) or not package:
        raise TypeError(f"package: expected a non-empty string, got {package!r}")

    def decorate(cls: _T) -> _T:
        key = f"{package}>{name or cls.__name__}"
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"register_serializable: {key!r} is already registered to "
                             f"{_REGISTRY[key]!r}")
        _REGISTRY[key] = cls
        cls._pynn_registered_name = key  # type: ignore[attr-defined]  # marker on the user's class
        return cls

    return decorate


register_keras_serializable = register_serializable


def registered_name(cls: type) -> str | None:
    key = cls.__dict__.get("_pynn_registered_name")
    return key if key is not None and _REGISTRY.get(key) is cls else None


def lookup(name: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """The class registered (or passed in custom_objects) under `name`, else None."""
    if not isinstance(name, str):
        return None
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name in _REGISTRY:
        return _REGISTRY[name]
    if custom_objects:
        short = name.split(">")[-1]
        if short in custom_objects:
            return custom_objects[short]
    return None


def get_registered_object(name: str, custom_objects: Mapping[str, Any] | None = None) -> Any:
    return lookup(name, custom_objects)


def load_model(filepath: str | os.PathLike[str], custom_objects: Mapping[str, Any] | None = None,
               compile: bool = True) -> Model:
    from pynn.models.saving import load_model as _load

    return _load(filepath, compile=compile, custom_objects=custom_objects)


def save_model(model: Model, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    model.save(filepath, overwrite=overwrite)


__all__ = ["get_registered_object", "load_model", "register_keras_serializable",
           "register_serializable", "registered_name", "save_model"]
