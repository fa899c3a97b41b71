"""Learning-rate schedules (``keras.optimizers.schedules``): the learning rate as a function of
the optimizer's step count.

Pass one as an optimizer's ``learning_rate``; before every training step the optimizer sets
the compiled graph's rate to ``schedule(optimizer.iterations)`` (the number of steps already
taken, as Keras evaluates it). Values are computed in float32, as Keras computes them.
A schedule is saved with the model (``get_config`` / ``from_config``, `serialize` /
`deserialize`); a schedule class of your own needs ``@pynn.saving.register_serializable()``.

Example:
    >>> lr = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    >>> round(float(lr(200)), 6)
    0.025
    >>> opt = pynn.optimizers.SGD(learning_rate=lr)   # doctest: +SKIP
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts",
           "serialize", "deserialize"]

_F32 = np.float32


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return value


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    return value


def _step(step):
    if isinstance(step, bool) or not isinstance(step, (numbers.Real, np.ndarray)):
        raise TypeError(f"step: expected a number, got {step!r}")
    return _F32(step)


class LearningRateSchedule:
    """Base class: a subclass defines ``__call__(step)`` returning the learning rate at that
    step (NumPy/float32 arithmetic) and ``get_config()`` returning its constructor
    arguments."""

    def __call__(self, step: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a LearningRateSchedule subclass must "
                                  f"define __call__(step)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__}: a LearningRateSchedule subclass must "
                                  f"define get_config() to be saved")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_config()}>"


class _RateDecay(LearningRateSchedule):
    """The arguments ExponentialDecay and InverseTimeDecay share."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str | None = None) -> None:
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _real(decay_rate, "decay_rate")
        self.staircase = bool(staircase)
        self.name = name or type(self).__name__

    def _progress(self, step):
        """step / decay_steps, floored with `staircase`."""
        p = _step(step) / _F32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored
    with `staircase`)."""

    def __call__(self, step: Any) -> Any:
        return _F32(self.initial_learning_rate) * np.power(_F32(self.decay_rate),
                                                           self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to and including step ``boundaries[0]``, ``values[i]`` for steps in
    ``(boundaries[i-1], boundaries[i]]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str = "PiecewiseConstant") -> None:
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"values: expected one more value than boundaries, got "
                             f"{len(values)} values and {len(boundaries)} boundaries")
        for b in boundaries:
            _real(b, "boundaries")
        for v in values:
            _real(v, "values")
        if any(b1 < b0 for b0, b1 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries: expected increasing steps, got {boundaries}")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step: Any) -> Any:
        s = _step(step)
        index = int(np.searchsorted(np.asarray(self.boundaries, dtype=np.float32), s,
                                    side="left"))
        return _F32(self.values[index])

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From `initial_learning_rate` to `end_learning_rate` over `decay_steps` along
    ``(1 - step / decay_steps) ** power``; with `cycle` the decay restarts with
    `decay_steps` multiplied by ceil(step / decay_steps)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay") -> None:
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.end_learning_rate = _real(end_learning_rate, "end_learning_rate")
        self.power = _real(power, "power")
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step: Any) -> Any:
        s = _step(step)
        steps = _F32(self.decay_steps)
        if self.cycle:
            steps = steps * (_F32(1.0) if s == 0 else np.ceil(s / _F32(self.decay_steps)))
        else:
            s = np.minimum(s, steps)
        p = s / steps
        initial, end = _F32(self.initial_learning_rate), _F32(self.end_learning_rate)
        return (initial - end) * np.power(_F32(1.0) - p, _F32(self.power)) + end

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio floored
    with `staircase`)."""

    def __call__(self, step: Any) -> Any:
        return _F32(self.initial_learning_rate) / (_F32(1.0) + _F32(self.decay_rate)
                                                   * self._progress(step))


def _cosine(fraction, alpha, scale=1.0):
    decayed = _F32(0.5) * _F32(scale) * (_F32(1.0) + np.cos(_F32(math.pi) * fraction))
    return (_F32(1.0) - _F32(alpha)) * decayed + _F32(alpha)


class CosineDecay(LearningRateSchedule):
    """Half a cosine from the starting rate down to ``alpha`` times it over `decay_steps`.
    With `warmup_target`, the rate first rises linearly from `initial_learning_rate` to
    `warmup_target` over `warmup_steps`, then decays from `warmup_target`."""

    warmup_steps: float

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None,
                 warmup_steps: float = 0) -> None:
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.alpha = _real(alpha, "alpha")
        self.name = name
        self.warmup_target = None if warmup_target is None else _real(warmup_target,
                                                                      "warmup_target")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Real) \
                or warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected a number >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps

    def __call__(self, step: Any) -> Any:
        s = _step(step)
        initial, steps = _F32(self.initial_learning_rate), _F32(self.decay_steps)
        if self.warmup_target is None:
            return initial * _cosine(np.minimum(s, steps) / steps, self.alpha)
        target, warmup = _F32(self.warmup_target), _F32(self.warmup_steps)
        s = np.minimum(s, steps + warmup)
        if s < warmup:
            return (target - initial) * (s / warmup) + initial
        return target * _cosine((s - warmup) / steps, self.alpha)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): the first period lasts `first_decay_steps`,
    each next one `t_mul` times longer and starting `m_mul` times lower."""

    def __init__(self, initial_learning_rate: float, first_decay_steps: float,
                 t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0,
                 name: str = "SGDRDecay") -> None:
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.first_decay_steps = _positive(first_decay_steps, "first_decay_steps")
        self._t_mul = _positive(t_mul, "t_mul")
        self._m_mul = _real(m_mul, "m_mul")
        self.alpha = _real(alpha, "alpha")
        self.name = name

    def __call__(self, step: Any) -> Any:
        fraction = _step(step) / _F32(self.first_decay_steps)
        t_mul = _F32(self._t_mul)
        if self._t_mul == 1.0:
            restarts = np.floor(fraction)
            fraction = fraction - restarts
        else:
            # periods grow geometrically: restart i begins at (1 - t_mul**i) / (1 - t_mul)
            restarts = np.floor(np.log(_F32(1.0) - fraction * (_F32(1.0) - t_mul))
                                / np.log(t_mul))
            begun = (_F32(1.0) - np.power(t_mul, restarts)) / (_F32(1.0) - t_mul)
            fraction = (fraction - begun) / np.power(t_mul, restarts)
        scale = np.power(_F32(self._m_mul), restarts)
        return _F32(self.initial_learning_rate) * _cosine(fraction, self.alpha, scale)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self._t_mul,
                "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


_CLASSES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay,
                                          PolynomialDecay, InverseTimeDecay, CosineDecay,
                                          CosineDecayRestarts)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name", "config"}`` of a schedule (a registered class by its registered
    name)."""
    from pynn.saving import registered_name

    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"schedule: expected a LearningRateSchedule, got {schedule!r}")
    name = registered_name(type(schedule)) or type(schedule).__name__
    return {"class_name": name, "config": schedule.get_config()}


def deserialize(config: Mapping[str, Any],
                custom_objects: Mapping[str, Any] | None = None) -> LearningRateSchedule:
    """The schedule of a `serialize` dict: pynn's classes, or registered / custom ones."""
    from pynn.saving import lookup

    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(f"schedule: expected a dict with 'class_name' and 'config', got "
                         f"{config!r}")
    name = config["class_name"]
    cls = _CLASSES.get(name) or lookup(name, custom_objects)
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise ValueError(f"schedule: unknown learning-rate schedule {name!r}; register it with "
                         f"@pynn.saving.register_serializable()")
    return cls.from_config(dict(config.get("config") or {}))
