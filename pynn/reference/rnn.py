"""Embedding and the recurrent cells in NumPy: the twins of csrc/nn/ops/{embedding,rnn,
slice}.cpp, written as plainly as possible (a Python loop over time steps).

    embedding   y[..., :] = table[x[...]]; d table[v] = sum of dy where x == v
    rnn         cell "simple", "lstm" or "gru" over x (b, T, F), Keras 3's weight layouts:
                kernel (F, G u), recurrent_kernel (u, G u), bias (G u,) or, for a gru with
                reset_after, (2, 3 u) = [input bias, recurrent bias]; gates in Keras's
                order (lstm: i f c o; gru: z r h). With h' and c' the previous state (zero
                at the first step) and a, s the activation and recurrent activation:

        simple  h = a(x W + b + h' U)
        lstm    i, f, g, o = s(zi), s(zf), a(zc), s(zo) of [zi zf zc zo] = x W + b + h' U
                c = f c' + i g;  h = o a(c)
        gru     z = s(x Wz + bz + h' Uz + rbz);  r = s(x Wr + br + h' Ur + rbr)
                reset_after:  hh = a(x Wh + bh + r (h' Uh + rbh))
                otherwise:    hh = a(x Wh + bh + (r h') Uh)          (rb = 0 here)
                h = z h' + (1 - z) hh

                go_backwards reads the steps from the last; a step whose mask is 0 keeps
                the previous h (and c). Outputs are in processing order (in time order
                with the attribute time_order); zero_output_for_mask makes the output of
                a masked step 0 (the state still carries over). Dropout in training
                multiplies the input by a mask mx (b, F), the same at every step, and h'
                by a mask mh (b, u) where it meets the recurrent kernel (h' U, and the
                (r h') of a gru without reset_after), not in the gru's z h' nor in c.
                Per-gate masks (an lstm or gru with recurrent_dropout, as Keras 3): mx
                (b, G, F) and mh (b, G, u), gate g's columns of x W and h' U taken from
                x mx[:, g] and h' mh[:, g]; a gru without reset_after forms (r h') from
                the candidate's h' mh[:, 2].
    slice       rows [begin, begin + size) of each sample's first axis

Backpropagation through time walks the steps in reverse, carrying dh (and dc for the lstm).

bf16 (the op's compute_dtype "bfloat16", mixed precision): every matrix product, forward and
backward, sees its two operands rounded to bfloat16 (`pynn.reference.bf16.round_bf16`): x
(after its dropout mask) and W, h' (after its mask; r h' for a gru without reset_after) and U,
dz and W^T or U^T, x^T or h'^T and dz; everything else (bias, gates, c, h, the sums of the
products and the bias gradients) is computed unrounded.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn.reference import activations
from pynn.reference.bf16 import round_bf16

GATES = {"simple": 1, "lstm": 4, "gru": 3}


# --- embedding -------------------------------------------------------------------------------
def embedding_forward(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rows of `table` (V, D) picked by the integer values of `x` (any shape)."""
    idx = np.asarray(x)
    if np.any(idx != np.trunc(idx)) or np.any(idx < 0) or np.any(idx >= table.shape[0]):
        raise ValueError(f"embedding: indices must be integers in [0, {table.shape[0]})")
    return table[idx.astype(np.int64)]


def embedding_backward(x: np.ndarray, table_shape: tuple, dy: np.ndarray) -> np.ndarray:
    """d table: dy's rows added to the rows their indices picked."""
    d = np.zeros(table_shape, dy.dtype)
    np.add.at(d, np.asarray(x).astype(np.int64).ravel(), dy.reshape(-1, table_shape[1]))
    return d


# --- the recurrent layer ---------------------------------------------------------------------
def _split_bias(cell, bias, units, reset_after, dtype):
    g = GATES[cell] * units
    if bias is None:
        return np.zeros(g, dtype), np.zeros(g, dtype)
    bias = np.asarray(bias, dtype)
    if cell == "gru" and reset_after:
        return bias[0], bias[1]
    return bias, np.zeros(g, dtype)


