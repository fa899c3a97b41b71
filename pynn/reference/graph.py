"""Runs a whole model, a `GraphSpec`, in plain NumPy: forward, loss, and backpropagation.

The graph is a list of nodes over numbered tensors, already in topological order (every
node comes after the nodes that produce its inputs). So:

* Forward: walk the nodes in order. Each node reads the values of its input tensors and its
  parameters, computes its output tensor, and keeps what its backward step will need.
* Loss: each output with a loss compares its value with a target; the total is the weighted
  sum of those losses plus the L1/L2 penalties of the trainable parameters.
* Backward: start from d total / d output for every output and walk the nodes in reverse.
  Each node turns the gradient of its output into gradients of its inputs and parameters
  (the chain rule, one op at a time). When a tensor feeds several nodes, or one parameter is
  used by several nodes (a layer called twice), the contributions simply add up:
  ``grad[t] += contribution``. A node whose output nothing depends on is skipped.

Shapes: every tensor is an array (batch, *spec.shapes[t]); parameters are read from
``spec.params[i].value`` and converted to `dtype` (float64 by default) without ever being
written. The numbers the ops compute come from the other twins: `dense`, `activations`,
`regularization` (dropout, batch normalisation, L1/L2), `losses`, and `merging`.

Randomness: dropout in training multiplies by the mask given for its node in
`dropout_masks` (node index -> array shaped like the tensor) and is the identity when none
is given; rrelu in training uses the slopes given in `rrelu_slopes` (node index -> array of
the tensor's shape) and otherwise its inference form (the mean slope). The executor never
draws random numbers itself, so a run is reproducible and comparable with the core.

Batch normalisation in training normalises with the batch statistics (rows = batch times the
product of all but the last axis) and reports the moving statistics Keras would store in
``cache.moving_stats`` (param id -> new array); the ParamRef arrays are left unchanged. A
frozen batch norm (its layer has trainable=False, seen through ``ParamRef.owner.layer``, or
the node has ``attrs["frozen"]`` true) runs in inference mode even in training, as in Keras.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pynn.reference import activations, bf16, dense, merging, regularization
from pynn.reference import losses as ref_losses


# --- the result of a forward pass ------------------------------------------------------------
@dataclass
class Cache:
    """What a forward pass leaves for the backward pass (and for the curious)."""

    values: dict                        # tensor id -> its value (batch, *shape)
    saved: list                         # node index -> what that node's backward needs
    training: bool = False
    dtype: type = np.float64            # the float type the pass ran in
    moving_stats: dict = field(default_factory=dict)  # param id -> updated moving mean / var


@dataclass
class _Run:
    """The settings of one forward pass, handed to every op."""

    training: bool
    dtype: type
    dropout_masks: dict
    rrelu_slopes: dict
    moving_stats: dict
    params: list                        # param id -> value converted to dtype
    refs: list                          # param id -> its ParamRef (for flags)
    node_index: int = -1


# --- activations -----------------------------------------------------------------------------
def _activation(name, act_params=()):
    """The twin's activation object for a name and the core's ordered parameter list."""
    param_names = activations.get(name).param_names
    return activations.get(name, **dict(zip(param_names, act_params)))


def _activation_forward(act, z):
    return act.fn(z)


def _activation_backward(act, z, dy):
    """d loss / d z: softmax couples a row (vector-Jacobian product), the others are
    element-wise (dy * f'(z))."""
    if act.name == "softmax":
        return act.vjp(z, dy)
    return dy * act.grad(z)


# --- the ops: forward(node, xs, ps, run) -> (y, saved); backward(node, saved, dy) ->
# --- (gradients of the inputs, gradients of the params, one per node.params entry or None)
def _dense_forward(node, xs, ps, run):
    """x (b, ..., in) -> (b, ..., units): the dense twin on the rows of the last axis."""
    x = xs[0]
    W = ps[0]
    b = ps[1] if node.attrs.get("use_bias", True) else None
    rows = x.reshape(-1, x.shape[-1])
    if node.attrs.get("compute_dtype", "float32") == "bfloat16":
        # mixed precision: the products see bf16-rounded operands (pynn.reference.bf16)
        rows, W = bf16.round_bf16(rows), bf16.round_bf16(W)
    _, z = dense.dense_forward(rows, W, b, "linear", dtype=run.dtype)   # z = x W + b
    act = _activation(node.attrs.get("activation", "linear"), node.attrs.get("act_params", ()))
    y = _activation_forward(act, z)
    return y.reshape(x.shape[:-1] + (W.shape[1],)), (x, rows, W, z, act, b is not None)


def _dense_backward(node, saved, dy):
    x, rows, W, z, act, has_bias = saved
    dz = _activation_backward(act, z, dy.reshape(z.shape))
    if node.attrs.get("compute_dtype", "float32") == "bfloat16":
        dx, dW, db = dense.dense_backward(rows, W, z, bf16.round_bf16(dz), "linear",
                                          dtype=z.dtype)
        db = dz.sum(axis=0)  # the bias gradient is summed from the unrounded dz
    else:
        dx, dW, db = dense.dense_backward(rows, W, z, dz, "linear", dtype=z.dtype)
    d_params = [dW, db] if has_bias else [dW]
    return [dx.reshape(x.shape)], d_params


def _activation_op_forward(node, xs, ps, run):
    x = xs[0]
    act = _activation(node.attrs.get("activation", "linear"), node.attrs.get("act_params", ()))
    slopes = run.rrelu_slopes.get(run.node_index)
    if act.name == "rrelu" and run.training and slopes is not None:
        return act.fn_train(x, slopes), (x, act, slopes)
    return _activation_forward(act, x), (x, act, None)


def _activation_op_backward(node, saved, dy):
    x, act, slopes = saved
    if slopes is not None:
        return [dy * act.grad_train(x, slopes)], []
    return [_activation_backward(act, x, dy)], []


def _dropout_forward(node, xs, ps, run):
    mask = run.dropout_masks.get(run.node_index) if run.training else None
    if mask is None:
        return xs[0], None
    mask = np.asarray(mask, dtype=run.dtype)
    return regularization.dropout_forward(xs[0], mask), mask


def _dropout_backward(node, mask, dy):
    if mask is None:
        return [dy], []
    return [regularization.dropout_backward(dy, mask)], []


def _batchnorm_params(node, ps):
    """(gamma, beta, moving_mean, moving_var) from the node's params, in Keras's weight order:
    gamma is there only with scale, beta only with center (None when absent)."""
    scale, center = node.attrs.get("scale", True), node.attrs.get("center", True)
    if len(ps) != 2 + scale + center:
        raise ValueError(f"{node.name or 'batchnorm'}: expected {2 + scale + center} params "
                         f"(scale={scale}, center={center}), got {len(ps)}")
    i = 0
    gamma = beta = None
    if scale:
        gamma, i = ps[i], i + 1
    if center:
        beta, i = ps[i], i + 1
    return gamma, beta, ps[i], ps[i + 1]


def _layer_is_frozen(refs):
    """True when every param comes from a layer set to trainable=False (ParamRef.owner is the
    layer's Weight, and the Weight knows its layer)."""
    layers = [getattr(r.owner, "layer", None) for r in refs]
    return bool(layers) and all(layer is not None and not getattr(layer, "trainable", True)
                                for layer in layers)


def _batchnorm_forward(node, xs, ps, run):
    """Normalises over the last axis; the rows are every other position of every sample."""
    x = xs[0]
    c = x.shape[-1]
    rows = x.reshape(-1, c)
    gamma, beta, mean, var = _batchnorm_params(node, ps)
    gamma = np.ones(c, run.dtype) if gamma is None else gamma
    beta = np.zeros(c, run.dtype) if beta is None else beta
    eps = node.attrs.get("epsilon", 1e-3)
    momentum = node.attrs.get("momentum", 0.99)
    frozen = node.attrs.get("frozen", False) or _layer_is_frozen([run.refs[p] for p in node.params])
    use_batch = run.training and not frozen
    if use_batch:
        # A layer called twice updates its moving statistics twice, the second time
        # starting from the first update.
        mean_id, var_id = node.params[-2], node.params[-1]
        old_mean = run.moving_stats.get(mean_id, mean)
        old_var = run.moving_stats.get(var_id, var)
        if len(xs) > 1:   # a mask: the statistics of the kept rows only
            y, xhat, inv_std, new_mean, new_var = masked_batchnorm_forward_train(
                rows, xs[1], gamma, beta, old_mean, old_var, momentum, eps)
        else:
            y, xhat, inv_std, new_mean, new_var = regularization.batchnorm_forward_train(
                rows, gamma, beta, old_mean, old_var, momentum, eps, dtype=run.dtype)
        run.moving_stats[mean_id] = new_mean
        run.moving_stats[var_id] = new_var
    else:
        y = regularization.batchnorm_forward_infer(rows, gamma, beta, mean, var, eps,
                                                   dtype=run.dtype)
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat = (rows - mean) * inv_std
    mask = None if len(xs) < 2 else np.asarray(xs[1])
    return y.reshape(x.shape), (x.shape, xhat, inv_std, gamma, use_batch, mask)


def masked_batchnorm_forward_train(rows, mask, gamma, beta, moving_mean, moving_var, momentum,
                                   eps):
    """Batch normalisation in training with a mask over the rows (nonzero = kept), as Keras:
    mean and variance over the kept rows, each divided by (kept + 1e-7); every row is then
    normalised. Returns (y, xhat, inv_std, new moving mean, new moving variance)."""
    keep = (np.asarray(mask).reshape(-1) != 0)[:, None]
    denom = keep.sum() + 1e-7
    mean = np.where(keep, rows, 0.0).sum(axis=0) / denom
    var = np.where(keep, (rows - mean) ** 2, 0.0).sum(axis=0) / denom
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (rows - mean) * inv_std
    return (gamma * xhat + beta, xhat, inv_std, momentum * moving_mean + (1 - momentum) * mean,
            momentum * moving_var + (1 - momentum) * var)


def masked_batchnorm_backward(dy, xhat, inv_std, keep, gamma):
    """(dx, dgamma, dbeta) of `masked_batchnorm_forward_train`: a kept row weighs
    w = 1 / (kept + 1e-7) in the statistics, a masked row 0."""
    w = np.where(keep, 1.0 / (keep.sum() + 1e-7), 0.0)[:, None]
    g = dy * gamma
    d = xhat / inv_std
    dvar = -0.5 * inv_std ** 2 * (g * xhat).sum(axis=0)
    dmean = -inv_std * g.sum(axis=0) - 2.0 * dvar * (w * d).sum(axis=0)
    dx = g * inv_std + 2.0 * dvar * w * d + dmean * w
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _batchnorm_backward(node, saved, dy):
    shape, xhat, inv_std, gamma, use_batch, mask = saved
    rows_dy = dy.reshape(xhat.shape)
    if use_batch and mask is not None:
        dx, dgamma, dbeta = masked_batchnorm_backward(rows_dy, xhat, inv_std,
                                                      mask.reshape(-1) != 0, gamma)
    elif use_batch:
        dx, dgamma, dbeta = regularization.batchnorm_backward(rows_dy, xhat, inv_std, gamma,
                                                              dtype=xhat.dtype)
    else:
        # With fixed statistics the layer is affine per column: y = gamma xhat + beta.
        dx = rows_dy * gamma * inv_std
        dgamma = (rows_dy * xhat).sum(axis=0)
        dbeta = rows_dy.sum(axis=0)
    d_params = []
    if node.attrs.get("scale", True):
        d_params.append(dgamma)
    if node.attrs.get("center", True):
        d_params.append(dbeta)
    # the mask gets no gradient
    no_grad = [] if mask is None else [np.zeros_like(mask)]
    return [dx.reshape(shape)] + no_grad, d_params + [None, None]


def _prelu_forward(node, xs, ps, run):
    """y = x where x > 0, else alpha * x; alpha has the shape of one sample."""
    act = activations.PReLU(ps[0])
    return act.fn(xs[0]), (xs[0], act)


def _prelu_backward(node, saved, dy):
    x, act = saved
    return [dy * act.grad(x)], [act.grad_alpha(x, dy)]   # grad_alpha sums over the batch


def _merge_forward(node, xs, ps, run):
    return merging.merge_forward(node.op, xs), xs


def _merge_backward(node, xs, dy):
    return merging.merge_backward(node.op, xs, dy), []


def _concatenate_forward(node, xs, ps, run):
    axis = node.attrs.get("axis", -1)
    return merging.concatenate_forward(xs, axis), (xs, axis)


def _concatenate_backward(node, saved, dy):
    xs, axis = saved
    return merging.concatenate_backward(xs, dy, axis), []


def _reshape_forward(node, xs, ps, run):
    x = xs[0]
    if node.op == "reshape":
        y = merging.reshape_forward(x, node.attrs["target_shape"])
    elif node.op == "flatten":
        y = merging.flatten_forward(x)
    else:
        y = merging.identity_forward(x)
    return y, x


def _reshape_backward(node, x, dy):
    return [merging.reshape_backward(x, dy)], []


def _permute_forward(node, xs, ps, run):
    return merging.permute_forward(xs[0], node.attrs["dims"]), None


def _permute_backward(node, saved, dy):
    return [merging.permute_backward(dy, node.attrs["dims"])], []


def _repeat_vector_forward(node, xs, ps, run):
    return merging.repeat_vector_forward(xs[0], node.attrs["n"]), None


def _repeat_vector_backward(node, saved, dy):
    return [merging.repeat_vector_backward(dy)], []


def _dot_forward(node, xs, ps, run):
    axes, normalize = node.attrs["axes"], node.attrs.get("normalize", False)
    return merging.dot_forward(xs[0], xs[1], axes, normalize), (xs[0], xs[1])


def _dot_backward(node, saved, dy):
    x, y = saved
    axes, normalize = node.attrs["axes"], node.attrs.get("normalize", False)
    return list(merging.dot_backward(x, y, dy, axes, normalize)), []


OPS = {
    "dense": (_dense_forward, _dense_backward),
    "activation": (_activation_op_forward, _activation_op_backward),
    "dropout": (_dropout_forward, _dropout_backward),
    "batchnorm": (_batchnorm_forward, _batchnorm_backward),
    "prelu": (_prelu_forward, _prelu_backward),
    **{op: (_merge_forward, _merge_backward) for op in merging.MERGE_OPS},
    "concatenate": (_concatenate_forward, _concatenate_backward),
    "reshape": (_reshape_forward, _reshape_backward),
    "flatten": (_reshape_forward, _reshape_backward),
    "identity": (_reshape_forward, _reshape_backward),
    "permute": (_permute_forward, _permute_backward),
    "repeat_vector": (_repeat_vector_forward, _repeat_vector_backward),
    "dot": (_dot_forward, _dot_backward),
}


# --- forward ---------------------------------------------------------------------------------
def forward(spec, xs, training=False, dtype=np.float64, dropout_masks=None, rrelu_slopes=None):
    """Runs the graph on the inputs `xs` (one array (batch, *input_shape) per spec.inputs).

    Returns ``(outputs, cache)``: one array per spec.outputs, and the `Cache` the backward
    pass reads (tensor values, each node's saved state, updated moving statistics).
    """
    if len(xs) != len(spec.inputs):
        raise ValueError(f"expected {len(spec.inputs)} input arrays, got {len(xs)}")
    values = {}
    batch = None
    for tid, x in zip(spec.inputs, xs):
        x = np.asarray(x, dtype=dtype)
        if x.shape[1:] != spec.shapes[tid] or (batch is not None and x.shape[0] != batch):
            raise ValueError(f"input tensor {tid}: expected shape (batch, *{spec.shapes[tid]}) "
                             f"with one batch size for all inputs, got {x.shape}")
        batch = x.shape[0]
        values[tid] = x
    run = _Run(training=training, dtype=dtype, dropout_masks=dict(dropout_masks or {}),
               rrelu_slopes=dict(rrelu_slopes or {}), moving_stats={},
               params=[np.asarray(p.value, dtype=dtype) for p in spec.params],
               refs=list(spec.params))
    saved = []
    for i, node in enumerate(spec.nodes):
        if node.op not in OPS:
            raise ValueError(f"{node.name or node.op}: unknown op {node.op!r}")
        if len(node.outputs) != 1:
            raise ValueError(f"{node.name or node.op}: expected one output, got {node.outputs}")
        run.node_index = i
        op_forward = OPS[node.op][0]
        y, keep = op_forward(node, [values[t] for t in node.inputs],
                             [run.params[p] for p in node.params], run)
        out = node.outputs[0]
        if y.shape[1:] != spec.shapes[out]:
            raise ValueError(f"{node.name or node.op}: {node.op} gave samples of shape "
                             f"{y.shape[1:]}, the spec says {spec.shapes[out]}")
        values[out] = y
        saved.append(keep)
    outputs = [values[t] for t in spec.outputs]
    return outputs, Cache(values, saved, training, dtype, run.moving_stats)


def predict(spec, xs, dtype=np.float64):
    """The outputs in inference mode (dropout off, batch norm on its moving statistics)."""
    return forward(spec, xs, training=False, dtype=dtype)[0]


# --- loss ------------------------------------------------------------------------------------
def _per_output_weights(sample_weights, n_outputs):
    """A list (one per output) or one array for every output -> a list."""
    if sample_weights is None:
        return [None] * n_outputs
    if isinstance(sample_weights, (list, tuple)):
        if len(sample_weights) != n_outputs:
            raise ValueError(f"sample_weights: expected one entry per output ({n_outputs}), "
                             f"got {len(sample_weights)}")
        return list(sample_weights)
    return [sample_weights] * n_outputs


def masked_row_weights(mask, sample_weight, dtype=np.float64, rescale=True):
    """Per-row loss weights for a masked output (Keras's apply_mask, mean reductions): a kept
    row (mask != 0) weighs its sample weight (1 without) times rows / kept rows, a masked row
    0; nothing kept: all 0. Without `rescale` (the "sum" reduction) a kept row weighs its
    sample weight. mask: (rows,); sample_weight: (rows,) or None."""
    keep = np.asarray(mask).reshape(-1) != 0
    kept = int(keep.sum())
    scale = 1.0 if not rescale else keep.size / kept if kept else 0.0
    w = np.where(keep, scale, 0.0).astype(dtype)
    return w if sample_weight is None else w * np.asarray(sample_weight, dtype=dtype)


def _output_loss(pred, target, kind, from_logits, delta, sample_weight, mask=None,
                 rescale=True):
    """One output's loss and d loss / d pred, with pred (batch, *shape).

    The loss acts on the last axis; any axes between the batch and the last one become more
    rows, each with its sample's weight, and Keras's sum_over_batch_size divides by all rows.
    """
    c = pred.shape[-1]
    rows = pred.reshape(-1, c)
    per_sample = rows.shape[0] // max(pred.shape[0], 1)
    if kind == "sparse_categorical_crossentropy":
        target = np.asarray(target).reshape(-1)
    else:
        target = np.asarray(target, dtype=pred.dtype).reshape(rows.shape)
    w = None
    if sample_weight is not None:
        w = np.repeat(np.asarray(sample_weight, dtype=pred.dtype).reshape(-1), per_sample)
    if mask is not None:
        w = masked_row_weights(mask, w, pred.dtype, rescale)
    value, grad = ref_losses.value_and_grad(kind, rows, target, w, from_logits,
                                            1.0 if delta is None else delta)
    return value, grad.reshape(pred.shape)


def _loss_and_output_grads(spec, outputs, targets, losses, sample_weights):
    """(total, per-output losses, d total / d output for each output or None)."""
    n = len(spec.outputs)
    if not (len(outputs) == len(targets) == len(losses) == n):
        raise ValueError(f"expected {n} outputs, targets and losses, got {len(outputs)}, "
                         f"{len(targets)} and {len(losses)}")
    weights = _per_output_weights(sample_weights, n)
    total, per_output, output_grads = 0.0, [], []
    for pred, target, spec_loss, sw in zip(outputs, targets, losses, weights):
        if spec_loss is None:
            per_output.append(None)
            output_grads.append(None)
            continue
        kind, from_logits, delta, weight = spec_loss[:4]
        weight = 1.0 if weight is None else weight
        # a fifth entry: the index of the output holding this loss's mask; a sixth: rescale
        mask = outputs[spec_loss[4]] if len(spec_loss) > 4 and spec_loss[4] is not None else None
        rescale = bool(spec_loss[5]) if len(spec_loss) > 5 else True
        value, grad = _output_loss(np.asarray(pred), target, kind, from_logits, delta, sw, mask,
                                   rescale)
        total += weight * value
        per_output.append(value)
        output_grads.append(weight * grad)
    penalty, _ = _penalties(spec)
    return total + penalty, per_output, output_grads


def _penalties(spec, dtype=np.float64):
    """(sum of the L1/L2 penalties of the trainable params, {param id: its gradient})."""
    value, grads = 0.0, {}
    for pid, p in enumerate(spec.params):
        if p.trainable and (p.l1 or p.l2):
            v, g = regularization.l1_l2_penalty(p.value, p.l1, p.l2, dtype=dtype)
            value += float(v)
            grads[pid] = g
    return value, grads


def loss(spec, outputs, targets, losses, sample_weights=None):
    """``(total, per_output)`` for the model outputs `outputs` (as `forward` returns them).

    losses: one per output, None (no loss) or ``(kind, from_logits, delta, weight)``, with
    an optional fifth entry: the index of another output holding a mask for this loss's rows
    (nonzero = kept; see `masked_row_weights`), and a sixth: rescale (default True).
    targets: one per output: an array like the output, or integer labels (batch, *shape[:-1])
    for sparse_categorical_crossentropy; None where there is no loss.
    sample_weights: None, one (batch,) array for every output, or a list with one per output.
    total = sum_j weight_j * loss_j + the L1/L2 penalties of the trainable params;
    per_output holds the unweighted loss_j (None where there is no loss).
    """
    total, per_output, _ = _loss_and_output_grads(spec, outputs, targets, losses, sample_weights)
    return total, per_output


# --- backward --------------------------------------------------------------------------------
def backward(spec, cache, output_grads):
    """Backpropagation from d loss / d output (one array or None per spec.outputs).

    Returns ``(param_grads, input_grads)``: one gradient per spec.params entry (None for a
    non-trainable param; zeros for a trainable one nothing depends on), one per spec.inputs.
    Penalties are not included here (see `gradients`).
    """
    grads = {}                                   # tensor id -> d loss / d tensor

    def add_to(table, key, g):
        table[key] = g if table.get(key) is None else table[key] + g

    for tid, g in zip(spec.outputs, output_grads):
        if g is not None:
            add_to(grads, tid, np.asarray(g))
    param_grads = {}
    for i in reversed(range(len(spec.nodes))):
        node = spec.nodes[i]
        dy = grads.get(node.outputs[0])
        if dy is None and cache.training and node.op == "activity_regularization" and (
                node.attrs.get("l1", 0.0) > 0 or node.attrs.get("l2", 0.0) > 0):
            # its penalty is part of the loss even when nothing reads the output (an unused
            # state of a recurrent layer with an activity_regularizer, as Keras counts it)
            dy = np.zeros_like(cache.values[node.outputs[0]])
        if dy is None:
            continue                             # nothing downstream uses this node
        op_backward = OPS[node.op][1]
        d_inputs, d_params = op_backward(node, cache.saved[i], dy)
        for tid, g in zip(node.inputs, d_inputs):
            add_to(grads, tid, g)
        for pid, g in zip(node.params, d_params):
            if g is not None and spec.params[pid].trainable:
                add_to(param_grads, pid, g)
    out_params = []
    for pid, p in enumerate(spec.params):
        if not p.trainable:
            out_params.append(None)
        else:
            g = param_grads.get(pid)
            out_params.append(np.zeros(np.shape(p.value), cache.dtype) if g is None else g)
    input_grads = [grads[t] if t in grads else np.zeros_like(cache.values[t])
                   for t in spec.inputs]
    return out_params, input_grads


def gradients(spec, xs, targets, losses, sample_weights=None, training=True, dtype=np.float64,
              dropout_masks=None, rrelu_slopes=None):
    """Forward, loss and backward in one call.

    Returns ``(total_loss, per_output_losses, param_grads, input_grads)``: param_grads has one
    entry per spec.params (d total / d param, penalties included; None for non-trainable
    params) and input_grads one per spec.inputs. Arguments as in `forward` and `loss`.
    """
    outputs, cache = forward(spec, xs, training=training, dtype=dtype,
                             dropout_masks=dropout_masks, rrelu_slopes=rrelu_slopes)
    total, per_output, output_grads = _loss_and_output_grads(spec, outputs, targets, losses,
                                                             sample_weights)
    param_grads, input_grads = backward(spec, cache, output_grads)
    _, penalty_grads = _penalties(spec, dtype=dtype)
    for pid, g in penalty_grads.items():
        param_grads[pid] = param_grads[pid] + g
    return total, per_output, param_grads, input_grads


# --- the ops of pynn.ops (unary, binary, reduce, matmul, where, ...): their twins live in
# --- pynn/reference/ops.py, which owns this entry.
from pynn.reference import ops as _pynn_ops  # noqa: E402

OPS.update(_pynn_ops.OPS)

# --- convolution and pooling: their twins live in pynn/reference/conv.py.
from pynn.reference import conv as _conv  # noqa: E402

OPS.update(_conv.OPS)

# --- embedding, the recurrent layers and slice: their twins live in pynn/reference/rnn.py.
from pynn.reference import rnn as _rnn  # noqa: E402

OPS.update(_rnn.OPS)

# --- layer/group normalisation and the noise layers: pynn/reference/normalization.py.
from pynn.reference import normalization as _normalization  # noqa: E402

OPS.update(_normalization.OPS)

# --- pad_crop (ZeroPadding and Cropping layers): its twin lives in pynn/reference/pad_crop.py.
from pynn.reference import pad_crop as _pad_crop  # noqa: E402

OPS.update(_pad_crop.OPS)

# --- conv_transpose (Conv1DTranspose, Conv2DTranspose): pynn/reference/conv_transpose.py.
from pynn.reference import conv_transpose as _conv_transpose  # noqa: E402

OPS.update(_conv_transpose.OPS)

# --- image_augment (RandomFlip/Translation/Rotation/Zoom): pynn/reference/augment.py.
from pynn.reference import augment as _augment  # noqa: E402

OPS.update(_augment.OPS)
