"""Layers (Keras 3 names)."""
from typing import Any

from pynn.layers.activation import ELU, Activation, LeakyReLU, PReLU, ReLU, Softmax
from pynn.layers.augmentation import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from pynn.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose
from pynn.layers.convolutional import Conv1D, Conv2D
from pynn.layers.dense import Dense
from pynn.layers.depthwise import (
    DepthwiseConv1D,
    DepthwiseConv2D,
    SeparableConv1D,
    SeparableConv2D,
)
from pynn.layers.embedding import Embedding, Masking
from pynn.layers.lambda_layer import Lambda
from pynn.layers.layer import Layer
from pynn.layers.lookup import IntegerLookup, StringLookup, TextVectorization
from pynn.layers.merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from pynn.layers.noise import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
)
from pynn.layers.normalization import GroupNormalization, LayerNormalization, UnitNormalization
from pynn.layers.ops_layer import OpLayer
from pynn.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from pynn.layers.preprocessing import (
    CategoryEncoding,
    Discretization,
    Normalization,
    Rescaling,
)
from pynn.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from pynn.layers.regularization import BatchNormalization, Dropout
from pynn.layers.reshaping import (
    Flatten,
    Identity,
    Input,
    InputLayer,
    Permute,
    RepeatVector,
    Reshape,
)
from pynn.layers.reshaping_spatial import (
    Cropping1D,
    Cropping2D,
    SpatialDropout1D,
    SpatialDropout2D,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)

_CLASSES = {cls.__name__: cls for cls in (
    Activation, Add, Average, AveragePooling1D, AveragePooling2D, BatchNormalization,
    Concatenate, Conv1D, Conv2D, Dense, Dot, Dropout, ELU, Flatten, GlobalAveragePooling1D,
    GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, Identity, InputLayer,
    LeakyReLU, MaxPooling1D, MaxPooling2D, Maximum, Minimum, Multiply, PReLU, Permute, ReLU,
    RepeatVector, Reshape, Softmax, Subtract,
    OpLayer,   # (pynn.ops on symbolic tensors: data only, safe to load)
    DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D,
    Bidirectional, Embedding, GRU, LSTM, Masking, SimpleRNN, TimeDistributed,
    AlphaDropout, GaussianDropout, GaussianNoise, GroupNormalization, LayerNormalization,
    UnitNormalization,
    CategoryEncoding, Discretization, IntegerLookup, Normalization, Rescaling, StringLookup,
    TextVectorization, ActivityRegularization)}
_SPATIAL: dict[str, Any] = {cls.__name__: cls for cls in (
    Cropping1D, Cropping2D, SpatialDropout1D, SpatialDropout2D, UpSampling1D, UpSampling2D,
    ZeroPadding1D, ZeroPadding2D)}
_CLASSES.update(_SPATIAL)
_AUGMENT: dict[str, Any] = {cls.__name__: cls for cls in (
    RandomFlip, RandomRotation, RandomTranslation, RandomZoom)}
_CLASSES.update(_AUGMENT)
_TRANSPOSED: dict[str, Any] = {cls.__name__: cls for cls in (Conv1DTranspose, Conv2DTranspose)}
_CLASSES.update(_TRANSPOSED)
_MODEL_CLASSES = ("Functional", "Model", "Sequential")


def serialize(layer: Layer) -> dict:
    from pynn.models.model import Model
    from pynn.saving import registered_name

    name = type(layer).__name__
    if isinstance(layer, Model) and name == "Model":
        name = "Functional"
    custom = registered_name(type(layer))
    if custom is not None:
        name = custom
    return {"class_name": name, "config": layer.get_config()}


def deserialize(config: dict, custom_objects=None) -> Layer:
    """A layer from ``{"class_name": ..., "config": ...}``; classes come from pynn's layers,
    the user's registered classes (`pynn.saving.register_serializable`) or `custom_objects`;
    anything else is refused by name."""
    from pynn.saving import lookup

    if not isinstance(config, dict):
        raise ValueError(f"layer config: expected a dict, got {type(config).__name__}")
    name = config.get("class_name")
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise ValueError(f"layer config of {name}: expected a dict")
    if name == "Lambda":
        raise ValueError("layer config: a Lambda layer cannot be loaded from a file (its code "
                         "would have to be executed); rebuild the model in Python and load "
                         "its weights")
    if name in _MODEL_CLASSES:
        from pynn.models.model import Model
        from pynn.models.sequential import Sequential

        model_cls = Sequential if name == "Sequential" else Model
        try:
            return model_cls.from_config(inner, custom_objects)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"layer config of {name}: {exc}") from None
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        cls = lookup(name, custom_objects)
    if cls is None:
        raise ValueError(f"layer config: unknown layer type {name!r}; pynn knows "
                         f"{sorted(_CLASSES)} and the classes registered with "
                         f"pynn.saving.register_serializable")
    try:
        return cls.from_config(inner)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer config of {name}: {exc}") from None


__all__ = ["Activation", "Add", "Average", "AveragePooling1D", "AveragePooling2D",
           "BatchNormalization", "Concatenate", "Conv1D", "Conv2D", "Dense", "Dot", "Dropout",
           "ELU", "Flatten", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Identity", "Input", "InputLayer",
           "Lambda", "Layer", "LeakyReLU", "MaxPooling1D", "MaxPooling2D",
           "Maximum", "Minimum", "Multiply", "PReLU", "Permute", "ReLU", "RepeatVector",
           "Reshape", "Softmax", "Subtract", "add", "average", "concatenate", "deserialize",
           "dot", "maximum", "minimum", "multiply", "serialize", "subtract",
           "Bidirectional", "Embedding", "GRU", "LSTM", "Masking", "SimpleRNN",
           "TimeDistributed"]
__all__ += ["AlphaDropout", "GaussianDropout", "GaussianNoise", "GroupNormalization",
            "LayerNormalization", "UnitNormalization"]
__all__ += ["CategoryEncoding", "Discretization", "IntegerLookup", "Normalization", "Rescaling",
            "StringLookup", "TextVectorization", "ActivityRegularization"]
__all__ += ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"]
__all__ += ["Cropping1D", "Cropping2D", "SpatialDropout1D", "SpatialDropout2D", "UpSampling1D",
            "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D"]
__all__ += ["RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom"]
__all__ += ["Conv1DTranspose", "Conv2DTranspose"]