def rnn_forward(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray,
                bias: np.ndarray | None, cell: str = "lstm", activation: str = "tanh",
                recurrent_activation: str = "sigmoid", reset_after: bool = True,
                go_backwards: bool = False, mask: np.ndarray | None = None,
                dtype: Any = np.float64, mx: np.ndarray | None = None,
                mh: np.ndarray | None = None,
                bf16: bool = False) -> tuple[np.ndarray, np.ndarray | None, list]:
    """Runs the cell over x (b, T, F). Returns (hs (b, T, u) in processing order, cs (b, T, u)
    for the lstm else None, the per-step cache the backward pass reads)."""
    x = np.asarray(x, dtype)
    W, U = np.asarray(kernel, dtype), np.asarray(recurrent, dtype)
    n, T, _ = x.shape
    u = U.shape[0]
    b_in, b_rec = _split_bias(cell, bias, u, reset_after, dtype)
    act, ract = activations.get(activation), activations.get(recurrent_activation)
    h = np.zeros((n, u), dtype)
    c = np.zeros((n, u), dtype)
    hs, cs, cache = [], [], []
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    mx = np.ones((n, x.shape[2]), dtype) if mx is None else np.asarray(mx, dtype)
    mh = np.ones((n, u), dtype) if mh is None else np.asarray(mh, dtype)
    if mh.ndim == 3 and mx.ndim == 2:   # per-gate h' masks, no input dropout
        mx = np.repeat(mx[:, None], mh.shape[1], axis=1)
    for t in order:
        xw = _gate_product(x[:, t], mx, W, bf16) + b_in
        keep = (np.ones((n, 1), bool) if mask is None
                else (np.asarray(mask)[:, t] != 0)[:, None])
        step: dict = {"t": t, "h_prev": h, "c_prev": c, "keep": keep, "mx": mx, "mh": mh}
        if cell == "simple":
            z = xw + _gate_product(h, mh, U, bf16)
            h_new = act.fn(z)
            step.update(z=z)
            c_new = c
        elif cell == "lstm":
            z = xw + _gate_product(h, mh, U, bf16)
            zi, zf, zc, zo = np.split(z, 4, axis=1)
            i, f, g, o = ract.fn(zi), ract.fn(zf), act.fn(zc), ract.fn(zo)
            c_new = f * c + i * g
            h_new = o * act.fn(c_new)
            step.update(zi=zi, zf=zf, zc=zc, zo=zo, i=i, f=f, g=g, o=o, c=c_new)
        else:
            xz, xr, xh = np.split(xw, 3, axis=1)
            if reset_after:
                rz, rr, rh = np.split(_gate_product(h, mh, U, bf16) + b_rec, 3, axis=1)
                zz, zr = xz + rz, xr + rr
                r = ract.fn(zr)
                zh = xh + r * rh
                step.update(rec=rh)
            else:
                zz, zr = np.split(xw[:, :2 * u] + _gate_product(h, mh[:, :2] if mh.ndim == 3
                                                                else mh, U[:, :2 * u], bf16),
                                  2, axis=1)
                r = ract.fn(zr)
                zh = xh + _mm(r * h * _gate_mask(mh, 2), U[:, 2 * u:], bf16)
            zg = ract.fn(zz)
            hh = act.fn(zh)
            h_new = zg * h + (1 - zg) * hh
            c_new = c
            step.update(zz=zz, zr=zr, zh=zh, z=zg, r=r, hh=hh)
        h = np.where(keep, h_new, h)
        c = np.where(keep, c_new, c)
        hs.append(h)
        cs.append(c)
        cache.append(step)
    hs_arr = np.stack(hs, axis=1)
    return hs_arr, (np.stack(cs, axis=1) if cell == "lstm" else None), cache


