"""Optimizers (Keras 3 names, arguments and defaults).

An optimizer object holds its configuration; once a model is compiled with it, its update
runs inside the compiled training step (one fused pass per parameter tensor). Setting
``learning_rate`` between epochs (or from a callback) takes effect at the next step;
``learning_rate`` may also be a schedule from `pynn.optimizers.schedules`, evaluated before
every step.
"""
from __future__ import annotations

import inspect
import math
import numbers
from typing import TYPE_CHECKING, Any

from pynn import _core
from pynn.optimizers import schedules
from pynn.optimizers.schedules import LearningRateSchedule

# The core's optimizer table: for each Keras name, the class name and every constructor
# argument in Keras order with its default and valid range. The classes below take their
# signatures, defaults and checks from it.
_DESCRIPTORS = {d["name"]: d for d in _core.optimizer_descriptors()}
_COMMON = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")


def _learning_rate(value) -> float:
    """pynn's classes ask for a positive, finite learning rate (the engine also takes 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"learning_rate: expected a real number, got {value!r} "
                        f"({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"learning_rate: expected a finite number, got {value}")
    if value <= 0:
        raise ValueError(f"learning_rate: expected a positive number, got {value}")
    return value


def _signature(desc) -> inspect.Signature:
    """The Keras constructor of the table entry `desc`: its explicit arguments with their
    defaults, then **kwargs (the shared ones, and name)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("self", kind)]
    params += [inspect.Parameter(f["name"], kind, default=f["default"])
               for f in desc["fields"] if f["explicit"]]
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _make_init(sig):
    def __init__(self, *args, **kwargs):
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:  # too many positional arguments, one given twice, ...
            raise TypeError(f"{type(self).__name__}(): {exc}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop("self")
        extra = arguments.pop("kwargs")
        Optimizer.__init__(self, **arguments, **extra)

    __init__.__signature__ = sig
    return __init__


class Optimizer:
    """Base class. A subclass names its table entry with ``kind``; its constructor (Keras's
    signature and defaults) and its checks come from that entry."""

    kind = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        desc = _DESCRIPTORS.get(cls.kind)
        if desc is not None and "__init__" not in cls.__dict__:
            cls.__init__ = _make_init(_signature(desc))
            cls.__init__.__qualname__ = f"{cls.__name__}.__init__"

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **hyper):
        self._net = None
        desc = _DESCRIPTORS.get(self.kind)
        if desc is None:
            raise TypeError(f"{type(self).__name__}: kind {self.kind!r} is not an optimizer of "
                            f"the core; expected one of {sorted(_DESCRIPTORS)}")
        fields = {f["name"]: f for f in desc["fields"]}
        unknown = sorted(set(hyper) - set(fields))
        if unknown:
            raise ValueError(f"{type(self).__name__}: argument(s) not recognized: {unknown}")
        if isinstance(learning_rate, dict):   # a schedule, as get_config writes it
            learning_rate = schedules.deserialize(learning_rate)
        self._schedule = None
        if isinstance(learning_rate, LearningRateSchedule):
            # the rate is set before every step from the schedule (see _apply_schedule)
            self._schedule = learning_rate
            # a schedule may start at 0 (a warmup), which the engine takes
            learning_rate = float(learning_rate(0))
            if not math.isfinite(learning_rate) or learning_rate < 0:
                raise ValueError(f"learning_rate: the schedule gives {learning_rate} at step "
                                 f"0; expected a finite number >= 0")
        else:
            learning_rate = _learning_rate(learning_rate)
        self._learning_rate = learning_rate
        given = dict(hyper, learning_rate=learning_rate, weight_decay=weight_decay,
                     clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        values = {}
        for key, f in fields.items():
            value = given.get(key, f["default"])
            if f["type"] == "bool":
                value = bool(value)
            elif value is not None and not isinstance(value, bool) \
                    and isinstance(value, numbers.Real):
                value = float(value)
            values[key] = value
        # every type, range and rule of the table, checked by the core's parser
        _core.optimizer_config(self.kind, values)
        self.weight_decay = values["weight_decay"]
        self.clipnorm = values["clipnorm"]
        self.clipvalue = values["clipvalue"]
        self.global_clipnorm = values["global_clipnorm"]
        self.name = name or type(self).__name__
        self._hyper = {key: values[key] for key in fields
                       if key != "learning_rate" and key not in _COMMON}

    # --- learning rate and step counter, live once attached to a compiled model -------------
    @property
    def learning_rate(self) -> float:
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        return float(self._net.learning_rate) if self._net is not None else self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self._schedule is not None:
            raise TypeError(f"{type(self).__name__}: the learning rate comes from the schedule "
                            f"{type(self._schedule).__name__} given as learning_rate, so it "
                            f"cannot be set")
        value = _learning_rate(value)
        self._learning_rate = value
        if self._net is not None:
            self._net.learning_rate = value

    lr = learning_rate

    def _apply_schedule(self) -> None:
        """Before a training step: the engine's rate becomes the schedule's value at the number
        of steps taken so far (Keras evaluates it at ``iterations`` before the update)."""
        net = self._net
        if self._schedule is not None and net is not None:
            value = float(self._schedule(int(net.iterations)))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"learning_rate: the schedule {type(self._schedule).__name__} "
                                 f"gave {value} at step {int(net.iterations)}; expected a "
                                 f"finite number >= 0")
            net.learning_rate = value

    @property
    def iterations(self) -> int:
        """Number of update steps taken (Keras's ``optimizer.iterations``)."""
        return int(self._net.iterations) if self._net is not None else 0

    def _engine_config(self) -> dict:
        cfg = dict(self._hyper)
        cfg["learning_rate"] = self._learning_rate
        for key in _COMMON:
            cfg[key] = getattr(self, key)  # None: off
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
                or not 0 <= int(iterations) < 2**62:
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
                if lr > 0 and self._schedule is None:
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
        if self._schedule is not None:   # the schedule sets the rate at the next step
            self._apply_schedule()
        elif lr > 0:
            self.learning_rate = float(lr)
        else:  # a rate that underflowed float32 when it was set: keep it as the engine had it
            net.learning_rate = 0.0

    def get_config(self) -> dict:
        cfg: dict[str, Any] = {"name": self.name, "learning_rate": (
            self.learning_rate if self._schedule is None
            else schedules.serialize(self._schedule))}
        cfg.update(self._hyper)
        for key in _COMMON:
            cfg[key] = getattr(self, key)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def __repr__(self):
        return f"<pynn.optimizers.{type(self).__name__} learning_rate={self.learning_rate:g}>"


