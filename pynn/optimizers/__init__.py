"""Optimizers (Keras 3 names, arguments and defaults).

An optimizer object holds its configuration; once a model is compiled with it, its update
runs inside the compiled training step (one fused pass per parameter tensor). Setting
``learning_rate`` between epochs (or from a callback) takes effect at the next step.
"""
from __future__ import annotations

import inspect
import math
import numbers

_COMMON = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")


def _real(value, name, *, positive=False, unit=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name}: expected a non-negative number, got {value}")
    if unit and not value < 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value}")
    return value


class Optimizer:
    """Base class. Subclasses declare ``kind`` and their own arguments."""

    kind = ""
    _defaults: dict = {}

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **hyper):
        self._net = None
        self._learning_rate = _real(learning_rate, "learning_rate", positive=True)
        self.weight_decay = _real(weight_decay, "weight_decay", allow_none=True)
        self.clipnorm = _real(clipnorm, "clipnorm", positive=True, allow_none=True)
        self.clipvalue = _real(clipvalue, "clipvalue", positive=True, allow_none=True)
        self.global_clipnorm = _real(global_clipnorm, "global_clipnorm", positive=True,
                                     allow_none=True)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError("clipnorm and global_clipnorm: only one of them may be set")
        self.name = name or type(self).__name__
        known = set(inspect.signature(type(self).__init__).parameters) - {"self", "kwargs"}
        unknown = sorted(set(hyper) - known)
        if unknown:
            raise ValueError(f"{type(self).__name__}: argument(s) not recognized: {unknown}")
        self._hyper = hyper

    # --- learning rate and step counter, live once attached to a compiled model -------------
    @property
    def learning_rate(self) -> float:
        return float(self._net.learning_rate) if self._net is not None else self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        value = _real(value, "learning_rate", positive=True)
        self._learning_rate = value
        if self._net is not None:
            self._net.learning_rate = value

    lr = learning_rate

    @property
    def iterations(self) -> int:
        """Number of update steps taken (Keras's ``optimizer.iterations``)."""
        return int(self._net.iterations) if self._net is not None else 0

    def _engine_config(self) -> dict:
        cfg = dict(self._hyper)
        cfg["learning_rate"] = self._learning_rate
        for key in _COMMON:
            value = getattr(self, key)
            cfg[key] = 0.0 if value is None else value
        return cfg

    def _attach(self, net):
        net.set_optimizer(self.kind, self._engine_config())
        self._net = net

    def get_config(self) -> dict:
        cfg = {"name": self.name, "learning_rate": self.learning_rate}
        cfg.update(self._hyper)
        for key in _COMMON:
            cfg[key] = getattr(self, key)
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<pynn.optimizers.{type(self).__name__} learning_rate={self.learning_rate:g}>"


class SGD(Optimizer):
    """Gradient descent with optional momentum: ``v = momentum*v - lr*g; w += v`` (Nesterov:
    ``w += momentum*v - lr*g``). The course's ``m = γm + (1-γ)g, Δw = -αm`` is the same
    trajectory as momentum γ with learning rate ``α(1-γ)``."""

    kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        momentum = _real(momentum, "momentum")
        if momentum > 1:
            raise ValueError(f"momentum: expected a number in [0, 1], got {momentum}")
        super().__init__(learning_rate, momentum=momentum, nesterov=bool(nesterov), **kwargs)


class Adagrad(Optimizer):
    kind = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate,
                         initial_accumulator_value=_real(initial_accumulator_value,
                                                         "initial_accumulator_value"),
                         epsilon=_real(epsilon, "epsilon", positive=True), **kwargs)


class Adadelta(Optimizer):
    kind = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, rho=_real(rho, "rho", unit=True),
                         epsilon=_real(epsilon, "epsilon", positive=True), **kwargs)


class RMSprop(Optimizer):
    kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate, rho=_real(rho, "rho", unit=True),
                         momentum=_real(momentum, "momentum", unit=True),
                         epsilon=_real(epsilon, "epsilon", positive=True),
                         centered=bool(centered), **kwargs)


class Adam(Optimizer):
    kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate, beta_1=_real(beta_1, "beta_1", unit=True),
                         beta_2=_real(beta_2, "beta_2", unit=True),
                         epsilon=_real(epsilon, "epsilon", positive=True),
                         amsgrad=bool(amsgrad), **kwargs)


class AdamW(Adam):
    kind = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **kwargs)


class Nadam(Optimizer):
    kind = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=_real(beta_1, "beta_1", unit=True),
                         beta_2=_real(beta_2, "beta_2", unit=True),
                         epsilon=_real(epsilon, "epsilon", positive=True), **kwargs)


class Adamax(Nadam):
    kind = "adamax"


_BY_NAME = {cls.kind: cls for cls in (SGD, Adagrad, Adadelta, RMSprop, Adam, AdamW, Nadam, Adamax)}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def names() -> list[str]:
    """The optimizer names `get` (and `compile`) accept."""
    return sorted(_BY_NAME)


def get(identifier) -> Optimizer:
    """An optimizer from a name ("adam", "sgd", ...) or an instance (used as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _BY_CLASS.get(identifier)
        if cls is None:
            raise ValueError(f"optimizer: unknown name {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return deserialize(identifier)
    raise TypeError(f"optimizer: expected a name or a pynn.optimizers.Optimizer, got "
                    f"{identifier!r}")


def serialize(opt: Optimizer) -> dict:
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def deserialize(config: dict) -> Optimizer:
    cls = _BY_CLASS.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"optimizer: unknown class {config.get('class_name')!r}")
    return cls(**config.get("config", {}))


__all__ = ["Optimizer", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Nadam",
           "Adamax", "get", "names", "serialize", "deserialize"]
