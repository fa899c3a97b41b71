"""The NumPy merge and shape ops against float64 central finite differences and their
definitions (before the graph executor builds on them).

Tolerance: central differences with h = 1e-6 in float64 err by about h^2 f''' (~1e-12) plus
rounding 1e-16 |f| / h (~1e-10 for |f| ~ 1), so rtol 1e-6 with atol 1e-8 leaves a wide
margin while still catching any wrong term. The kinks of maximum / minimum (ties) are kept
at least 0.3 apart by construction; the tie rule itself is tested exactly, without
differences.
"""
import itertools
import zlib

import numpy as np
import pytest
from test_ref_dense import numeric_grad

from pynn.reference import merging

RTOL, ATOL = 1e-6, 1e-8


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _check(forward, backward, arrays, rng):
    """backward(R) against differences of sum(R * forward()) for every array (in place)."""
    R = rng.standard_normal(np.shape(forward()))

    def f():
        return float((R * forward()).sum())

    grads = backward(R)
    assert len(grads) == len(arrays)
    for g, a in zip(grads, arrays):
        assert g.shape == a.shape
        np.testing.assert_allclose(g, numeric_grad(f, a), rtol=RTOL, atol=ATOL)


def _separated(rng, shape, n):
    """n arrays whose values differ by at least 0.3 at every position (no max/min ties)."""
    base = rng.standard_normal(shape)
    offsets = np.stack([rng.permutation(n) for _ in range(int(np.prod(shape)))], axis=-1)
    return [base + 0.3 * offsets[i].reshape(shape) + 0.05 * rng.random(shape) for i in range(n)]


SHAPES = [(1, 1), (3, 4), (2, 1, 3), (4, 2, 5), (1, 3, 1)]


MERGE_CASES = [(op, n) for op in merging.MERGE_OPS for n in (1, 2, 3)
               if op != "subtract" or n == 2]  # subtract takes exactly two inputs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op,n", MERGE_CASES)
def test_merge_backward_matches_finite_differences(op, n, shape):
    rng = _rng(op, n, shape)
    xs = _separated(rng, shape, n) if op in ("maximum", "minimum") else \
        [rng.standard_normal(shape) for _ in range(n)]
    _check(lambda: merging.merge_forward(op, xs),
           lambda dy: merging.merge_backward(op, xs, dy), xs, rng)


def test_merge_forward_values():
    a = np.array([[1.0, -2.0, 3.0]])
    b = np.array([[0.5, 4.0, -1.0]])
    c = np.array([[2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(merging.merge_forward("add", [a, b, c]), [[3.5, 2.0, 3.0]])
    np.testing.assert_array_equal(merging.merge_forward("subtract", [a, b]), [[0.5, -6.0, 4.0]])
    np.testing.assert_array_equal(merging.merge_forward("multiply", [a, b, c]),
                                  [[1.0, -0.0, -3.0]])
    np.testing.assert_allclose(merging.merge_forward("average", [a, b, c]),
                               [[3.5 / 3, 2 / 3, 1.0]], rtol=1e-15)
    np.testing.assert_array_equal(merging.merge_forward("maximum", [a, b, c]), [[2.0, 4.0, 3.0]])
    np.testing.assert_array_equal(merging.merge_forward("minimum", [a, b, c]),
                                  [[0.5, -2.0, -1.0]])


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_max_min_ties_send_the_gradient_to_the_first_input_only(op):
    a = np.array([[1.0, 2.0, 5.0, -1.0]])
    b = np.array([[1.0, 3.0, 5.0, -1.0]])
    c = np.array([[0.0, 3.0, 5.0, -1.0]])
    dy = np.array([[10.0, 20.0, 30.0, 40.0]])
    da, db, dc = merging.merge_backward(op, [a, b, c], dy)
    if op == "maximum":
        # col 0: a, b tie at the max -> a; col 1: b, c tie -> b; col 2, 3: all tie -> a
        np.testing.assert_array_equal(da, [[10.0, 0.0, 30.0, 40.0]])
        np.testing.assert_array_equal(db, [[0.0, 20.0, 0.0, 0.0]])
        np.testing.assert_array_equal(dc, [[0.0, 0.0, 0.0, 0.0]])
    else:
        # col 0: c is the min; col 1: a; col 2, 3: all tie -> a
        np.testing.assert_array_equal(da, [[0.0, 20.0, 30.0, 40.0]])
        np.testing.assert_array_equal(db, [[0.0, 0.0, 0.0, 0.0]])
        np.testing.assert_array_equal(dc, [[10.0, 0.0, 0.0, 0.0]])
    # whatever the ties, the gradient is conserved: every dy element goes to exactly one input
    np.testing.assert_array_equal(da + db + dc, dy)


def test_multiply_backward_with_a_zero_input():
    a = np.array([[0.0, 2.0]])
    b = np.array([[3.0, 0.0]])
    c = np.array([[4.0, 5.0]])
    da, db, dc = merging.merge_backward("multiply", [a, b, c], np.ones((1, 2)))
    np.testing.assert_array_equal(da, [[12.0, 0.0]])
    np.testing.assert_array_equal(db, [[0.0, 10.0]])
    np.testing.assert_array_equal(dc, [[0.0, 0.0]])


def test_merge_refuses_bad_inputs():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="exactly 2"):
        merging.merge_forward("subtract", [a, a, a])
    with pytest.raises(ValueError, match="one shape"):
        merging.merge_forward("add", [a, np.zeros((2, 4))])
    with pytest.raises(ValueError, match="unknown merge"):
        merging.merge_forward("concat", [a, a])


@pytest.mark.parametrize("sample,axis,widths", [
    ((3,), 1, [1, 4, 2]), ((3,), -1, [2, 2]), ((2, 3), 1, [1, 3]), ((2, 3), 2, [1, 1, 5]),
    ((2, 3), -1, [4, 1]), ((2, 3), -2, [2, 1]), ((1, 2, 1), 3, [1, 2]), ((4,), 1, [4])])
@pytest.mark.parametrize("batch", [1, 3])
def test_concatenate_backward_matches_finite_differences(sample, axis, widths, batch):
    rng = _rng("concat", sample, axis, widths, batch)
    ax = merging.sample_axis(axis, len(sample) + 1) - 1
    xs = []
    for w in widths:
        s = list(sample)
        s[ax] = w
        xs.append(rng.standard_normal((batch, *s)))
    y = merging.concatenate_forward(xs, axis)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=ax + 1))
    _check(lambda: merging.concatenate_forward(xs, axis),
           lambda dy: merging.concatenate_backward(xs, dy, axis), xs, rng)


