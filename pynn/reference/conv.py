"""The convolution and pooling ops in NumPy: the twins of csrc/nn/ops/{conv,max_pool,avg_pool,
global_pool}.cpp.

Samples are channels_last, with the batch axis first: (b, W, C) for 1-D ops, (b, H, W, C) for
2-D ones. A 1-D op is computed as the 2-D one on (b, 1, W, C).

    conv          y = act(b + x * kernel), a cross-correlation as in Keras:
                  y[n, oh, ow, f] = b[f] + sum_{i, j, c} xp[n, oh*sh + i*dh, ow*sw + j*dw,
                                                            g*Cg + c] * kernel[i, j, c, f]
                  where xp is x with the padding's zeros around it, g = f // (F / groups) the
                  group of filter f and Cg = C / groups its input channels. kernel
                  (kw, Cg, F) or (kh, kw, Cg, F); attrs strides, padding, dilation_rate,
                  groups, activation, act_params, use_bias; compute_dtype "bfloat16" (mixed
                  precision) rounds x, the kernel and dz to bf16 for the products
                  (pynn.reference.bf16), bias and db unrounded.
    max_pool      the largest value of each window (pool_size, strides, padding), padded
                  positions never count; the gradient goes to the first maximum of the
                  window in row-major order (a NaN beats any number: the first NaN).
    avg_pool      the mean of the window's real inputs (padding "same" leaves the padded
                  positions out of the count, as TensorFlow does); the gradient spreads evenly.
    global_pool   fn "avg" or "max" over every axis but the channels; keepdims keeps them as 1.

Padding per spatial axis (length L, window k, stride s, dilation d, span (k - 1) d + 1):
"valid" has out = (L - span) // s + 1 and no zeros; "same" has out = ceil(L / s) and
max((out - 1) s + span - L, 0) zeros, half (rounded down) before, the rest after; "causal"
(1-D convolutions) has span - 1 zeros before and out = ceil(L / s).

Each op has ``*_forward`` and ``*_backward`` functions on plain arrays and an entry in `OPS`
(merged into `pynn.reference.graph.OPS`).
"""
from __future__ import annotations

import numpy as np

from pynn.reference import activations, bf16


