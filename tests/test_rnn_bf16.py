"""SimpleRNN, LSTM and GRU under mixed_bfloat16: the rnn op with compute_dtype "bfloat16".

Every product of the op runs on the bf16 GEMM (operands rounded to bfloat16, float32 sums):
the input projection of all steps, the recurrent product bf16(h') bf16(U) of each step, and
in backpropagation through time bf16(dz) bf16(U)^T, bf16(dz) bf16(W)^T, bf16(x)^T bf16(dz)
and bf16(h')^T bf16(dz). Bias, gates, c and h stay float32. The NumPy twin
(pynn.reference.rnn with bf16=True) rounds the same operands and sums in float64.

Tolerances. Without the rounding the op matches its twin to 2e-5 (tests/test_rnn.py). With
it, one more effect: the op's h' and dz are float32, the twin's float64, and an operand that
lies within their ~1e-7 difference of a bf16 rounding boundary rounds to the neighbouring
bf16 value in one and not the other (a step of 2^-8 of that element), and the changed state
carries on through the rest of that sequence. Such flips are rare (a probability of about
1e-7 / 2^-9 = 5e-5 per rounded element) but no elementwise bound tighter than the bf16
effect itself survives them. So, as tests/test_mixed_precision.py does for Dense:
  * the median error against the twin is within test_rnn.py's float32 tolerance (2e-5): a
    flip spoils at most the rest of one sequence, under half of the outputs;
  * the mean error against the bf16 twin is 5x smaller than against the float32 twin, which
    differs by the 2^-9 relative rounding of every operand (so the test fails when the
    products are not rounded, or the wrong operands are: a twin that rounds only the
    weights fails every case). Batches of 16 sequences, so that one flip cannot dominate
    the mean (without flips the ratio is ~1e-4; the worst case here is ~0.015).
"""
from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import test_rnn
from test_gemm import run_python
from test_rnn import MSE, Case, _drop_masks, _feed, _param_grads, _rng
from test_rnn_stacked import _on_threads

import pynn
from pynn import _core
from pynn import layers as L
from pynn import mixed_precision as mp
from pynn.reference import graph as ref_graph

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

BF = {"compute_dtype": "bfloat16"}


def bf(cell, T, F, u, masked=False, **attrs):
    return Case(cell, T, F, u, masked=masked, **attrs, **BF)


# test_rnn.py's cases (T = 1, masks, go_backwards, return_state, both GRU variants, other
# activations, no bias) in bf16, and a few longer sequences and wider layers
CASES = [Case(c.cell, c.T, c.F, c.u, c.masked, **{k: v for k, v in c.attrs.items()
                                                  if k not in ("cell", "units")}, **BF)
         for c in test_rnn.CASES] + [
    bf("lstm", 12, 7, 24, return_sequences=True, return_state=True),
    bf("lstm", 9, 6, 17, masked=True, go_backwards=True, return_sequences=True),
    bf("simple", 10, 6, 33, return_sequences=True),
    bf("gru", 10, 6, 24, masked=True, return_sequences=True),
    bf("gru", 8, 6, 16, reset_after=False, return_sequences=True),
]
BATCH = 16


def float32_spec(spec):
    """The same graph without compute_dtype: the float32 twin's products."""
    f32 = copy.deepcopy(spec)
    for n in f32.nodes:
        n.attrs.pop("compute_dtype", None)
    return f32


def follows_bf16_twin(got, twin, f32, what):
    if not np.any(twin) and not np.any(f32):   # dU at T = 1: h' is the zero state
        assert not np.any(got), what
        return
    e_bf = np.abs(got.astype(np.float64) - twin)
    e_32 = np.abs(got.astype(np.float64) - f32)
    assert np.median(e_bf) <= 2e-5 * max(1.0, float(np.abs(twin).max())), what
    assert np.mean(e_bf) * 5 < np.mean(e_32), (what, np.mean(e_bf), np.mean(e_32))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_follows_the_bf16_twin(case):
    rng = _rng("bf16 fwd", case.name)
    ps, xs = case.params(rng), case.inputs(rng, BATCH)
    spec = case.spec(ps, xs)
    assert spec.nodes[0].attrs["compute_dtype"] == "bfloat16"
    twin = ref_graph.predict(spec, xs)[0]
    f32 = ref_graph.predict(float32_spec(spec), xs)[0]
    got = np.empty(twin.shape, np.float32)
    spec.to_core().predict(_feed(xs), [got])
    follows_bf16_twin(got, twin, f32, case.name)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_gradients_follow_the_bf16_twin(case):
    rng = _rng("bf16 grad", case.name)
    ps, xs = case.params(rng), case.inputs(rng, BATCH)
    spec = case.spec(ps, xs)
    out, cache = ref_graph.forward(spec, xs)
    seed = rng.standard_normal(out[0].shape)
    _, twin = ref_graph.backward(spec, cache, [seed])
    f32_spec = float32_spec(spec)
    _, f32 = ref_graph.backward(f32_spec, ref_graph.forward(f32_spec, xs)[1], [seed])
    got = spec.to_core().input_gradient(_feed(xs), [seed.astype(np.float32)])[0]
    follows_bf16_twin(got, twin[0], f32[0], (case.name, "dx"))
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    got = _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])
    _, _, twin, _ = ref_graph.gradients(spec, xs, [target], [MSE])
    _, _, f32, _ = ref_graph.gradients(f32_spec, xs, [target], [MSE])
    for k, (g, t, e) in enumerate(zip(got, twin, f32)):
        assert g.shape == t.shape
        follows_bf16_twin(g, t, e, (case.name, k))