class SGD(Optimizer):
    """Gradient descent with optional momentum: ``v = momentum*v - lr*g; w += v`` (Nesterov:
    ``w += momentum*v - lr*g``). The course's ``m = γm + (1-γ)g, Δw = -αm`` is the same
    trajectory as momentum γ with learning rate ``α(1-γ)``."""

    kind = "sgd"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class Adagrad(Optimizer):
    kind = "adagrad"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class Adadelta(Optimizer):
    kind = "adadelta"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class RMSprop(Optimizer):
    kind = "rmsprop"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class Adam(Optimizer):
    kind = "adam"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class AdamW(Adam):
    kind = "adamw"


class Nadam(Optimizer):
    kind = "nadam"

    if TYPE_CHECKING:
        # The real constructor is generated from the core's table (Keras's signature and
        # defaults, every argument optional); this is its shape for a type checker.
        def __init__(self, learning_rate: Any = ..., **kwargs: Any) -> None: ...


class Adamax(Nadam):
    kind = "adamax"


_BY_NAME = {cls.kind: cls for cls in (SGD, Adagrad, Adadelta, RMSprop, Adam, AdamW, Nadam, Adamax)}
if set(_BY_NAME) != set(_DESCRIPTORS) or any(
        cls.__name__ != _DESCRIPTORS[kind]["class_name"] for kind, cls in _BY_NAME.items()):
    raise ImportError(f"pynn.optimizers: classes {sorted(_BY_NAME)} do not match the core's "
                      f"optimizer table {sorted(_DESCRIPTORS)}; rebuild pynn._core")
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def names() -> list[str]:
    """The optimizer names `get` (and `compile`) accept."""
    return sorted(_DESCRIPTORS)


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
    cls = _BY_CLASS.get(config.get("class_name", ""))
    if cls is None:
        raise ValueError(f"optimizer: unknown class {config.get('class_name')!r}")
    return cls(**config.get("config", {}))


__all__ = ["Optimizer", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Nadam",
           "Adamax", "get", "names", "serialize", "deserialize", "schedules",
           "LearningRateSchedule"]
