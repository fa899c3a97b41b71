"""The transposed convolution in NumPy: the twin of csrc/nn/ops/conv_transpose.cpp.

Samples are channels_last with the batch axis first: (b, W, C) for 1-D, (b, H, W, C) for
2-D; a 1-D op is computed as the 2-D one on (b, 1, W, C).

    conv_transpose   y = act(b + x (*)^T kernel), Keras's Conv1DTranspose/Conv2DTranspose:
                     every input position q scatters x[q] @ kernel[i, j]^T to the output
                     position (q_h*sh + i*dh - ph, q_w*sw + j*dw - pw); kernel (kw, F, C) or
                     (kh, kw, F, C); attrs strides, padding (valid, same), output_padding
                     (one int per axis, or absent for Keras's None), dilation_rate,
                     activation, act_params, use_bias; compute_dtype "bfloat16" (the
                     mixed_bfloat16 policy) rounds x, the kernel and dz to bf16 for the
                     products (pynn.reference.bf16), which are summed exactly here (in the
                     executor's dtype); the bias and db stay unrounded.

Written here as a sum over the kernel's taps of strided slices of a "full" output (every
position any input reaches, (L - 1) s + span per axis), which is then cropped by the zeros
before (`ph`) and cut or extended with zeros to the output length: a different route from
the C++ op's col2im, so the two check each other.

Lengths (`transpose_length`) follow Keras 3's conv-transpose padding arguments: a total
padding `pad_len` per axis, of which at most span - 1 go before the data.
"""
from __future__ import annotations

import numpy as np

from pynn.reference import bf16
from pynn.reference.conv import _activation, _bf16