def test_sample_axis_numbering():
    assert merging.sample_axis(1, 3) == 1
    assert merging.sample_axis(-1, 3) == 2
    assert merging.sample_axis(-2, 3) == 1
    for bad in (0, 3, -3):
        with pytest.raises(ValueError, match="per-sample axis"):
            merging.sample_axis(bad, 3)


@pytest.mark.parametrize("sample,target", [((6,), (2, 3)), ((2, 3), (3, 2)), ((1, 4), (4,)),
                                           ((2, 1, 3), (1, 6, 1)), ((1,), (1, 1))])
def test_reshape_flatten_identity(sample, target):
    rng = _rng("reshape", sample, target)
    x = rng.standard_normal((3, *sample))
    y = merging.reshape_forward(x, target)
    assert y.shape == (3, *target)
    np.testing.assert_array_equal(y.ravel(), x.ravel())  # the same numbers in the same order
    _check(lambda: merging.reshape_forward(x, target),
           lambda dy: [merging.reshape_backward(x, dy)], [x], rng)
    f = merging.flatten_forward(x)
    assert f.shape == (3, int(np.prod(sample)))
    _check(lambda: merging.flatten_forward(x),
           lambda dy: [merging.flatten_backward(x, dy)], [x], rng)
    np.testing.assert_array_equal(merging.identity_forward(x), x)
    _check(lambda: merging.identity_forward(x),
           lambda dy: [merging.identity_backward(x, dy)], [x], rng)
    with pytest.raises(ValueError, match="cannot reshape"):
        merging.reshape_forward(x, (int(np.prod(sample)) + 1,))


@pytest.mark.parametrize("sample", [(3, 4), (1, 5), (2, 3, 4), (2, 1, 3), (5,)])
def test_permute_every_order(sample):
    rng = _rng("permute", sample)
    x = rng.standard_normal((2, *sample))
    for dims in itertools.permutations(range(1, len(sample) + 1)):
        y = merging.permute_forward(x, dims)
        assert y.shape == (2, *[sample[d - 1] for d in dims])
        # definition: y[b, i_1, ..., i_k] = x[b, j] with j[dims[m] - 1] = i_m
        for idx in np.ndindex(y.shape):
            src = [0] * len(sample)
            for m, d in enumerate(dims):
                src[d - 1] = idx[1 + m]
            assert y[idx] == x[(idx[0], *src)]
        _check(lambda: merging.permute_forward(x, dims),  # noqa: B023 - called before the loop moves on
               lambda dy: [merging.permute_backward(dy, dims)], [x], rng)  # noqa: B023
    with pytest.raises(ValueError, match="permutation"):
        merging.permute_forward(x, (0,) + tuple(range(1, len(sample))))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 1)])