def rnn_backward(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray,
                 bias: np.ndarray | None, cache: list, dhs: np.ndarray,
                 dh_last: np.ndarray | None = None, dc_last: np.ndarray | None = None,
                 cell: str = "lstm", activation: str = "tanh",
                 recurrent_activation: str = "sigmoid",
                 reset_after: bool = True, bf16: bool = False) -> tuple[np.ndarray, list]:
    """Gradients from dhs (b, T, u), d loss / d h of every step in processing order, plus
    dh_last / dc_last for the final state. Returns (dx, [dkernel, drecurrent, dbias?])."""
    dtype = dhs.dtype
    x = np.asarray(x, dtype)
    W, U = np.asarray(kernel, dtype), np.asarray(recurrent, dtype)
    n, T, _ = x.shape
    u = U.shape[0]
    act, ract = activations.get(activation), activations.get(recurrent_activation)
    dW, dU = np.zeros_like(W), np.zeros_like(U)
    db_in = np.zeros(W.shape[1], dtype)
    db_rec = np.zeros(W.shape[1], dtype)
    dx = np.zeros_like(x)
    dh = np.zeros((n, u), dtype) if dh_last is None else np.array(dh_last, dtype)
    dc = np.zeros((n, u), dtype) if dc_last is None else np.array(dc_last, dtype)
    for s in range(T - 1, -1, -1):
        st = cache[s]
        t, hp, cp, keep = st["t"], st["h_prev"], st["c_prev"], st["keep"]
        mx, mh = st["mx"], st["mh"]
        dh = dh + dhs[:, s]
        # a masked step passes dh and dc through untouched
        dh_in, dc_in = np.where(keep, dh, 0), np.where(keep, dc, 0)
        dh_skip, dc_skip = np.where(keep, 0, dh), np.where(keep, 0, dc)
        if cell == "simple":
            dz = dh_in * act.grad(st["z"])
            dz_rec = dz
            dh_prev = _gate_product_grad(dz, U, mh, bf16)
            dc_prev = dc_skip
        elif cell == "lstm":
            tc = act.fn(st["c"])
            dct = dc_in + dh_in * st["o"] * act.grad(st["c"])
            dzo = dh_in * tc * ract.grad(st["zo"])
            dzi = dct * st["g"] * ract.grad(st["zi"])
            dzf = dct * cp * ract.grad(st["zf"])
            dzc = dct * st["i"] * act.grad(st["zc"])
            dz = np.concatenate([dzi, dzf, dzc, dzo], axis=1)
            dz_rec = dz
            dh_prev = _gate_product_grad(dz, U, mh, bf16)
            dc_prev = dct * st["f"] + dc_skip
        else:
            zg, r, hh = st["z"], st["r"], st["hh"]
            dzz = dh_in * (hp - hh) * ract.grad(st["zz"])
            dzh = dh_in * (1 - zg) * act.grad(st["zh"])
            dh_prev = dh_in * zg
            if reset_after:
                dzr = dzh * st["rec"] * ract.grad(st["zr"])
                dz = np.concatenate([dzz, dzr, dzh], axis=1)
                dz_rec = np.concatenate([dzz, dzr, dzh * r], axis=1)
                dh_prev = dh_prev + _gate_product_grad(dz_rec, U, mh, bf16)
            else:
                mzr, mc = (mh[:, :2] if mh.ndim == 3 else mh), _gate_mask(mh, 2)
                drh = _mm(dzh, U[:, 2 * u:].T, bf16)
                dzr = drh * hp * mc * ract.grad(st["zr"])
                dz = np.concatenate([dzz, dzr, dzh], axis=1)
                dz_rec = dz
                dh_prev = (dh_prev + drh * r * mc
                           + _gate_product_grad(dz[:, :2 * u], U[:, :2 * u], mzr, bf16))
                dU[:, 2 * u:] += _mm((r * hp * mc).T, dzh, bf16)
                dU[:, :2 * u] += _gate_weight_grad(hp, mzr, dz[:, :2 * u], bf16)
            dc_prev = dc_skip
        if not (cell == "gru" and not reset_after):
            dU += _gate_weight_grad(hp, mh, dz_rec, bf16)
        dW += _gate_weight_grad(x[:, t], mx, dz, bf16)
        db_in += dz.sum(axis=0)
        db_rec += dz_rec.sum(axis=0)
        dx[:, t] = _gate_product_grad(dz, W, mx, bf16)
        dh = dh_prev + dh_skip
        dc = dc_prev
    if bias is None:
        return dx, [dW, dU]
    if cell == "gru" and reset_after:
        return dx, [dW, dU, np.stack([db_in, db_rec])]
    return dx, [dW, dU, db_in]


def _gate_mask(m: np.ndarray, g: int) -> np.ndarray:
    """Gate g's mask: m itself when one mask (b, k) serves every gate, else m[:, g]."""
    return m if m.ndim == 2 else m[:, g]


def _mm(a: np.ndarray, b: np.ndarray, bf16: bool = False) -> np.ndarray:
    """a @ b, with both operands rounded to bfloat16 first when bf16 (the bf16 GEMM)."""
    if bf16:
        a, b = round_bf16(a).astype(a.dtype), round_bf16(b).astype(b.dtype)
    return a @ b


def _gate_product(v: np.ndarray, m: np.ndarray, M: np.ndarray, bf16: bool = False) -> np.ndarray:
    """(v m) M with one mask m (b, k), or per gate: gate g's columns of M times v m[:, g]."""
    if m.ndim == 2:
        return _mm(v * m, M, bf16)
    cols = np.split(M, m.shape[1], axis=1)
    return np.concatenate([_mm(v * m[:, g], cols[g], bf16) for g in range(m.shape[1])], axis=1)


def _gate_product_grad(dz: np.ndarray, M: np.ndarray, m: np.ndarray,
                       bf16: bool = False) -> np.ndarray:
    """d v of _gate_product: (dz M^T) m, or the sum over gates of (dz_g M_g^T) m[:, g]."""
    if m.ndim == 2:
        return _mm(dz, M.T, bf16) * m
    G = m.shape[1]
    dzs, cols = np.split(dz, G, axis=1), np.split(M, G, axis=1)
    return sum(_mm(dzs[g], cols[g].T, bf16) * m[:, g] for g in range(G))