# --- geometry ----------------------------------------------------------------------------
def output_length(length, k, stride=1, dilation=1, padding="valid"):
    """(output length, zeros before) of one spatial axis."""
    span = (k - 1) * dilation + 1
    if padding == "valid":
        if length < span:
            raise ValueError(f"a window spanning {span} positions does not fit in {length} "
                             f"(padding 'valid')")
        return (length - span) // stride + 1, 0
    out = -(-length // stride)
    if padding == "same":
        return out, max((out - 1) * stride + span - length, 0) // 2
    if padding == "causal":
        return out, span - 1
    raise ValueError(f"padding: expected 'valid', 'same' or 'causal', got {padding!r}")


def _as_2d(x, sizes):
    """A 1-D op's (b, W, C) as (b, 1, W, C) and its per-axis sizes with a leading 1."""
    if x.ndim == 3:
        return x[:, None], (1,) + tuple(sizes)
    return x, tuple(sizes)


def _windows(x, ksize, strides, dilation, padding, fill=0.0):
    """x (b, H, W, C) -> (b, OH, OW, kh, kw, C) windows and a mask of the same shape that is
    True where the window sits on the input (False on padding), plus the index arrays that
    address the padded input (for scattering gradients back)."""
    b, H, W, C = x.shape
    (kh, kw), (sh, sw), (dh, dw) = ksize, strides, dilation
    OH, ph = output_length(H, kh, sh, dh, padding)
    OW, pw = output_length(W, kw, sw, dw, padding)
    rows = (np.arange(OH) * sh)[:, None] + (np.arange(kh) * dh)[None, :]    # (OH, kh)
    cols = (np.arange(OW) * sw)[:, None] + (np.arange(kw) * dw)[None, :]    # (OW, kw)
    Hp = max(H + ph, rows.max() + 1)
    Wp = max(W + pw, cols.max() + 1)
    xp = np.full((b, Hp, Wp, C), fill, dtype=x.dtype)
    xp[:, ph:ph + H, pw:pw + W] = x
    on = np.zeros((Hp, Wp), bool)
    on[ph:ph + H, pw:pw + W] = True
    index = (rows[:, None, :, None], cols[None, :, None, :])              # (OH, OW, kh, kw)
    win = xp[:, index[0], index[1], :]
    mask = np.broadcast_to(on[index[0], index[1]][None, ..., None], win.shape)
    return win, mask, (index, xp.shape, ph, pw)


def _scatter(dwin, geom, shape):
    """The adjoint of `_windows`: window gradients (b, OH, OW, kh, kw, C) summed back into an
    input-shaped (b, H, W, C) array."""
    index, padded, ph, pw = geom
    dxp = np.zeros(padded, dtype=dwin.dtype)
    b = np.arange(padded[0])[:, None, None, None, None]
    np.add.at(dxp, (b, index[0][None], index[1][None]), dwin)
    return dxp[:, ph:ph + shape[1], pw:pw + shape[2]]


# --- conv --------------------------------------------------------------------------------
def _conv_setup(x, kernel, strides, dilation_rate):
    rank = x.ndim - 2
    strides = tuple(strides) if strides is not None else (1,) * rank
    dilation = tuple(dilation_rate) if dilation_rate is not None else (1,) * rank
    x4, strides = _as_2d(x, strides)
    _, dilation = _as_2d(x, dilation)
    k4 = kernel[None] if rank == 1 else kernel
    return x4, k4, strides, dilation


def conv_forward(x, kernel, bias=None, strides=None, padding="valid", dilation_rate=None,
                 groups=1):
    """z = x * kernel + bias (before any activation): (b, *out, F)."""
    x4, k4, strides, dilation = _conv_setup(x, kernel, strides, dilation_rate)
    kh, kw, cg, F = k4.shape
    if x4.shape[-1] != cg * groups or F % groups:
        raise ValueError(f"conv: input channels {x4.shape[-1]}, kernel {kernel.shape} and "
                         f"groups {groups} do not match")
    win, _, _ = _windows(x4, (kh, kw), strides, dilation, padding)
    fg = F // groups
    z = np.concatenate([
        np.einsum("nhwijc,ijcf->nhwf", win[..., g * cg:(g + 1) * cg],
                  k4[..., g * fg:(g + 1) * fg]) for g in range(groups)], axis=-1)
    if bias is not None:
        z = z + bias
    return z[:, 0] if x.ndim == 3 else z


def conv_backward(x, kernel, dz, strides=None, padding="valid", dilation_rate=None, groups=1):
    """(dx, dkernel, dbias) from dz = d loss / d z, z as conv_forward returns it."""
    x4, k4, strides, dilation = _conv_setup(x, kernel, strides, dilation_rate)
    dz4 = dz[:, None] if x.ndim == 3 else dz
    kh, kw, cg, F = k4.shape
    fg = F // groups
    win, _, geom = _windows(x4, (kh, kw), strides, dilation, padding)
    dwin = np.zeros_like(win)
    dk = np.zeros_like(k4, dtype=dz.dtype)
    for g in range(groups):
        cs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        dwin[..., cs] = np.einsum("nhwf,ijcf->nhwijc", dz4[..., fs], k4[..., fs])
        dk[..., fs] = np.einsum("nhwijc,nhwf->ijcf", win[..., cs], dz4[..., fs])
    dx = _scatter(dwin, geom, x4.shape)
    db = dz4.sum(axis=(0, 1, 2))
    if x.ndim == 3:
        return dx[:, 0], dk[0], db
    return dx, dk, db


# --- pooling -----------------------------------------------------------------------------
def _pool_setup(x, pool_size, strides):
    strides = pool_size if strides is None else strides
    x4, pool = _as_2d(x, pool_size)
    _, strides = _as_2d(x, strides)
    return x4, pool, strides


def _first_max(win, mask):
    """(max, one-hot of the winner) over the taps of each window: the first maximum among the
    real inputs, or the first NaN when there is one."""
    b, OH, OW, kh, kw, C = win.shape
    vals = win.reshape(b, OH, OW, kh * kw, C)
    real = mask.reshape(vals.shape)
    masked = np.where(real, vals, -np.inf)
    nan = real & np.isnan(vals)
    any_nan = nan.any(axis=3, keepdims=True)
    best = np.max(np.where(nan, -np.inf, masked), axis=3, keepdims=True)
    cand = np.where(any_nan, nan, real & (vals == best))
    idx = np.argmax(cand, axis=3)                                 # the first candidate
    onehot = np.zeros(vals.shape, dtype=win.dtype)
    np.put_along_axis(onehot, idx[:, :, :, None], 1.0, axis=3)
    y = np.where(any_nan[:, :, :, 0], np.nan, best[:, :, :, 0])
    return y, onehot.reshape(win.shape)


def max_pool_forward(x, pool_size, strides=None, padding="valid"):
    """y (b, *out, C) and what max_pool_backward needs."""
    x4, pool, strides = _pool_setup(x, pool_size, strides)
    win, mask, geom = _windows(x4, pool, strides, (1, 1), padding)
    y, onehot = _first_max(win, mask)
    return (y[:, 0] if x.ndim == 3 else y), (onehot, geom, x4.shape, x.ndim)


def max_pool_backward(saved, dy):
    onehot, geom, shape, ndim = saved
    dy4 = dy[:, None] if ndim == 3 else dy
    dx = _scatter(onehot * dy4[:, :, :, None, None, :], geom, shape)
    return dx[:, 0] if ndim == 3 else dx


def avg_pool_forward(x, pool_size, strides=None, padding="valid"):
    x4, pool, strides = _pool_setup(x, pool_size, strides)
    win, mask, geom = _windows(x4, pool, strides, (1, 1), padding)
    count = mask.sum(axis=(3, 4))                                 # (b, OH, OW, C)
    y = np.where(mask, win, 0.0).sum(axis=(3, 4)) / count
    weights = mask / count[:, :, :, None, None, :]
    return (y[:, 0] if x.ndim == 3 else y), (weights, geom, x4.shape, x.ndim)


def avg_pool_backward(saved, dy):
    weights, geom, shape, ndim = saved
    dy4 = dy[:, None] if ndim == 3 else dy
    dx = _scatter(weights * dy4[:, :, :, None, None, :], geom, shape)
    return dx[:, 0] if ndim == 3 else dx


def global_pool_forward(x, fn="avg", keepdims=False):
    """x (b, ..., C) -> (b, C), or (b, 1, ..., 1, C) with keepdims."""
    b, C = x.shape[0], x.shape[-1]
    flat = x.reshape(b, -1, C)
    if fn == "avg":
        y = flat.mean(axis=1)
        onehot = None
    elif fn == "max":
        vals = flat[:, None, None, :, None, :]                    # one window of P taps
        y, onehot = _first_max(vals, np.ones(vals.shape, bool))
        y = y[:, 0, 0]
        onehot = onehot.reshape(flat.shape)
    else:
        raise ValueError(f"global_pool: fn must be 'avg' or 'max', got {fn!r}")
    out = y.reshape((b,) + (1,) * (x.ndim - 2) + (C,)) if keepdims else y
    return out, (fn, x.shape, onehot)


def global_pool_backward(saved, dy):
    fn, shape, onehot = saved
    b, C = shape[0], shape[-1]
    g = dy.reshape(b, 1, C)
    P = int(np.prod(shape[1:-1]))
    dx = np.broadcast_to(g / P, (b, P, C)) if fn == "avg" else onehot * g
    return np.array(dx).reshape(shape)


# --- the executor's table: forward(node, xs, ps, run) -> (y, saved), backward(node, saved, dy)
def _activation(attrs):
    name = attrs.get("activation", "linear")
    act = activations.get(name)
    return activations.get(name, **dict(zip(act.param_names, attrs.get("act_params", ()))))


def _conv_geometry(attrs):
    return {"strides": attrs.get("strides"), "padding": attrs.get("padding", "valid"),
            "dilation_rate": attrs.get("dilation_rate"), "groups": attrs.get("groups", 1)}


def _bf16(attrs):
    return attrs.get("compute_dtype", "float32") == "bfloat16"


def _conv_f(node, xs, ps, run):
    use_bias = node.attrs.get("use_bias", True)
    x, kernel = xs[0], ps[0]
    if _bf16(node.attrs):
        # mixed precision: the products see x and the kernel rounded to bf16, summed exactly
        # here (in run's dtype); the bias is added unrounded
        x = bf16.round_bf16(x).astype(xs[0].dtype)
        kernel = bf16.round_bf16(kernel).astype(ps[0].dtype)
    z = conv_forward(x, kernel, ps[1] if use_bias else None, **_conv_geometry(node.attrs))
    act = _activation(node.attrs)
    y = act.fn(z)
    return y, (x, kernel, z, act, use_bias)


def _conv_b(node, saved, dy):
    x, kernel, z, act, use_bias = saved  # x and kernel rounded already in bf16
    dz = act.vjp(z, dy) if act.name == "softmax" else dy * act.grad(z)
    dzp = bf16.round_bf16(dz).astype(dz.dtype) if _bf16(node.attrs) else dz
    dx, dk, db = conv_backward(x, kernel, dzp, **_conv_geometry(node.attrs))
    if dzp is not dz:
        db = dz.sum(axis=tuple(range(dz.ndim - 1)))  # summed from the unrounded dz
    return [dx], ([dk, db] if use_bias else [dk])


def _pool_args(attrs):
    return {"pool_size": attrs["pool_size"], "strides": attrs.get("strides"),
            "padding": attrs.get("padding", "valid")}


def _max_pool_f(node, xs, ps, run):
    return max_pool_forward(xs[0], **_pool_args(node.attrs))


def _max_pool_b(node, saved, dy):
    return [max_pool_backward(saved, dy)], []


def _avg_pool_f(node, xs, ps, run):
    return avg_pool_forward(xs[0], **_pool_args(node.attrs))


def _avg_pool_b(node, saved, dy):
    return [avg_pool_backward(saved, dy)], []


def _global_pool_f(node, xs, ps, run):
    return global_pool_forward(xs[0], node.attrs.get("fn", "avg"),
                               node.attrs.get("keepdims", False))


def _global_pool_b(node, saved, dy):
    return [global_pool_backward(saved, dy)], []


OPS = {
    "conv": (_conv_f, _conv_b),
    "max_pool": (_max_pool_f, _max_pool_b),
    "avg_pool": (_avg_pool_f, _avg_pool_b),
    "global_pool": (_global_pool_f, _global_pool_b),
}