def test_repeat_vector(n, shape):
    rng = _rng("repeat", n, shape)
    x = rng.standard_normal(shape)
    y = merging.repeat_vector_forward(x, n)
    assert y.shape == (shape[0], n, shape[1])
    for k in range(n):
        np.testing.assert_array_equal(y[:, k, :], x)
    _check(lambda: merging.repeat_vector_forward(x, n),
           lambda dy: [merging.repeat_vector_backward(dy)], [x], rng)


# dot cases: x sample shape, y sample shape, axes, expected output sample shape
DOT_CASES = [
    ((4,), (4,), 1, (1,)),
    ((1,), (1,), -1, (1,)),
    ((3, 4), (4, 2), (2, 1), (3, 2)),
    ((4, 3), (4, 2), 1, (3, 2)),
    ((3, 4), (2, 4), 2, (3, 2)),
    ((3, 4), (2, 4), -1, (3, 2)),
    ((4, 3), (2, 4), (1, 2), (3, 2)),
    ((1, 4), (4, 1), (2, 1), (1, 1)),
    ((4, 3), (4,), (1, 1), (3,)),
    ((4,), (4, 3), (1, 1), (3,)),
    ((4,), (2, 4), (1, 2), (2,)),
]


def _dot_by_definition(x, y, ax, ay, normalize):
    """sum_k x[.., k, ..] y[.., k, ..] one sample and one output element at a time."""
    if normalize:
        x = x / np.sqrt((x * x).sum(axis=ax, keepdims=True))
        y = y / np.sqrt((y * y).sum(axis=ay, keepdims=True))
    out = []
    for b in range(x.shape[0]):
        xb = np.moveaxis(x[b], ax - 1, -1)   # (..., k)
        yb = np.moveaxis(y[b], ay - 1, 0)    # (k, ...)
        res = np.zeros(xb.shape[:-1] + yb.shape[1:])
        for i in np.ndindex(xb.shape[:-1]):
            for j in np.ndindex(yb.shape[1:]):
                res[i + j] = sum(xb[i + (k,)] * yb[(k,) + j] for k in range(xb.shape[-1]))
        out.append(res.reshape(-1) if res.ndim else res.reshape(1))
    return np.stack(out)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("xs,ys,axes,out", DOT_CASES)
def test_dot_forward_and_backward(xs, ys, axes, out, normalize):
    rng = _rng("dot", xs, ys, axes, normalize)
    x = rng.standard_normal((3, *xs))
    y = rng.standard_normal((3, *ys))
    z = merging.dot_forward(x, y, axes, normalize)
    assert z.shape == (3, *out)
    ax, ay = merging.dot_axes(axes, x.ndim, y.ndim)
    np.testing.assert_allclose(z.reshape(3, -1), _dot_by_definition(x, y, ax, ay, normalize),
                               rtol=1e-12, atol=1e-14)
    _check(lambda: merging.dot_forward(x, y, axes, normalize),
           lambda d: list(merging.dot_backward(x, y, d, axes, normalize)), [x, y], rng)


def test_dot_normalize_is_cosine_and_keras_shapes():
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    y = np.array([[4.0, 3.0], [0.0, 2.0]])
    np.testing.assert_allclose(merging.dot_forward(x, y, 1, normalize=True), [[24 / 25], [0.0]])
    np.testing.assert_allclose(merging.dot_forward(x, y, 1), [[24.0], [0.0]])
    with pytest.raises(ValueError, match="differ in length"):
        merging.dot_forward(np.zeros((1, 3)), np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="rank 1 or 2"):
        merging.dot_forward(np.zeros((1, 2, 2, 2)), np.zeros((1, 2)), 1)


def test_l2_normalize_below_epsilon_is_finite():
    x = np.zeros((2, 3))
    u = merging.l2_normalize_forward(x, 1)
    np.testing.assert_array_equal(u, 0.0)
    du = np.ones((2, 3))
    dx = merging.l2_normalize_backward(x, du, 1)
    np.testing.assert_allclose(dx, du / np.sqrt(merging.SQUARE_SUM_FLOOR))
    # above the floor: the projection onto the sphere's tangent plane, scaled by 1/||x||
    rng = _rng("l2")
    x = rng.standard_normal((3, 4)) + 0.5
    _check(lambda: merging.l2_normalize_forward(x, 1),
           lambda d: [merging.l2_normalize_backward(x, d, 1)], [x], rng)