def _gate_weight_grad(v: np.ndarray, m: np.ndarray, dz: np.ndarray,
                      bf16: bool = False) -> np.ndarray:
    """d M of _gate_product: (v m)^T dz, or per gate (v m[:, g])^T dz_g side by side."""
    if m.ndim == 2:
        return _mm((v * m).T, dz, bf16)
    G = m.shape[1]
    dzs = np.split(dz, G, axis=1)
    return np.concatenate([_mm((v * m[:, g]).T, dzs[g], bf16) for g in range(G)], axis=1)


# --- graph ops -------------------------------------------------------------------------------
def _attrs(node):
    a = node.attrs
    cell = a.get("cell", "lstm")
    return dict(cell=cell, activation=a.get("activation", "tanh"),
                recurrent_activation=a.get("recurrent_activation", "sigmoid"),
                reset_after=bool(a.get("reset_after", True)),
                bf16=a.get("compute_dtype", "float32") == "bfloat16")


def _rnn_f(node, xs, ps, run):
    a = node.attrs
    kw = _attrs(node)
    bias = ps[2] if a.get("use_bias", True) else None
    mask = xs[1] if len(xs) > 1 else None
    drop = run.dropout_masks.get(run.node_index, {}) if getattr(run, "training", False) else {}
    hs, cs, cache = rnn_forward(xs[0], ps[0], ps[1], bias, go_backwards=bool(
        a.get("go_backwards", False)), mask=mask, dtype=run.dtype, mx=drop.get("x"),
        mh=drop.get("h"), **kw)
    seqs, state = bool(a.get("return_sequences", False)), bool(a.get("return_state", False))
    out = hs
    if mask is not None and a.get("zero_output_for_mask", False):
        keep = np.asarray(mask) != 0
        keep = keep[:, ::-1] if a.get("go_backwards", False) else keep   # processing order
        out = np.where(keep[:, :, None], hs, 0.0)
    if seqs and a.get("time_order", False) and a.get("go_backwards", False):
        parts = [out[:, ::-1]]
    else:
        parts = [out if seqs else out[:, -1:]]
    if state:
        parts.append(hs[:, -1:])
        if kw["cell"] == "lstm":
            parts.append(cs[:, -1:])
    y = np.concatenate(parts, axis=1)
    if not state and not seqs:
        y = y[:, 0]
    return y, (xs, ps, bias, cache, hs.shape, seqs, state, kw, out is not hs)


def _rnn_b(node, saved, dy):
    xs, ps, bias, cache, shape, seqs, state, kw, zeroed = saved
    n, T, u = shape
    dy = dy.reshape(n, -1, u)
    dhs = np.zeros(shape, dy.dtype)
    rows = T if seqs else 1
    if seqs:
        flip = node.attrs.get("time_order", False) and node.attrs.get("go_backwards", False)
        dhs += dy[:, :T][:, ::-1] if flip else dy[:, :T]
    else:
        dhs[:, -1] += dy[:, 0]
    if zeroed:   # a zeroed output passes no gradient
        dhs = dhs * np.stack([c["keep"][:, 0] for c in cache], axis=1)[:, :, None]
    dh_last = dy[:, rows] if state else None
    dc_last = dy[:, rows + 1] if state and kw["cell"] == "lstm" else None
    dx, dps = rnn_backward(xs[0], ps[0], ps[1], bias, cache, dhs, dh_last, dc_last, **kw)
    d_inputs = [dx] + ([np.zeros_like(xs[1])] if len(xs) > 1 else [])
    return d_inputs, dps


def _embedding_f(node, xs, ps, run):
    return embedding_forward(xs[0], np.asarray(ps[0], run.dtype)), (xs[0], ps[0].shape)


def _embedding_b(node, saved, dy):
    x, shape = saved
    return [np.zeros_like(x, dtype=dy.dtype)], [embedding_backward(x, shape, dy)]


def _slice_f(node, xs, ps, run):
    b, s = node.attrs["begin"], node.attrs["size"]
    return xs[0][:, b:b + s], xs[0].shape


def _slice_b(node, shape, dy):
    b = node.attrs["begin"]
    dx = np.zeros(shape, dy.dtype)
    dx[:, b:b + dy.shape[1]] = dy
    return [dx], []


OPS = {
    "rnn": (_rnn_f, _rnn_b),
    "embedding": (_embedding_f, _embedding_b),
    "slice": (_slice_f, _slice_b),
}
