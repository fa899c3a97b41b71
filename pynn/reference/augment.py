"""The image augmentation op (`image_augment`: RandomFlip, RandomTranslation, RandomRotation,
RandomZoom, and a given per-sample affine transform) in plain NumPy.

Every kind is a per-sample affine map from an output pixel (row i, column j) to the input
point it reads, in Keras's 8-number form ``[a0, a1, a2, b0, b1, b2, c0, c1]``:
``xs = (a0 j + a1 i + a2) / k``, ``ys = (b0 j + b1 i + b2) / k``, ``k = c0 j + c1 i + 1``.
Pixel centres sit on integer coordinates. `transforms` builds the maps from the op's uniform
draws (`draws` reproduces the engine's: draw k of sample b is counter ``2 b + k`` of the
node's (seed, stream)); `resample` reads the input there ("nearest": round half to even;
"bilinear": the four neighbours), extending the image past its edges per fill mode
(constant: fill_value; nearest: the edge pixel; wrap: periodic; reflect: mirrored with the
edge pixel repeated). `resample_backward` is its transpose: each output gradient goes back to
the input pixels it was read from, with the same weights.
"""
from __future__ import annotations

import numpy as np

from pynn.reference.normalization import random_bits


def draws(seed: int, stream: int, n: int) -> np.ndarray:
    """The engine's uniforms in [0, 1) for n samples, shape (n, 2) (24-bit, as float32)."""
    bits = random_bits(seed, stream, 2 * n)
    return ((bits >> np.uint64(40)).astype(np.float64) / 16777216.0).reshape(n, 2)


def transforms(attrs: dict, u: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, 8) maps for the kind in `attrs` and uniforms u (n, 2)."""
    kind = attrs["kind"]
    n = u.shape[0]
    t = np.zeros((n, 8))
    t[:, 0] = t[:, 4] = 1.0
    lo, hi = np.asarray(attrs.get("lower", [0.0, 0.0])), np.asarray(attrs.get("upper", [0.0, 0.0]))
    v = lo + (hi - lo) * u[:, :len(lo)]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    if kind == "flip":
        mode = attrs.get("mode", "horizontal_and_vertical")
        f = u[:, 0] <= 0.5
        if mode in ("horizontal", "horizontal_and_vertical"):
            t[f, 0], t[f, 2] = -1.0, width - 1.0
        if mode in ("vertical", "horizontal_and_vertical"):
            t[f, 4], t[f, 5] = -1.0, height - 1.0
    elif kind == "translation":
        t[:, 5] = -v[:, 0] * height
        t[:, 2] = -v[:, 1] * width
    elif kind == "rotation":
        ang = v[:, 0] * 2.0 * np.pi
        c, s = np.cos(ang), np.sin(ang)
        t[:, 0], t[:, 1], t[:, 2] = c, -s, cx - cx * c + cy * s
        t[:, 3], t[:, 4], t[:, 5] = s, c, cy - cx * s - cy * c
    elif kind == "zoom":
        zy = 1.0 + v[:, 0]
        zx = zy if attrs.get("same_zoom", False) else 1.0 + v[:, 1]
        t[:, 0], t[:, 2] = zx, cx * (1.0 - zx)
        t[:, 4], t[:, 5] = zy, cy * (1.0 - zy)
    else:
        raise ValueError(f"kind: unknown {kind!r}")
    return t


def fix_index(i: np.ndarray, n: int, fill_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(index folded into [0, n), valid) for integer indices i of an axis of size n."""
    inside = (i >= 0) & (i < n)
    if fill_mode == "constant":
        return np.clip(i, 0, n - 1), inside
    if fill_mode == "nearest":
        return np.clip(i, 0, n - 1), np.ones_like(inside)
    if fill_mode == "wrap":
        return np.mod(i, n), np.ones_like(inside)
    if fill_mode == "reflect":
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m), np.ones_like(inside)
    raise ValueError(f"fill_mode: unknown {fill_mode!r}")


