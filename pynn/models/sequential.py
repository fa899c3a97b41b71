"""Sequential: a linear stack of layers, a Model whose graph is a chain."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pynn import layers as layers_mod
from pynn.layers.layer import KerasTensor, Layer, shape_tuple, unique_name
from pynn.layers.reshaping import Input, InputLayer
from pynn.models.model import Model


class Sequential(Model):
    """A linear stack of layers with Keras's training API.

    Example:
        >>> model = Sequential([Input((784,)), Dense(128, activation="relu"),
        ...                     Dense(10, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> history = model.fit(x_train, y_train, epochs=5, batch_size=128)
    """

    _layers: list[Layer]   # (set with object.__setattr__: not tracked as a sublayer)
    _input_shape: tuple[int, ...] | None   # one sample's shape, once known

    def __init__(self, layers=None, name=None, trainable=True):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a string, got {name!r}")
        object.__setattr__(self, "_layers", [])
        object.__setattr__(self, "_input_shape", None)
        super().__init__(name=name or unique_name("sequential"), trainable=trainable)
        if layers is not None:
            if isinstance(layers, (Layer, KerasTensor)):
                layers = [layers]
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer, rebuild=False)
            self._maybe_build()

    # --- structure --------------------------------------------------------------------------
    def add(self, layer: Layer | KerasTensor, rebuild: bool = True) -> None:
        """Appends a layer (or a model, or an `Input`) to the stack."""
        if isinstance(layer, KerasTensor) and isinstance(
                getattr(layer, "_history", (None,))[0], InputLayer):
            layer = layer._history[0]
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a pynn.layers.Layer, got {layer!r}")
        if isinstance(layer, InputLayer):
            # (after leading vocabulary layers, an Input gives the graph's input shape)
            if len(self._layers) > len(self._host_steps()) or self._input_shape is not None:
                raise ValueError("Input must come first in a Sequential model")
            self._input_shape = layer.shape
            return
        if getattr(layer, "_host_step", False) and len(self._host_steps()) == len(self._layers):
            # a leading vocabulary layer: applied to the inputs in NumPy; the graph's input
            # is its output (see _host_steps)
            if self._input_shape is not None:
                self._input_shape = tuple(layer.host_output_shape(  # type: ignore[attr-defined]
                    self._input_shape))
            self._layers.append(layer)
            self._changed(rebuild)
            return
        if any(layer is o for o in self._layers):
            raise ValueError(f"layer {layer.name!r} is already in this model; a Sequential "
                             f"model calls each layer once")
        if not self._layers and self._input_shape is None:
            if layer._input_shape_arg is not None:
                self._input_shape = layer._input_shape_arg
            elif isinstance(layer, Model) and layer._inputs is not None and len(
                    layer._inputs) == 1:
                # a built model as the first layer brings its input shape
                self._input_shape = tuple(layer._inputs[0].sample_shape)
        self._layers.append(layer)
        self._changed(rebuild)

    def pop(self, rebuild: bool = True) -> Layer:
        """Removes the last layer and returns it."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self._changed(rebuild)
        return layer

    def _changed(self, rebuild):
        self._inputs = self._outputs = None
        self._nodes = []
        self._losses = None
        self._invalidate_graph()
        if rebuild:
            self._maybe_build()

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def _sublayers(self):
        return list(self._layers)

    def build(self, input_shape: Any = None) -> None:
        """Creates the weights for inputs of `input_shape` (one sample's shape; a leading
        None batch axis is accepted)."""
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if input_shape and input_shape[0] is None:
                input_shape = input_shape[1:]
            input_shape = shape_tuple(input_shape)
            if self._input_shape is not None and self._input_shape != input_shape:
                raise ValueError(f"input_shape: the model expects {self._input_shape}, got "
                                 f"{input_shape}")
            self._input_shape = input_shape
        if self._input_shape is None:
            raise ValueError("The model has no input shape yet: add an Input((features,)) "
                             "first, pass input_shape to the first layer, or call fit/predict")
        if not self._layers:
            raise ValueError("The model has no layers: add at least one layer")
        if self._inputs is not None:
            return
        x = inp = Input(self._input_shape)
        for layer in self._layers[len(self._host_steps()):]:
            x = layer(x)
            if not isinstance(x, KerasTensor):
                raise ValueError(f"{layer.name}: a layer in a Sequential model must have one "
                                 f"output")
        self._init_graph(inp, x)
        self._output_names = [self._layers[-1].name]
        if self.compiled:
            self._resolve_compile()

    def _host_steps(self) -> list:
        """The leading layers that run in NumPy on the inputs (StringLookup, IntegerLookup,
        TextVectorization) before the float graph; the graph's input is their output."""
        out = []
        for layer in self._layers:
            if not getattr(layer, "_host_step", False):
                break
            out.append(layer)
        return out

    def _maybe_build(self):
        if (self._inputs is None and self._input_shape is not None
                and len(self._layers) > len(self._host_steps())):
            self.build()

    def _maybe_trace(self):
        self._maybe_build()

    def _build_for(self, shapes):
        if self._inputs is None:
            if len(shapes) != 1:
                raise ValueError(f"{self.name}: a Sequential model has one input, got "
                                 f"{len(shapes)}")
            self.build(tuple(shapes[0]))
            return
        super()._build_for(shapes)

    @property
    def built(self) -> bool:
        return self._inputs is not None

    @built.setter
    def built(self, value: bool) -> None:
        pass

    @property
    def input_shape(self) -> tuple[int | None, ...] | None:
        return None if self._input_shape is None else (None,) + tuple(self._input_shape)

    @property
    def output_shape(self) -> tuple[int | None, ...] | None:
        self._maybe_build()
        return None if self._outputs is None else self._outputs[0].shape

    # --- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        host = self._host_steps()
        layers = [layers_mod.serialize(layer) for layer in host]
        if self._input_shape is not None:
            # the graph's input: after the vocabulary layers, which run before the graph
            layers.append({"class_name": "InputLayer",
                           "config": {"shape": list(self._input_shape), "name": "input_layer"}})
        layers += [layers_mod.serialize(layer) for layer in self._layers[len(host):]]
        return {"name": self.name, "layers": layers}

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    custom_objects: Mapping[str, Any] | None = None) -> Sequential:
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("config: expected a dict with a 'layers' list")
        model = cls(name=config.get("name"))
        for layer_cfg in config["layers"]:
            model.add(layers_mod.deserialize(layer_cfg, custom_objects), rebuild=False)
        model._maybe_build()
        return model

    def __repr__(self):
        return f"<pynn.Sequential name={self.name} layers={len(self._layers)}>"
