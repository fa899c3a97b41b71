"""Normalisation, noise and activity-regularization layers in NumPy: the twins of the
layer_norm, group_norm, noise and activity_regularization graph ops (csrc/nn/ops/).

Shapes: x is (batch, *sample); axes are per-sample (0 is the first axis after the batch,
negative from the end).

* layer_norm: for every position of the axes not in `axes`, the values over `axes` are
  standardised, ``xhat = (x - mean) / sqrt(var + eps)`` (biased variance), then
  ``y = gamma * xhat + beta`` with gamma, beta of shape ``[sample[a] for a in axes]``.
* group_norm: the channels of `axis` are split into `groups` blocks; one block over all other
  axes of a sample is one standardisation group; gamma, beta are per channel.
* Backward of both, per group of M members: ``dxhat = dy * gamma``,
  ``dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)``,
  ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)`` over the batch and the group positions.
* noise (training only): ``gaussian_noise`` y = x + stddev z; ``gaussian_dropout``
  y = x (1 + sqrt(rate / (1 - rate)) z); ``alpha_dropout`` keeps x where u >= rate, puts SELU's
  saturation value alpha' = -alpha scale elsewhere, then maps affinely (a, b) so that the mean
  and variance of SELU outputs are kept. z (unit normal) and u (uniform) are the draws; the
  engine derives them from (seed, stream, element index), reproduced by `noise_draws`.
* activity_regularization: y = x; the loss gains ``(l1 sum|x| + l2 sum x^2) / batch`` and the
  gradient ``(l1 sign(x) + 2 l2 x) / batch`` (`activity_penalty`).
"""
from __future__ import annotations

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_M64 = (1 << 64) - 1