def transpose_length(length, k, stride=1, dilation=1, padding="valid", output_padding=None):
    """(output length, positions cropped before) of one spatial axis."""
    span = (k - 1) * dilation + 1
    if output_padding is not None and not 0 <= output_padding < stride:
        raise ValueError(f"output_padding {output_padding} must be in [0, stride {stride})")
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        # Keras pads span - 1 zeros before and span - 1 + extra after the dilated input.
        before, after = span - 1, span - 1 + extra
    elif padding == "same":
        if output_padding is None:
            total = stride + span - 2
        else:
            total = span + span % 2 - 2 + output_padding
        before = min(total // 2 + total % 2, span - 1)
        after = total - before
    else:
        raise ValueError(f"padding: expected 'valid' or 'same', got {padding!r}")
    # the dilated input (L - 1) s + 1 with its padding, read by a window of span taps
    out = (length - 1) * stride + 1 + before + after - span + 1
    return out, span - 1 - before


def _setup(x, kernel, strides, dilation_rate, output_padding):
    rank = x.ndim - 2
    strides = (1,) * rank if strides is None else tuple(strides)
    dilation = (1,) * rank if dilation_rate is None else tuple(dilation_rate)
    opad = (None,) * rank if not output_padding else tuple(output_padding)
    if rank == 1:
        return x[:, None], kernel[None], (1,) + strides, (1,) + dilation, (None,) + opad
    return x, kernel, strides, dilation, opad


def _geometry(x4, k4, strides, dilation, opad, padding):
    """Per axis (output length, crop before, full length)."""
    out = []
    for axis in range(2):
        n, k = x4.shape[1 + axis], k4.shape[axis]
        s, d = strides[axis], dilation[axis]
        length, crop = transpose_length(n, k, s, d, padding, opad[axis])
        out.append((length, crop, (n - 1) * s + (k - 1) * d + 1))
    return out


def _tap_slices(x4, strides, dilation, i, j):
    """The positions of the full output that tap (i, j) writes, as two slices."""
    H, W = x4.shape[1:3]
    (sh, sw), (dh, dw) = strides, dilation
    return (slice(i * dh, i * dh + (H - 1) * sh + 1, sh),
            slice(j * dw, j * dw + (W - 1) * sw + 1, sw))


def _full_size(geo):
    """Rows/columns of an array holding both the full output and the cropped window."""
    return tuple(max(full, crop + length) for length, crop, full in geo)


def conv_transpose_forward(x, kernel, bias=None, strides=None, padding="valid",
                           output_padding=None, dilation_rate=None):
    """z = x (*)^T kernel + bias (before any activation): (b, *out, F)."""
    x4, k4, strides, dilation, opad = _setup(x, kernel, strides, dilation_rate, output_padding)
    kh, kw, F, C = k4.shape
    if x4.shape[-1] != C:
        raise ValueError(f"conv_transpose: input channels {x4.shape[-1]} do not match kernel "
                         f"{kernel.shape}")
    geo = _geometry(x4, k4, strides, dilation, opad, padding)
    full = np.zeros((x4.shape[0],) + _full_size(geo) + (F,), np.result_type(x4, k4))
    for i in range(kh):
        for j in range(kw):
            rs, cs = _tap_slices(x4, strides, dilation, i, j)
            full[:, rs, cs] += np.einsum("nhwc,fc->nhwf", x4, k4[i, j])
    (oh, ph, _), (ow, pw, _) = geo
    z = full[:, ph:ph + oh, pw:pw + ow]
    if bias is not None:
        z = z + bias
    return z[:, 0] if x.ndim == 3 else z


def conv_transpose_backward(x, kernel, dz, strides=None, padding="valid", output_padding=None,
                            dilation_rate=None):
    """(dx, dkernel, dbias) from dz = d loss / d z, z as conv_transpose_forward returns it."""
    x4, k4, strides, dilation, opad = _setup(x, kernel, strides, dilation_rate, output_padding)
    dz4 = dz[:, None] if x.ndim == 3 else dz
    kh, kw, F, C = k4.shape
    geo = _geometry(x4, k4, strides, dilation, opad, padding)
    (oh, ph, _), (ow, pw, _) = geo
    dfull = np.zeros((x4.shape[0],) + _full_size(geo) + (F,), dz.dtype)
    dfull[:, ph:ph + oh, pw:pw + ow] = dz4
    dx = np.zeros(x4.shape, np.result_type(dz, k4))
    dk = np.zeros(k4.shape, np.result_type(dz, x4))
    for i in range(kh):
        for j in range(kw):
            rs, cs = _tap_slices(x4, strides, dilation, i, j)
            d = dfull[:, rs, cs]
            dx += np.einsum("nhwf,fc->nhwc", d, k4[i, j])
            dk[i, j] = np.einsum("nhwf,nhwc->fc", d, x4)
    db = dz4.sum(axis=(0, 1, 2))
    if x.ndim == 3:
        return dx[:, 0], dk[0], db
    return dx, dk, db


# --- the executor's table: forward(node, xs, ps, run) -> (y, saved), backward(node, saved, dy)
def _geometry_attrs(attrs):
    return {"strides": attrs.get("strides"), "padding": attrs.get("padding", "valid"),
            "output_padding": attrs.get("output_padding") or None,
            "dilation_rate": attrs.get("dilation_rate")}


def _conv_transpose_f(node, xs, ps, run):
    use_bias = node.attrs.get("use_bias", True)
    x, kernel = xs[0], ps[0]
    if _bf16(node.attrs):
        x = bf16.round_bf16(x).astype(xs[0].dtype)
        kernel = bf16.round_bf16(kernel).astype(ps[0].dtype)
    z = conv_transpose_forward(x, kernel, ps[1] if use_bias else None,
                               **_geometry_attrs(node.attrs))
    act = _activation(node.attrs)
    return act.fn(z), (x, kernel, z, act, use_bias)


def _conv_transpose_b(node, saved, dy):
    x, kernel, z, act, use_bias = saved  # x and kernel rounded already in bf16
    dz = act.vjp(z, dy) if act.name == "softmax" else dy * act.grad(z)
    dzp = bf16.round_bf16(dz).astype(dz.dtype) if _bf16(node.attrs) else dz
    dx, dk, _ = conv_transpose_backward(x, kernel, dzp, **_geometry_attrs(node.attrs))
    db = dz.sum(axis=tuple(range(dz.ndim - 1)))  # from the unrounded dz
    return [dx], ([dk, db] if use_bias else [dk])


OPS = {"conv_transpose": (_conv_transpose_f, _conv_transpose_b)}
