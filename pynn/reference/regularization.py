"""Regularisation in NumPy: inverted dropout, batch normalisation, L1/L2 penalties."""
from __future__ import annotations

from typing import Any

import numpy as np


# --- dropout -------------------------------------------------------------------------------
def dropout_mask(shape, rate, rng, dtype=np.float64):
    """Inverted-dropout mask: 1/(1-rate) with probability 1-rate, else 0.

    `rng` is a ``numpy.random.Generator`` (or a seed for one).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate: expected a number in [0, 1), got {rate}")
    rng = np.random.default_rng(rng)
    keep = rng.random(shape) >= rate
    return keep.astype(dtype) / (1.0 - rate)


def dropout_forward(x: np.ndarray, mask: np.ndarray):
    """``y = x * mask``; training-time output of inverted dropout (inference is the identity)."""
    return np.asarray(x) * mask


def dropout_backward(dy: np.ndarray, mask: np.ndarray):
    """``dx = dy * mask``."""
    return np.asarray(dy) * mask


# --- batch normalisation -------------------------------------------------------------------
def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            moving_mean: np.ndarray, moving_var: np.ndarray,
                            momentum: float = 0.99, epsilon: float = 1e-3,
                            dtype: Any = np.float64):
    """Batch normalisation with the statistics of the batch, per column of x (n, c).

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the biased batch variance.
    Returns ``(y, xhat, inv_std, new_moving_mean, new_moving_var)`` where the moving
    statistics follow Keras: ``moving = momentum * moving + (1 - momentum) * batch``.
    """
    x = np.asarray(x, dtype=dtype)
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv_std
    y = np.asarray(gamma, dtype=dtype) * xhat + np.asarray(beta, dtype=dtype)
    new_mean = momentum * np.asarray(moving_mean, dtype=dtype) + (1 - momentum) * mean
    new_var = momentum * np.asarray(moving_var, dtype=dtype) + (1 - momentum) * var
    return y, xhat, inv_std, new_mean, new_var


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            moving_mean: np.ndarray, moving_var: np.ndarray, epsilon: float = 1e-3,
                            dtype: Any = np.float64):
    """Batch normalisation with the moving statistics (inference)."""
    x = np.asarray(x, dtype=dtype)
    inv_std = 1.0 / np.sqrt(np.asarray(moving_var, dtype=dtype) + epsilon)
    return np.asarray(gamma, dtype=dtype) * (x - moving_mean) * inv_std + np.asarray(beta, dtype)


def batchnorm_backward(dy: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                       dtype: Any = np.float64):
    """Gradients of batch normalisation in training mode: ``(dx, dgamma, dbeta)``.

    The batch mean and variance depend on every row, so each dx_i collects three terms:
        dx_i = gamma * inv_std * (dy_i - mean(dy) - xhat_i * mean(dy * xhat))
    """
    dy = np.asarray(dy, dtype=dtype)
    xhat = np.asarray(xhat, dtype=dtype)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    n = dy.shape[0]
    dx = np.asarray(gamma, dtype=dtype) * inv_std * (dy - dbeta / n - xhat * dgamma / n)
    return dx, dgamma, dbeta


# --- weight penalties ----------------------------------------------------------------------
def l1_l2_penalty(w: np.ndarray, l1: float = 0.0, l2: float = 0.0, dtype: Any = np.float64):
    """Keras's L1L2 regulariser: ``(l1*sum|w| + l2*sum w^2, l1*sign(w) + 2*l2*w)``."""
    w = np.asarray(w, dtype=dtype)
    value = l1 * np.abs(w).sum() + l2 * (w * w).sum()
    return value, l1 * np.sign(w) + 2 * l2 * w