def _taps(t, height, width, fill_mode, interpolation):
    """Per output pixel (H, W): a list of (row, col, weight, valid) neighbour arrays."""
    i, j = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing="ij")
    k = t[6] * j + t[7] * i + 1.0
    xs = (t[0] * j + t[1] * i + t[2]) / k
    ys = (t[3] * j + t[4] * i + t[5]) / k
    far = 2.0 ** 40
    xs = np.where((xs > -far) & (xs < far), xs, -far)
    ys = np.where((ys > -far) & (ys < far), ys, -far)
    if interpolation == "nearest":
        r, vr = fix_index(np.rint(ys).astype(np.int64), height, fill_mode)
        c, vc = fix_index(np.rint(xs).astype(np.int64), width, fill_mode)
        return [(r, c, np.ones_like(xs), vr & vc)]
    fy, fx = np.floor(ys), np.floor(xs)
    wy, wx = ys - fy, xs - fx
    out = []
    for dr, wr in ((0, 1.0 - wy), (1, wy)):
        r, vr = fix_index(fy.astype(np.int64) + dr, height, fill_mode)
        for dc, wc in ((0, 1.0 - wx), (1, wx)):
            c, vc = fix_index(fx.astype(np.int64) + dc, width, fill_mode)
            out.append((r, c, wr * wc, vr & vc))
    return out


def _hwc(x, channels_first):
    return np.moveaxis(x, 1, -1) if channels_first else x


def resample(x: np.ndarray, t: np.ndarray, fill_mode: str = "reflect",
             interpolation: str = "bilinear", fill_value: float = 0.0,
             channels_first: bool = False) -> np.ndarray:
    """x (n, H, W, C) (or (n, C, H, W)) read at the maps t (n, 8)."""
    xh = _hwc(np.asarray(x, np.float64), channels_first)
    n, height, width, _ = xh.shape
    y = np.zeros_like(xh)
    for b in range(n):
        for r, c, w, ok in _taps(t[b], height, width, fill_mode, interpolation):
            y[b] += w[..., None] * np.where(ok[..., None], xh[b, r, c], fill_value)
    return np.moveaxis(y, -1, 1) if channels_first else y


def resample_backward(dy: np.ndarray, t: np.ndarray, fill_mode: str = "reflect",
                      interpolation: str = "bilinear", channels_first: bool = False
                      ) -> np.ndarray:
    """d loss / d x for the upstream gradient dy of `resample` (fill values get nothing)."""
    gh = _hwc(np.asarray(dy, np.float64), channels_first)
    n, height, width, _ = gh.shape
    dx = np.zeros_like(gh)
    for b in range(n):
        for r, c, w, ok in _taps(t[b], height, width, fill_mode, interpolation):
            np.add.at(dx[b], (r[ok], c[ok]), (w[..., None] * gh[b])[ok])
    return np.moveaxis(dx, -1, 1) if channels_first else dx


# --- graph-executor entry (pynn.reference.graph.OPS) ------------------------------------------
def _is_idle(attrs):
    return attrs["kind"] not in ("flip", "affine") and not any(
        list(attrs.get("lower", [])) + list(attrs.get("upper", [])))


def _augment_op(node, xs, ps, run):
    """Random kinds read their uniforms (n, 2) from ``dropout_masks[node index]`` (see
    `draws`); without them, or outside training, the op is the identity."""
    a = node.attrs
    x = xs[0]
    cf = bool(a.get("channels_first", False))
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    if a["kind"] == "affine":
        t = np.asarray(xs[1], np.float64)
    else:
        u = run.dropout_masks.get(run.node_index)
        active = run.training or a.get("force_training", False)
        if u is None or not active or _is_idle(a):
            return x, None
        t = transforms(a, np.asarray(u, np.float64), h, w)
    y = resample(x, t, a.get("fill_mode", "reflect"), a.get("interpolation", "bilinear"),
                 a.get("fill_value", 0.0), cf)
    return y.astype(x.dtype), (t, len(xs))


def _augment_op_backward(node, saved, dy):
    if saved is None:
        return [dy], []
    t, n_in = saved
    a = node.attrs
    dx = resample_backward(dy, t, a.get("fill_mode", "reflect"),
                           a.get("interpolation", "bilinear"),
                           bool(a.get("channels_first", False))).astype(dy.dtype)
    return ([dx, np.zeros_like(t, dtype=dy.dtype)] if n_in == 2 else [dx]), []


OPS = {"image_augment": (_augment_op, _augment_op_backward)}