DROP_CASES = [bf("lstm", 6, 5, 20, return_sequences=True, dropout=0.3, seed=4),
              bf("lstm", 6, 5, 20, dropout=0.2, recurrent_dropout=0.3, seed=5),  # per gate
              bf("gru", 6, 5, 20, return_sequences=True, dropout=0.3, recurrent_dropout=0.4,
                 seed=6),
              bf("gru", 6, 5, 20, reset_after=False, recurrent_dropout=0.4, seed=7),
              bf("simple", 6, 5, 20, return_sequences=True, dropout=0.3,
                 recurrent_dropout=0.4, seed=8)]


@pytest.mark.parametrize("case", DROP_CASES, ids=repr)
def test_dropout_gradients_follow_the_bf16_twin(case):
    # the masked operands (x mx, h' mh) are what the bf16 GEMM rounds
    case.attrs.setdefault("recurrent_dropout", 0.0)
    rng = _rng("bf16 drop", case.name)
    ps, xs = case.params(rng), case.inputs(rng, BATCH)
    spec = case.spec(ps, xs)
    out, _ = ref_graph.forward(spec, xs)
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    got = _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])
    masks = {0: _drop_masks(BATCH, case, 0)}   # the first training step's draws
    _, _, twin, _ = ref_graph.gradients(spec, xs, [target], [MSE], dropout_masks=masks)
    _, _, f32, _ = ref_graph.gradients(float32_spec(spec), xs, [target], [MSE],
                                       dropout_masks=masks)
    for k, (g, t, e) in enumerate(zip(got, twin, f32)):
        follows_bf16_twin(g, t, e, (case.name, k))


@pytest.fixture
def _restore_global_policy():
    saved = mp.global_policy()
    yield
    mp.set_global_policy(saved)


@pytest.mark.usefixtures("_restore_global_policy")
def test_layers_pass_their_compute_dtype_to_the_op():
    def rnn_attrs(model):
        return [n.attrs for n in model._build_spec().nodes if n.op == "rnn"]

    inp = pynn.Input((5, 3))
    layers = [L.LSTM(4, return_sequences=True, dtype="mixed_bfloat16"),
              L.GRU(4, return_sequences=True, dtype="mixed_bfloat16"),
              L.SimpleRNN(4, dtype="mixed_bfloat16")]
    y = inp
    for lay in layers:
        y = lay(y)
    assert [a.get("compute_dtype") for a in rnn_attrs(pynn.Model(inp, y))] == ["bfloat16"] * 3
    # the global policy, and Bidirectional's backward copy inherits it from the forward layer
    mp.set_global_policy("mixed_bfloat16")
    layer = L.Bidirectional(L.LSTM(4))
    mp.set_global_policy("float32")
    model = pynn.Sequential([pynn.Input((5, 3)), layer])
    assert [a.get("compute_dtype") for a in rnn_attrs(model)] == ["bfloat16"] * 2
    model = pynn.Sequential([pynn.Input((5, 3)), L.GRU(4)])
    assert [a.get("compute_dtype") for a in rnn_attrs(model)] == [None]
    again = L.LSTM.from_config(layers[0].get_config())
    assert again.dtype_policy.name == "mixed_bfloat16"


def test_bad_compute_dtype_names_the_attribute():
    case = Case("lstm", 3, 2, 4, compute_dtype="float16")
    rng = _rng("bad")
    ps, xs = case.params(rng), case.inputs(rng, 1)
    spec = case.spec([p for p in ps], xs)
    with pytest.raises(ValueError, match="compute_dtype"):
        spec.to_core()


