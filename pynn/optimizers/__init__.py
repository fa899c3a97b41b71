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

    # --- state: iterations, learning rate and slots (save, load_model and pickling) ---------
    def _bind_weight_names(self, names):
        """Called by the model that attaches this optimizer: the name of each engine
        parameter, in parameter order (the keys of the slots in `get_state`)."""
        self._weight_names = list(names)

    def _slot_names(self, net):
        names = getattr(self, "_weight_names", None)
        if names is None or len(names) != net.num_params():
            # not bound by a model: the engine's own names, made unique
            names, used = [], set()
            for pid in range(net.num_params()):
                base = name = str(net.param_info(pid)[0])
                k = 1
                while name in used:
                    name, k = f"{base}_{k}", k + 1
                used.add(name)
                names.append(name)
        return names

    def get_state(self) -> dict:
        """The optimizer's state: ``{"iterations", "learning_rate", "u_product", "slots"}``,
        where ``slots`` maps each weight's name to the list of its slot arrays (copies; Adam
        keeps two per weight, plain SGD none). Before the optimizer is attached to a compiled
        model its state is the fresh one: no steps and no slots."""
        net = self._net
        if net is None:
            return {"iterations": 0, "learning_rate": float(self._learning_rate),
                    "u_product": 1.0, "slots": {}}
        slots = {}
        for pid, name in enumerate(self._slot_names(net)):
            slots[name] = [net.get_slot(pid, k) for k in range(net.num_slots(pid))]
        return {"iterations": int(net.iterations), "learning_rate": float(net.learning_rate),
                "u_product": float(net.u_product), "slots": slots}

    def set_state(self, state) -> None:
        """Restores a state from `get_state` (of this optimizer or of one configured the same
        way on a model with the same weights). Everything is checked before anything is
        written: a ValueError names the weight and slot that do not fit."""
        import numpy as np

        if not isinstance(state, dict):
            raise TypeError(f"state: expected the dict of Optimizer.get_state(), got "
                            f"{type(state).__name__}")
        keys = {"iterations", "learning_rate", "u_product", "slots"}
        if set(state) - keys or not {"iterations", "learning_rate", "slots"} <= set(state):
            raise ValueError(f"optimizer state: expected the keys {sorted(keys)} (u_product "
                             f"optional), got {sorted(map(str, state))}")
        iterations, lr = state["iterations"], state["learning_rate"]
        u_product, slots = state.get("u_product", 1.0), state["slots"]
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) \
                or not 0 <= iterations < 2**62:
            raise ValueError(f"optimizer state: iterations: expected an integer in [0, 2**62), "
                             f"got {iterations!r}")
        for key, value in (("learning_rate", lr), ("u_product", u_product)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value):
                raise ValueError(f"optimizer state: {key}: expected a finite number, got "
                                 f"{value!r}")
        if lr < 0:
            raise ValueError(f"optimizer state: learning_rate: expected a non-negative number, "
                             f"got {lr!r}")
        if not isinstance(slots, dict):
            raise ValueError(f"optimizer state: slots: expected a dict (weight name -> list of "
                             f"arrays), got {type(slots).__name__}")
        net = self._net
        if net is None:
            if iterations == 0 and not any(len(v) if isinstance(v, (list, tuple)) else 1
                                           for v in slots.values()):
                if lr > 0:
                    self.learning_rate = float(lr)
                return
            raise ValueError("optimizer state: this optimizer is not attached to a model yet; "
                             "compile a built model with it first")
        names = self._slot_names(net)
        missing = [n for n in names if n not in slots]
        extra = [n for n in slots if n not in set(names)]
        if missing:
            raise ValueError(f"optimizer state: no slots for weight {missing[0]!r}"
                             f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
        if extra:
            raise ValueError(f"optimizer state: slots for weight {extra[0]!r}, which the model "
                             f"does not have")
        arrays = []
        for pid, name in enumerate(names):
            given = slots[name]
            count = net.num_slots(pid)
            if not isinstance(given, (list, tuple)) or len(given) != count:
                got = len(given) if isinstance(given, (list, tuple)) else type(given).__name__
                raise ValueError(f"optimizer state: weight {name!r} expected {count} slot "
                                 f"array(s) ({type(self).__name__}), got {got}")
            shape = tuple(net.param_info(pid)[1])
            for k, arr in enumerate(given):
                what = f"optimizer state: slot {k} of weight {name!r}"
                if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                    kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                    raise ValueError(f"{what}: expected a float32 array, got {kind}")
                if tuple(arr.shape) != shape:
                    raise ValueError(f"{what}: expected shape {shape}, got {tuple(arr.shape)}")
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{what}: contains NaN or Inf")
                arrays.append((pid, k, np.ascontiguousarray(arr)))
        for pid, k, arr in arrays:
            net.set_slot(pid, k, arr)
        net.iterations = int(iterations)
        net.u_product = float(u_product)
        if lr > 0:
            self.learning_rate = float(lr)
        else:  # a rate that underflowed float32 when it was set: keep it as the engine had it
            net.learning_rate = 0.0

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
