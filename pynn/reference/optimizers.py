"""Optimizers in NumPy: the update rules the compiled core fuses into one pass.

Notation: ``w`` a parameter, ``g`` its gradient, ``lr`` the learning rate (the course's α),
``t`` the 1-based step number. Every class follows Keras 3's ``update_step`` expression by
expression, with Keras's names and defaults, and keeps its per-parameter state in *slots*
(arrays of the parameter's shape) in the same order as the core (``_core.optimizer_slot_names``).

The course (SPEC §4) and Keras
------------------------------
The course writes each rule in its textbook form; Keras (and pynn) use the same rules with an
ε placed where it keeps a division finite. Where they differ:

* **SGD** ``Δw = −α g``: identical.
* **Momentum.** The course writes ``m = γ m + (1−γ) g, Δw = −α m`` (an exponential moving
  average of gradients). The usual form, ``m' = γ m' + g, Δw = −α' m'``, sums gradients instead.
  Starting both from zero, induction gives ``m = (1−γ) m'`` at every step (both recursions are
  linear with the same factor γ, and the course's input is the usual one times (1−γ)), so the
  course's step ``α m = α (1−γ) m'``: **the trajectories coincide when α' = α (1−γ)**. Keras
  writes the usual form with the learning rate inside, ``v = γ v − α' g, w = w + v``, i.e.
  ``v = −α' m'``: the same trajectory again. So the course's momentum(α, γ) is
  ``SGD(learning_rate=α·(1−γ), momentum=γ)`` — :func:`course_momentum_as_keras` — and the tests
  check it numerically. Nesterov (``nesterov=True``) applies the look-ahead:
  ``v = γ v − α' g, w = w + γ v − α' g``.
* **Adagrad** ``G += g², Δw = −α g / √G``. Keras starts ``G`` at ``initial_accumulator_value``
  (0.1) and uses ``√(G + ε)``; the course's form is ``initial_accumulator_value=0``, ε → 0.
* **Adadelta** ``v = β₂ v + (1−β₂) g², Δw = −α g √D / √v, D = β₁ D + (1−β₁)(Δw/α)²``. Keras uses
  one ``rho`` for β₁ = β₂ and ``√(D + ε)``, ``√(v + ε)``: here ε is essential, since ``D``
  starts at 0 and ``√D`` alone would never move ``w``.
* **RMSprop** ``v = β₂ v + (1−β₂) g², Δw = −α g / √v``: Keras's ``rho`` is β₂ and the
  denominator ``√(v + ε)``; ``centered=True`` divides by ``√(v − ḡ² + ε)`` with ``ḡ`` the moving
  average of ``g`` (a variance estimate); ``momentum > 0`` accumulates the increments,
  ``m = μ m + Δ, w = w − m``.
* **Adam** ``m = β₁ m + (1−β₁) g, v = β₂ v + (1−β₂) g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
  Δw = −α m̂ / √v̂``. Keras folds both corrections into the step,
  ``α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ), Δw = −α_t m / (√v + ε)``, which is the course's rule with the
  ε ("epsilon hat") applied to ``√v`` rather than ``√v̂``: equal to ``−α m̂ / (√v̂ + ε/√(1−β₂ᵗ))``.
  ``amsgrad=True`` divides by the running maximum of ``v`` instead.

Beyond the course: AdamW (Adam with ``weight_decay=0.004``), Nadam, Adamax; and for every
optimizer ``weight_decay`` (decoupled: ``w = w − w·wd·lr`` before the update, as Keras does),
``clipnorm`` (each gradient scaled to norm ≤ clipnorm), ``global_clipnorm`` (all gradients
scaled together), ``clipvalue`` (each element clamped to ±clipvalue); at most one clip is set.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Optimizer",
    "SGD",
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Adam",
    "AdamW",
    "Nadam",
    "Adamax",
    "get",
    "course_momentum_as_keras",
    "course_momentum_step",
]


class Optimizer:
    """Shared machinery: clipping, weight decay, the step counter, slot storage.

    ``apply(grads, params)`` runs one Keras step over lists of arrays, updating ``params`` in
    place. The state lives in ``self.slots`` (one list of arrays per parameter) and
    ``self.iterations`` (steps done), both readable and writable so tests can compare them.
    """

    name = ""
    learning_rate_default = 0.001

    def __init__(self, learning_rate=None, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of clipnorm, clipvalue and global_clipnorm can be set")
        self.learning_rate = (self.learning_rate_default if learning_rate is None
                              else float(learning_rate))
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.iterations = 0
        self.slots = None

    # -- what each optimizer defines -------------------------------------------------------
    def slot_names(self) -> list[str]:
        """Names of the per-parameter state arrays, in the core's order."""
        return []

    def slot_init(self, name: str) -> float:
        """Initial value of the named slot."""
        return 0.0

    def begin_step(self, t: int) -> None:
        """Scalar state shared by all parameters, advanced once per step (Nadam)."""

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        """One parameter's update in place, with ``g`` already clipped."""
        raise NotImplementedError

    # -- the step ---------------------------------------------------------------------------
    def build(self, params: Sequence[np.ndarray]) -> None:
        self.slots = [[np.full_like(p, self.slot_init(n)) for n in self.slot_names()]
                      for p in params]

    def clip(self, grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Keras's _clip_gradients: returns new arrays, never modifies the caller's."""
        if self.clipnorm is not None and self.clipnorm > 0:
            out = []
            for g in grads:
                norm = math.sqrt(float(np.sum(np.square(g, dtype=np.float64))))
                # g * clipnorm / max(norm, clipnorm): unchanged when already within.
                out.append(g * (self.clipnorm / max(norm, self.clipnorm)))
            return out
        if self.global_clipnorm is not None and self.global_clipnorm > 0:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            if not math.isfinite(norm):
                scale = math.nan  # Keras poisons the step rather than pass bad gradients on
            else:
                scale = self.global_clipnorm / max(norm, self.global_clipnorm)
            return [g * scale for g in grads]
        if self.clipvalue is not None and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return [np.array(g, copy=True) for g in grads]

    def apply(self, grads: Sequence[np.ndarray], params: Sequence[np.ndarray]) -> None:
        if self.slots is None:
            self.build(params)
        t = self.iterations + 1
        grads = [np.asarray(g, dtype=p.dtype) for g, p in zip(grads, params)]
        grads = self.clip(grads)
        if self.weight_decay is not None and self.weight_decay > 0:
            for p in params:
                p -= p * self.weight_decay * self.learning_rate
        self.begin_step(t)
        for p, g, s in zip(params, grads, self.slots):
            self.update(t, p, g, s)
        self.iterations = t


class SGD(Optimizer):
    """Gradient descent, with optional (Nesterov) momentum.

    ``momentum == 0``: ``w = w − lr·g``. Otherwise, with velocity ``v`` (slot ``momentum``):
    ``v = μ v − lr·g; w = w + v`` or, Nesterov, ``w = w + μ v − lr·g``.
    The course's ``m = γ m + (1−γ) g`` is this with ``lr = α (1−γ)`` (module docstring).
    """

    name = "sgd"
    learning_rate_default = 0.01

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def slot_names(self) -> list[str]:
        return ["momentum"] if self.momentum > 0 else []

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        lr = self.learning_rate
        if self.momentum == 0:
            w -= g * lr
            return
        (v,) = slots
        v[...] = v * self.momentum - g * lr
        if self.nesterov:
            w += v * self.momentum - g * lr
        else:
            w += v


class Adagrad(Optimizer):
    """``G = G + g²; w = w − lr·g / √(G + ε)``, ``G`` starting at initial_accumulator_value."""

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def slot_names(self) -> list[str]:
        return ["accumulator"]

    def slot_init(self, name: str) -> float:
        return self.initial_accumulator_value

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        (acc,) = slots
        acc += np.square(g)
        w -= (self.learning_rate * g) / np.sqrt(acc + self.epsilon)


class Adadelta(Optimizer):
    """With ``E[g²]`` (slot accumulated_grad) and ``E[Δ²]`` (slot accumulated_delta_var):

    ``E[g²] = ρ E[g²] + (1−ρ) g²;  Δ = −√(E[Δ²] + ε) · g / √(E[g²] + ε);
    E[Δ²] = ρ E[Δ²] + (1−ρ) Δ²;  w = w + lr·Δ``.
    """

    name = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def slot_names(self) -> list[str]:
        return ["accumulated_grad", "accumulated_delta_var"]

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        eg2, ed2 = slots
        rho, eps = self.rho, self.epsilon
        eg2[...] = rho * eg2 + (1 - rho) * np.square(g)
        delta = -(np.sqrt(ed2 + eps) * g) / np.sqrt(eg2 + eps)
        ed2[...] = rho * ed2 + (1 - rho) * np.square(delta)
        w += self.learning_rate * delta


class RMSprop(Optimizer):
    """``v = ρ v + (1−ρ) g²``; centered: ``ḡ = ρ ḡ + (1−ρ) g``, ``d = v − ḡ² + ε`` else
    ``d = v + ε``; ``Δ = lr·g / √d``; with momentum ``m = μ m + Δ, w = w − m``, else
    ``w = w − Δ``. Slots: velocity, [momentum], [average_gradient].
    """

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)

    def slot_names(self) -> list[str]:
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        return names

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        named = dict(zip(self.slot_names(), slots))
        rho = self.rho
        v = named["velocity"]
        v[...] = rho * v + (1 - rho) * np.square(g)
        if self.centered:
            a = named["average_gradient"]
            a[...] = rho * a + (1 - rho) * g
            denominator = v - np.square(a) + self.epsilon
        else:
            denominator = v + self.epsilon
        increment = (self.learning_rate * g) / np.sqrt(denominator)
        if self.momentum > 0:
            m = named["momentum"]
            m[...] = self.momentum * m + increment
            w -= m
        else:
            w -= increment


class Adam(Optimizer):
    """``m = m + (g − m)(1−β₁); v = v + (g² − v)(1−β₂); α_t = lr √(1−β₂ᵗ)/(1−β₁ᵗ);
    w = w − α_t m / (√v + ε)``; amsgrad uses ``v̂ = max(v̂, v)`` in place of ``v``.
    Slots: momentum, velocity, [velocity_hat].
    """

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)

    def slot_names(self) -> list[str]:
        return ["momentum", "velocity"] + (["velocity_hat"] if self.amsgrad else [])

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        m, v = slots[0], slots[1]
        alpha = self.learning_rate * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        m += (g - m) * (1 - self.beta_1)
        v += (np.square(g) - v) * (1 - self.beta_2)
        if self.amsgrad:
            v_hat = slots[2]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        w -= (m * alpha) / (np.sqrt(v) + self.epsilon)


class AdamW(Adam):
    """Adam with decoupled weight decay on by default (``weight_decay=0.004``)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        if weight_decay is None:
            raise ValueError("weight_decay must be a float for AdamW, got None")
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat), Keras's form.

    ``u_t = β₁ (1 − ½·0.96ᵗ)`` and the running product ``P_t = u_1 ⋯ u_t`` (``u_product``,
    shared by all parameters, advanced once per step). With ``m``, ``v`` as in Adam:
    ``m̂ = u_{t+1} m / (1 − P_t u_{t+1}) + (1 − u_t) g / (1 − P_t); v̂ = v / (1 − β₂ᵗ);
    w = w − lr·m̂ / (√v̂ + ε)``.
    """

    name = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.u_product = 1.0

    def slot_names(self) -> list[str]:
        return ["momentum", "velocity"]

    def _u(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def begin_step(self, t: int) -> None:
        self.u_product *= self._u(t)

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        m, v = slots
        u_t, u_next = self._u(t), self._u(t + 1)
        prod, prod_next = self.u_product, self.u_product * u_next
        m += (g - m) * (1 - self.beta_1)
        v += (np.square(g) - v) * (1 - self.beta_2)
        m_hat = u_next * m / (1 - prod_next) + (1 - u_t) * g / (1 - prod)
        v_hat = v / (1 - self.beta_2**t)
        w -= (m_hat * self.learning_rate) / (np.sqrt(v_hat) + self.epsilon)


class Adamax(Optimizer):
    """Adam with the infinity norm: ``m = m + (g − m)(1−β₁); u = max(β₂ u, |g|);
    w = w − lr·m / ((1−β₁ᵗ)(u + ε))``. Slots: momentum, norm.
    """

    name = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def slot_names(self) -> list[str]:
        return ["momentum", "norm"]

    def update(self, t: int, w: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        m, u = slots
        m += (g - m) * (1 - self.beta_1)
        u[...] = np.maximum(self.beta_2 * u, np.abs(g))
        w -= (self.learning_rate * m) / ((1 - self.beta_1**t) * (u + self.epsilon))


_REGISTRY = {cls.name: cls for cls in (SGD, Adagrad, Adadelta, RMSprop, Adam, AdamW, Nadam,
                                       Adamax)}


def get(name, **config):
    """The optimizer called ``name`` (Keras string, any case), built from ``config``."""
    try:
        cls = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(_REGISTRY)}") \
            from None
    return cls(**config)


def course_momentum_step(w: np.ndarray, g: np.ndarray, m: np.ndarray, alpha: float,
                         gamma: float) -> None:
    """The course's momentum step in place: ``m = γ m + (1−γ) g; w = w − α m``."""
    m[...] = gamma * m + (1 - gamma) * g
    w -= alpha * m


def course_momentum_as_keras(alpha: float, gamma: float) -> dict[str, float]:
    """The Keras ``SGD`` arguments whose trajectory equals the course's momentum(α, γ)."""
    return {"learning_rate": alpha * (1 - gamma), "momentum": gamma}