def _sample_axes(axes, rank):
    out = sorted(int(a) % rank for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must be distinct, got {axes}")
    return out


# --- standardisation over groups ---------------------------------------------------------------
def _standardise(x, red, eps):
    """(xhat, inv_std) with statistics over the array axes `red` (kept as size-1 axes)."""
    mean = x.mean(axis=red, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=red, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    return (x - mean) * inv, inv


def _standardise_backward(dxhat, xhat, inv, red):
    a = dxhat.mean(axis=red, keepdims=True)
    b = (dxhat * xhat).mean(axis=red, keepdims=True)
    return inv * (dxhat - a - xhat * b)


def layer_norm_forward(x, gamma, beta, axes, eps=1e-3):
    """Returns (y, saved); gamma/beta None when absent."""
    rank = x.ndim - 1
    ax = _sample_axes(axes, rank)
    red = tuple(a + 1 for a in ax)
    xhat, inv = _standardise(x, red, eps)
    bshape = [1] * x.ndim
    for a in red:
        bshape[a] = x.shape[a]
    g = 1.0 if gamma is None else np.reshape(gamma, bshape)
    y = xhat * g + (0.0 if beta is None else np.reshape(beta, bshape))
    return y, (xhat, inv, g, red, gamma is not None, beta is not None)


def layer_norm_backward(dy, saved):
    """(dx, dgamma or None, dbeta or None)."""
    xhat, inv, g, red, has_g, has_b = saved
    keep = tuple(a for a in range(dy.ndim) if a not in red)
    pshape = tuple(dy.shape[a] for a in red)
    dx = _standardise_backward(dy * g, xhat, inv, red)
    dg = (dy * xhat).sum(axis=keep).reshape(pshape) if has_g else None
    db = dy.sum(axis=keep).reshape(pshape) if has_b else None
    return dx, dg, db


def _grouped(x, groups, axis):
    """x (b, ..., c, ...) viewed as (b, ..., groups, c // groups, ...); the group axis index."""
    ax = int(axis) % (x.ndim - 1) + 1
    c = x.shape[ax]
    if groups < 1 or c % groups:
        raise ValueError(f"groups must divide the {c} channels, got {groups}")
    return x.reshape(x.shape[:ax] + (groups, c // groups) + x.shape[ax + 1:]), ax


def group_norm_forward(x, gamma, beta, groups, axis=-1, eps=1e-3):
    xg, ax = _grouped(x, groups, axis)
    red = tuple(a for a in range(1, xg.ndim) if a != ax)
    xhat, inv = _standardise(xg, red, eps)
    xhat = xhat.reshape(x.shape)
    bshape = [1] * x.ndim
    bshape[ax] = x.shape[ax]
    g = 1.0 if gamma is None else np.reshape(gamma, bshape)
    y = xhat * g + (0.0 if beta is None else np.reshape(beta, bshape))
    return y, (xhat, inv, g, groups, ax, gamma is not None, beta is not None)


def group_norm_backward(dy, saved):
    xhat, inv, g, groups, ax, has_g, has_b = saved
    keep = tuple(a for a in range(dy.ndim) if a != ax)
    dxhat, _ = _grouped(dy * g, groups, ax - 1)
    xg, _ = _grouped(xhat, groups, ax - 1)
    red = tuple(a for a in range(1, xg.ndim) if a != ax)
    dx = _standardise_backward(dxhat, xg, inv, red).reshape(dy.shape)
    dg = (dy * xhat).sum(axis=keep) if has_g else None
    db = dy.sum(axis=keep) if has_b else None
    return dx, dg, db


# --- noise -------------------------------------------------------------------------------------
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, stream: int, n: int) -> np.ndarray:
    """The engine's 64 random bits for counters 0..n-1 of (seed, stream) (nn/random.cpp)."""
    k = _mix64(np.array([(seed + 0x9E3779B97F4A7C15 * (stream + 1)) & _M64], np.uint64))
    i = np.arange(n, dtype=np.uint64)
    return _mix64(k ^ (i * np.uint64(0xD1B54A32D192ED03) + np.uint64(0x9E3779B97F4A7C15)))


def noise_draws(kind: str, seed: int, stream: int, shape) -> np.ndarray:
    """The engine's draws for a noise node: unit normals (Box-Muller on the top 48 bits) for
    the Gaussian kinds, uniforms in [0, 1) (24 bits) for alpha_dropout."""
    bits = random_bits(seed, stream, int(np.prod(shape)))
    hi = (bits >> np.uint64(40)).astype(np.float64)
    if kind == "alpha_dropout":
        return (hi / 16777216.0).reshape(shape)
    u1 = (hi + 1.0) / 16777216.0
    u2 = ((bits >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float64) / 16777216.0
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(shape)


def alpha_dropout_affine(rate: float) -> tuple[float, float, float]:
    """(a, b, alpha') of AlphaDropout at this rate."""
    ap = -SELU_ALPHA * SELU_SCALE
    a = ((1.0 - rate) * (1.0 + rate * ap * ap)) ** -0.5
    return a, -a * ap * rate, ap


def noise_forward(x, kind, value, draws):
    """(y, multiplier of dy); draws None means inference (the identity)."""
    if draws is None or value == 0:
        return x, None
    if kind == "gaussian_noise":
        return x + value * draws, None
    if kind == "gaussian_dropout":
        m = 1.0 + np.sqrt(value / (1.0 - value)) * draws
        return x * m, m
    a, b, ap = alpha_dropout_affine(value)
    keep = draws >= np.float32(value)   # the engine compares in float32
    return np.where(keep, a * x + b, a * ap + b), np.where(keep, a, 0.0)


def noise_backward(dy, mult):
    return dy if mult is None else dy * mult


# --- activity regularization ------------------------------------------------------------------
def activity_penalty(x, l1, l2):
    """(the loss term, its gradient with respect to x) for a batch x."""
    n = max(x.shape[0], 1)
    return (l1 * np.abs(x).sum() + l2 * (x * x).sum()) / n, (l1 * np.sign(x) + 2 * l2 * x) / n


# --- graph-executor entries (pynn.reference.graph.OPS) ---------------------------------------
def _affine_params(node, ps):
    scale, center = node.attrs.get("scale", True), node.attrs.get("center", True)
    gamma = ps[0] if scale else None
    beta = ps[int(scale)] if center else None
    return gamma, beta


def _param_grads(node, dg, db):
    out = []
    if node.attrs.get("scale", True):
        out.append(dg)
    if node.attrs.get("center", True):
        out.append(db)
    return out


def _layer_norm_op(node, xs, ps, run):
    gamma, beta = _affine_params(node, ps)
    return layer_norm_forward(xs[0], gamma, beta, node.attrs["axes"],
                              node.attrs.get("epsilon", 1e-3))


def _group_norm_op(node, xs, ps, run):
    gamma, beta = _affine_params(node, ps)
    return group_norm_forward(xs[0], gamma, beta, node.attrs["groups"],
                              node.attrs.get("axis", -1), node.attrs.get("epsilon", 1e-3))


def _norm_op_backward(backward):
    def run_backward(node, saved, dy):
        dx, dg, db = backward(dy, saved)
        return [dx], _param_grads(node, dg, db)
    return run_backward


def _noise_op(node, xs, ps, run):
    """The draws come from ``dropout_masks[node index]`` (see `noise_draws`); without them, or
    at inference, the node is the identity."""
    draws = run.dropout_masks.get(run.node_index) if run is not None and run.training else None
    return noise_forward(xs[0], node.attrs["kind"], node.attrs.get("value", 0.0), draws)


def _noise_op_backward(node, mult, dy):
    return [noise_backward(dy, mult)], []


def _activity_op(node, xs, ps, run):
    return xs[0], (xs[0], run.training)


def _activity_op_backward(node, saved, dy):
    # the penalty is part of the training loss alone; an input gradient passes dy through
    x, training = saved
    if not training:
        return [dy], []
    _, g = activity_penalty(x, node.attrs.get("l1", 0.0), node.attrs.get("l2", 0.0))
    return [dy + g], []


OPS = {
    "layer_norm": (_layer_norm_op, _norm_op_backward(layer_norm_backward)),
    "group_norm": (_group_norm_op, _norm_op_backward(group_norm_backward)),
    "noise": (_noise_op, _noise_op_backward),
    "activity_regularization": (_activity_op, _activity_op_backward),
}
