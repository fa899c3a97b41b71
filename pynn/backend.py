"""The few `keras.backend` functions Keras 3 programs still call.

pynn has one backend (its C++ core), float32 compute and channels_last images; these answer
as Keras does for that configuration.
"""
from __future__ import annotations


def backend() -> str:
    """The name of the engine running the model: "pynn"."""
    return "pynn"


def floatx() -> str:
    """The default float type: "float32"."""
    return "float32"


def epsilon() -> float:
    """The fuzz factor Keras adds to avoid dividing by zero: 1e-7."""
    return 1e-7


def image_data_format() -> str:
    """The default layout of image tensors: "channels_last"."""
    return "channels_last"


def clear_session(free_memory: bool = True) -> None:
    """Resets the automatic layer names (the next Dense is "dense" again), as Keras's
    ``clear_session`` does. Models already built keep their names and weights; pynn holds no
    other global graph state to release (`free_memory` is accepted for Keras's signature)."""
    from pynn.layers import layer as _layer

    _layer._counters.clear()


__all__ = ["backend", "clear_session", "epsilon", "floatx", "image_data_format"]