def test_bidirectional_masked_model_follows_the_twin():
    # Embedding(mask_zero) -> Bidirectional(LSTM) -> Dense: masks, go_backwards, time order
    rng = _rng("bidir")
    x = rng.integers(0, 20, (8, 11)).astype(np.float32)
    x[:3, 7:] = 0                                                     # padded tails
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([pynn.Input((11,)), L.Embedding(20, 6, mask_zero=True),
                             L.Bidirectional(L.LSTM(12, return_sequences=True,
                                                    dtype="mixed_bfloat16")),
                             L.GlobalAveragePooling1D(), L.Dense(3)])
    spec = model._build_spec()
    got = model.predict(x, verbose=0)
    twin = ref_graph.predict(spec, [x.astype(np.float64)])[0]
    f32 = ref_graph.predict(float32_spec(spec), [x.astype(np.float64)])[0]
    follows_bf16_twin(got, twin, f32, "bidirectional")


def _fit_weights(cell, threads):
    rng = _rng("fit", cell)
    x = rng.standard_normal((64, 10, 7)).astype(np.float32)
    y = rng.integers(0, 4, 64)

    def fit():
        pynn.utils.set_random_seed(3)
        layer = {"lstm": L.LSTM, "gru": L.GRU, "simple": L.SimpleRNN}[cell]
        model = pynn.Sequential([pynn.Input((10, 7)),
                                 layer(48, return_sequences=True, dtype="mixed_bfloat16"),
                                 layer(40, dtype="mixed_bfloat16"),
                                 L.Dense(4, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=64, epochs=3, verbose=0)
        return model.get_weights()

    return _on_threads(threads, fit)


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_training_is_bitwise_identical_on_one_and_two_threads(cell):
    # batch 64 x 10 steps x G u^2 >= the GEMM's parallel threshold: both threads run rows
    w1, w2 = _fit_weights(cell, 1), _fit_weights(cell, 2)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))


# Each bf16 kernel this CPU can run (PYNN_ARCH picks it at import): the op follows the twin
# and gives the same bits on 1 and 2 threads.
KERNEL_CHECK = """
import hashlib, sys, numpy as np, pynn
sys.path.insert(0, ".")
from pynn import _core
from test_rnn_bf16 import CASES, BATCH, float32_spec
from test_rnn import MSE, _feed, _param_grads, _rng
from test_rnn_stacked import _on_threads
from pynn.reference import graph as ref_graph
worst = 0.0
for case in CASES[-5:]:
    rng = _rng("arch", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 40)
    spec = case.spec(ps, xs)
    out, _ = ref_graph.forward(spec, xs)
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    _, _, twin, _ = ref_graph.gradients(spec, xs, [target], [MSE])
    _, _, f32, _ = ref_graph.gradients(float32_spec(spec), xs, [target], [MSE])
    run = lambda: _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])
    g1, g2 = _on_threads(1, run), _on_threads(2, run)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2)), case.name
    for g, t, e in zip(g1, twin, f32):
        # the ratio of the mean errors, to the bf16 twin over to the float32 one
        worst = max(worst, float(np.mean(np.abs(g - t)) / np.mean(np.abs(g - e))))
print(_core.sbgemm_info()["kernel"], worst)
"""
KERNELS = {"avx512_bf16": "avx512_bf16", "avx512": "emulated_avx512",
           "avx2": "emulated_avx2", "generic": "emulated_generic"}


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_bf16_kernel_follows_the_twin(arch):
    if not _core.cpu_supports(arch):
        # absent from this CPU: asking for it is a clear import error (as in test_sbgemm.py)
        res = run_python("import pynn", PYNN_ARCH=arch)
        assert res.returncode != 0 and "does not support" in res.stderr
        return
    res = run_python(KERNEL_CHECK, PYNN_ARCH=arch)
    assert res.returncode == 0, res.stderr
    kernel, worst = res.stdout.split()
    assert kernel.startswith(KERNELS[arch]), kernel
    assert float(worst) < 0.1, f"{kernel}: mean error {worst} of the float32 twin's"


def test_bf16_differs_from_float32_in_the_recurrence():
    # the recurrent product must round h': an input of zeros leaves only h' U (and the bias)
    # to carry anything, so bf16 and float32 layers differ only through h' and U
    case = bf("simple", 6, 2, 16, return_sequences=True)
    rng = _rng("recurrence")
    ps, xs = case.params(rng), case.inputs(rng, 3)
    xs[0][:, 1:] = 0.0
    spec = case.spec(ps, xs)
    got = np.empty((3, 6, 16), np.float32)
    spec.to_core().predict(_feed(xs), [got])
    f32 = np.empty_like(got)
    float32_spec(spec).to_core().predict(_feed(xs), [f32])
    twin = ref_graph.predict(spec, xs)[0]
    follows_bf16_twin(got[:, 1:], twin[:, 1:], f32[:, 1:].astype(np.float64), "h' U")
    assert hashlib.sha256(got.tobytes()).digest() != hashlib.sha256(f32.tobytes()).digest()
