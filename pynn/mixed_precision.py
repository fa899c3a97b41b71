"""Mixed precision, with Keras 3's names: dtype policies, global and per layer.

A policy names the dtype a layer computes in and the dtype of its weights:

- ``"float32"``: both float32 (the default).
- ``"mixed_bfloat16"``: weights stay float32 (the "master" copy the optimizer updates), the
  layer's products run in bfloat16: operands rounded to bfloat16 (round to nearest even),
  products summed in float32 (`pynn._core.sbgemm`: AMX tiles, AVX512_BF16 or an exact
  emulation on other CPUs). Bias, activations, the loss and the optimizer stay float32.

  - ``Dense``: the input and kernel in the forward pass, dz with the kernel or the input in
    both products of the backward pass.
  - ``Conv1D``, ``Conv2D``, ``DepthwiseConv1D/2D``, ``SeparableConv1D/2D``: the same for the
    convolution (an implicit GEMM on the bf16 kernel); db is summed from the unrounded dz.
    Layers with at most 4 input channels per group run the float32 direct kernels on
    bf16-rounded copies (the same products, exact in float32). Winograd and the conv +
    max-pool fusion are float32 only, so on CPUs where they pay a bf16 convnet can be slower
    than a float32 one.
  - ``Conv1DTranspose``, ``Conv2DTranspose``: the same for their forward, dx and dW products
    (the bf16 GEMM on chunks of dz patches); db is summed from the unrounded dz.
  - ``SimpleRNN``, ``LSTM``, ``GRU`` (and Bidirectional's halves): every product, the input
    projection of all steps, each step's h_{t-1}·U (h_{t-1} and the recurrent kernel rounded),
    and in backpropagation through time dh_{t-1}, dx, dW and dU. Gates, the LSTM cell state
    and h stay float32.

  Results are bitwise identical on any thread count for a given CPU kernel. ``predict`` of
  a chain of bf16 Dense layers runs fused like the float32 one (kernels rounded and packed
  once per call, blocks of rows through every layer), bitwise the layer-by-layer result; a
  chain mixing float32 and bf16 layers runs layer by layer. Without AMX or
  AVX512_BF16 the products are emulated and are not faster than float32.

Differences from Keras: pynn passes float32 tensors between layers (a bf16 product's float32
sum is kept, not rounded to bf16 again) and rounds a recurrent state only where it enters the
recurrent product (Keras rounds each layer's output, a convolution's sum and bias, and the
gates and carried states h and c of a recurrent cell at every step). So ``compute_dtype``
changes the arithmetic of the layers above and nothing else. Policies with float16 or bfloat16
weights (``"mixed_float16"``, ``"float16"``, ``"bfloat16"``, ...) raise ValueError.

Example:
    >>> import pynn
    >>> pynn.mixed_precision.set_global_policy("mixed_bfloat16")
    >>> pynn.layers.Dense(4).dtype_policy.compute_dtype
    'bfloat16'
    >>> pynn.mixed_precision.set_global_policy("float32")
"""
from __future__ import annotations

import threading
from typing import Any

_SUPPORTED = {"float32": ("float32", "float32"), "mixed_bfloat16": ("bfloat16", "float32")}


class DTypePolicy:
    """A dtype policy (Keras's ``keras.DTypePolicy``): ``name``, ``compute_dtype``,
    ``variable_dtype``.

    Args:
        name: ``"float32"`` or ``"mixed_bfloat16"``; None means the current global policy's.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = global_policy().name
        if not isinstance(name, str):
            raise TypeError(f"name: expected a policy name (string), got {name!r}")
        if name not in _SUPPORTED:
            raise ValueError(f"name: pynn supports the dtype policies {sorted(_SUPPORTED)}, "
                             f"got {name!r}")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def compute_dtype(self) -> str:
        return _SUPPORTED[self._name][0]

    @property
    def variable_dtype(self) -> str:
        return _SUPPORTED[self._name][1]

    def get_config(self) -> dict:
        return {"name": self._name}

    @classmethod
    def from_config(cls, config: dict) -> DTypePolicy:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self._name}">'


Policy = DTypePolicy  # Keras keeps this older name in keras.mixed_precision

_GLOBAL = [DTypePolicy("float32")]
_LOCK = threading.Lock()


def get(policy: Any) -> DTypePolicy:
    """A DTypePolicy from a policy, its name, Keras's serialized dict, or None (global)."""
    if policy is None:
        return global_policy()
    if isinstance(policy, DTypePolicy):
        return policy
    if isinstance(policy, dict):
        cfg = policy.get("config", policy)
        if not isinstance(cfg, dict) or "name" not in cfg:
            raise ValueError(f"dtype: expected a policy dict with a 'name', got {policy!r}")
        return DTypePolicy(cfg["name"])
    if isinstance(policy, str):
        if policy not in _SUPPORTED:
            raise ValueError(f"dtype: pynn supports the dtype policies {sorted(_SUPPORTED)} "
                             f"(float32 weights), got {policy!r}")
        return DTypePolicy(policy)
    import numpy as np

    if policy is np.float32:
        return DTypePolicy("float32")
    raise TypeError(f"dtype: expected a policy name, a DTypePolicy or None, got {policy!r}")


def set_global_policy(policy: Any) -> None:
    """Sets the policy of the layers created from now on (`dtype=None`)."""
    if policy is None:
        policy = "float32"
    new = get(policy)
    with _LOCK:
        _GLOBAL[0] = new


def global_policy() -> DTypePolicy:
    """The policy of layers created without `dtype` (initially ``"float32"``)."""
    return _GLOBAL[0]


# keras.config spells these set_dtype_policy / dtype_policy
set_dtype_policy = set_global_policy
dtype_policy = global_policy

__all__ = ["DTypePolicy", "Policy", "dtype_policy", "get", "global_policy", "set_dtype_policy",
           "set_global_policy"]
