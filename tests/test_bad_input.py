"""Bad-input matrix: every public entry point given wrong shapes, ranks and dtypes, NaN/Inf,
empty arrays, out-of-range labels, mismatched lengths, bad hyperparameters, unknown names,
read-only or wrong outputs, and sizes whose products overflow 32-bit indices.

Each case must raise a specific exception whose message names the argument (or, for the
"works" cases, give the right answer). The cases run in child processes (rel_helpers) capped
at a few GiB of address space, so a crash or a huge allocation fails one case, not the suite.

Not covered: the command-line interface. `pynn.cli` / `pynn.__main__` do not exist on this
branch; `test_cli_bad_input` below is skipped only while the module is absent.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np
import pytest
import rel_helpers

# --- case table ------------------------------------------------------------------------------


class raises:
    """The case must raise `exc` (or a subclass) with every word in its message."""

    def __init__(self, exc, *words):
        self.exc, self.words = exc, words

    def check(self, rec):
        if rec["outcome"] != "raised":
            return f"returned instead of raising {self.exc.__name__}"
        if self.exc.__name__ not in rec["mro"]:
            return f"raised {rec['type']} ({rec['msg']!r}), expected {self.exc.__name__}"
        missing = [w for w in self.words if w.lower() not in rec["msg"].lower()]
        if missing:
            return f"message {rec['msg']!r} does not mention {missing}"
        return None


class works:
    """The case must return, and `fn(result)` must be true (checked in the child)."""

    def __init__(self, fn=lambda r: True):
        self.fn = fn


def _model(n_in=4, n_out=3, loss="sparse_categorical_crossentropy", compiled=True, **layer_kw):
    import pynn

    m = pynn.Sequential([pynn.Input((n_in,)), pynn.layers.Dense(5, activation="relu"),
                         pynn.layers.Dense(n_out, activation="softmax" if n_out > 1 else None,
                                           **layer_kw)])
    if compiled:
        m.compile(optimizer="adam", loss=loss)
    return m


def _x(n=8, d=4):
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def _y(n=8, c=3):
    return np.arange(n) % c


def _with(arr, idx, value):
    arr = np.array(arr, dtype=np.float64)
    arr[idx] = value
    return arr


def _tmpdir():
    d = tempfile.mkdtemp(prefix="pynn-bad-")
    return d


def cases():
    import pynn
    from pynn import layers as L
    from pynn import optimizers as O
    from pynn.datasets import fashion_mnist, idx
    from pynn.models import load_model
    from pynn.utils import set_random_seed, to_categorical

    gemm = pynn.ops.gemm
    A, B = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
    c = {}

    # ops.gemm ------------------------------------------------------------------------------
    c["gemm a object"] = (lambda: gemm(np.array([[1, None]], dtype=object), B), raises(TypeError, "a"))
    c["gemm a complex"] = (lambda: gemm(A.astype(np.complex64), B), raises(TypeError, "a", "complex"))
    c["gemm a bool"] = (lambda: gemm(A.astype(bool), B), raises(TypeError, "a", "bool"))
    c["gemm a strings"] = (lambda: gemm(np.array([["1", "2"]]), B), raises(TypeError, "a"))
    c["gemm a ragged"] = (lambda: gemm([[1, 2], [3]], B), raises(TypeError, "a"))
    c["gemm a 1-D"] = (lambda: gemm(np.ones(4, np.float32), B), raises(ValueError, "a", "2-D"))
    c["gemm a 3-D"] = (lambda: gemm(np.ones((2, 3, 4), np.float32), B), raises(ValueError, "a", "2-D"))
    c["gemm b 0-D"] = (lambda: gemm(A, np.float32(1)), raises(ValueError, "b", "2-D"))
    c["gemm inner mismatch"] = (lambda: gemm(A, np.ones((5, 2), np.float32)), raises(ValueError, "inner"))
    c["gemm trans mismatch"] = (lambda: gemm(A, B, trans_a=True), raises(ValueError, "inner"))
    c["gemm out read-only"] = (lambda: gemm(A, B, out=_readonly((3, 2))), raises(ValueError, "out", "read-only"))
    c["gemm out wrong shape"] = (lambda: gemm(A, B, out=np.zeros((2, 3), np.float32)), raises(ValueError, "out", "shape"))
    c["gemm out float64"] = (lambda: gemm(A, B, out=np.zeros((3, 2))), raises(TypeError, "out", "float32"))
    c["gemm out list"] = (lambda: gemm(A, B, out=[[0, 0]] * 3), raises(TypeError, "out"))
    c["gemm bias wrong length"] = (lambda: gemm(A, B, bias=np.ones(3)), raises(ValueError, "bias"))
    c["gemm bias 2-D"] = (lambda: gemm(A, B, bias=np.ones((1, 2))), raises(ValueError, "bias"))
    c["gemm bias complex"] = (lambda: gemm(A, B, bias=np.ones(2, complex)), raises(TypeError, "bias"))
    c["gemm unknown activation"] = (lambda: gemm(A, B, activation="nope"), raises(ValueError, "activation", "nope"))
    c["gemm activation int"] = (lambda: gemm(A, B, activation=3), raises(TypeError, "activation"))
    c["gemm alpha string"] = (lambda: gemm(A, B, alpha="2"), raises(TypeError, "alpha"))
    c["gemm alpha bool"] = (lambda: gemm(A, B, alpha=True), raises(TypeError, "alpha"))
    c["gemm beta without out"] = (lambda: gemm(A, B, beta=1.0), raises(ValueError, "beta"))
    c["gemm empty m"] = (lambda: gemm(np.ones((0, 4), np.float32), B), works(lambda r: r.shape == (0, 2)))
    c["gemm empty k"] = (lambda: gemm(np.ones((3, 0), np.float32), np.ones((0, 2), np.float32)),
                         works(lambda r: r.shape == (3, 2) and not r.any()))
    c["gemm nan propagates"] = (lambda: gemm(_with(A, (0, 0), np.nan), B),
                                works(lambda r: np.isnan(r[0]).all() and np.isfinite(r[1:]).all()))
    c["gemm negative strides"] = (lambda: gemm(np.arange(12, dtype=np.float32).reshape(3, 4)[::-1, ::-1], B),
                                  works(lambda r: np.allclose(r, np.arange(12)[::-1].reshape(3, 4) @ np.ones((4, 2)))))
    c["gemm unaligned data"] = (lambda: gemm(np.frombuffer(b"\0" + np.arange(12, dtype=np.float32).tobytes(),
                                                           dtype=np.float32, offset=1).reshape(3, 4), B),
                                works(lambda r: np.allclose(r, np.arange(12).reshape(3, 4).sum(1)[:, None])))
    # M*K = 2**32 + 2**16 elements: a 32-bit index into A would wrap.
    c["gemm 2**16 x (2**16+1) broadcast"] = (
        lambda: gemm(np.broadcast_to(np.float32(1), (2**16, 2**16 + 1)),
                     np.ones((2**16 + 1, 1), np.float32)),
        works(lambda r: r.shape == (2**16, 1) and (r == 2**16 + 1).all()))

    # layer constructors ---------------------------------------------------------------------
    for bad in (0, -1, 1.5, "8", True, None):
        c[f"Dense units={bad!r}"] = (lambda bad=bad: L.Dense(bad), raises(ValueError, "units"))
    c["Dense unknown activation"] = (lambda: L.Dense(4, activation="nope"), raises(ValueError, "nope"))
    c["Dense unknown initializer"] = (lambda: L.Dense(4, kernel_initializer="nope"), raises(ValueError, "nope"))
    c["Dense unknown regularizer"] = (lambda: L.Dense(4, kernel_regularizer="l3"), raises(ValueError, "l3"))
    c["Dense unknown kwarg"] = (lambda: L.Dense(4, foo=1), raises(TypeError, "foo"))
    c["Dense name int"] = (lambda: L.Dense(4, name=3), raises(TypeError, "name"))
    c["Dense input_shape zero"] = (lambda: L.Dense(4, input_shape=(0,)), raises(ValueError, "input_shape"))
    c["Dense dtype float64"] = (lambda: L.Dense(4, dtype="float64"), raises(ValueError, "dtype"))
    for bad in (1.0, -0.1, float("nan"), 2):
        c[f"Dropout rate={bad!r}"] = (lambda bad=bad: L.Dropout(bad), raises(ValueError, "rate"))
    c["Dropout rate string"] = (lambda: L.Dropout("0.5"), raises(TypeError, "rate"))
    c["Dropout seed float"] = (lambda: L.Dropout(0.5, seed=1.5), raises(TypeError, "seed"))
    c["BatchNormalization momentum 2"] = (lambda: L.BatchNormalization(momentum=2), raises(ValueError, "momentum"))
    c["BatchNormalization epsilon 0"] = (lambda: L.BatchNormalization(epsilon=0), raises(ValueError, "epsilon"))
    c["BatchNormalization epsilon nan"] = (lambda: L.BatchNormalization(epsilon=float("nan")), raises(ValueError, "epsilon"))
    c["BatchNormalization axis 2 on 2-D input"] = (lambda: pynn.Sequential([pynn.Input((4,)), L.BatchNormalization(axis=2)]), raises(ValueError, "axis"))
    c["LeakyReLU slope -1"] = (lambda: L.LeakyReLU(negative_slope=-1), raises(ValueError, "negative_slope"))
    c["LeakyReLU slope nan"] = (lambda: L.LeakyReLU(negative_slope=float("nan")), raises(ValueError, "negative_slope"))
    c["ELU alpha string"] = (lambda: L.ELU(alpha="x"), raises(TypeError, "alpha"))
    c["ELU alpha inf"] = (lambda: L.ELU(alpha=float("inf")), raises(ValueError, "alpha"))
    c["Activation unknown"] = (lambda: L.Activation("nope"), raises(ValueError, "nope"))
    c["Softmax axis 0 (the batch)"] = (lambda: pynn.Sequential([pynn.Input((4,)), L.Softmax(axis=0)]), raises(ValueError, "axis"))
    c["Input shape negative"] = (lambda: L.Input((-1,)), raises(ValueError, "shape"))
    c["Input shape None"] = (lambda: L.Input(), raises(ValueError, "shape"))
    c["Input shape empty"] = (lambda: L.Input(()), raises(ValueError, "shape"))
    c["Input shape float"] = (lambda: L.Input((2.5,)), raises(ValueError, "shape"))
    c["Flatten channels_first"] = (lambda: L.Flatten(data_format="channels_first"), raises(ValueError, "data_format"))
    c["PReLU unknown initializer"] = (lambda: L.PReLU(alpha_initializer="nope"), raises(ValueError, "nope"))

    # huge layers: refused before the engine allocates (the child has a few GiB of address
    # space; units * inputs overflow 32-bit, and for the last one 64-bit, element counts)
    c["Dense units 10**12 built"] = (lambda: pynn.Sequential([L.Input((784,)), L.Dense(10**12)]).build(),
                                     raises(ValueError, "units"))
    c["Dense 2**31 units built"] = (lambda: pynn.Sequential([L.Input((4,)), L.Dense(2**31)]).build(),
                                    raises(ValueError, "units"))
    c["Dense kernel 2**70 elements"] = (lambda: pynn.Sequential([L.Input((2**40,)), L.Dense(2**30)]).build(),
                                        raises(ValueError, "units"))

    # Sequential ---------------------------------------------------------------------------------
    c["Sequential layers int"] = (lambda: pynn.Sequential(5), raises(TypeError, "layers"))
    c["Sequential add string"] = (lambda: pynn.Sequential().add("dense"), raises(TypeError, "layer"))
    c["Sequential name int"] = (lambda: pynn.Sequential(name=3), raises(TypeError, "name"))
    c["Sequential Input second"] = (lambda: pynn.Sequential([L.Dense(2), L.Input((3,))]), raises(ValueError, "Input"))
    c["Sequential build without shape"] = (lambda: pynn.Sequential([L.Dense(2)]).build(), raises(ValueError, "input shape"))
    c["Sequential build without layers"] = (lambda: pynn.Sequential().build((3,)), raises(ValueError, "layers"))
    # (Dense on N-D input acts on the last axis, as Keras; a wrong width is the error)
    c["Dense called again on another width"] = (
        lambda: (lambda d: (d(L.Input((3,))), d(L.Input((5,)))))(L.Dense(4)),
        raises(ValueError, "3 features"))
    c["set_weights not a list"] = (lambda: _model().set_weights(np.ones(3)), raises(TypeError, "weights"))
    c["set_weights wrong count"] = (lambda: _model().set_weights([np.ones((4, 5))]), raises(ValueError, "weights"))
    c["set_weights wrong shape"] = (lambda: _model().set_weights([np.ones((5, 4)), np.ones(5),
                                                                  np.ones((5, 3)), np.ones(3)]),
                                    raises(ValueError, "shape"))
    c["set_weights object dtype"] = (lambda: _model().set_weights([np.full((4, 5), None), np.ones(5),
                                                                   np.ones((5, 3)), np.ones(3)]),
                                     raises(TypeError, "weight"))
    c["set_weights nan"] = (lambda: _model().set_weights([np.full((4, 5), np.nan), np.ones(5),
                                                          np.ones((5, 3)), np.ones(3)]),
                            raises(ValueError, "NaN"))
    c["set_weights complex"] = (lambda: _model().set_weights([np.ones((4, 5), complex), np.ones(5),
                                                              np.ones((5, 3)), np.ones(3)]),
                                raises(TypeError, "weight"))

    # compile ------------------------------------------------------------------------------------
    c["compile unknown optimizer"] = (lambda: _model(compiled=False).compile("nope", "mse"), raises(ValueError, "optimizer"))
    c["compile optimizer int"] = (lambda: _model(compiled=False).compile(3, "mse"), raises(TypeError, "optimizer"))
    c["compile no loss"] = (lambda: _model(compiled=False).compile("adam"), raises(ValueError, "loss"))
    c["compile unknown loss"] = (lambda: _model(compiled=False).compile("adam", "nope"), raises(ValueError, "nope"))
    c["compile unknown metric"] = (lambda: _model(compiled=False).compile("adam", "mse", metrics=["nope"]),
                                   raises(ValueError, "nope"))
    for bad in (0, -1e-3, float("nan"), float("inf")):
        c[f"Adam learning_rate={bad!r}"] = (lambda bad=bad: O.Adam(learning_rate=bad), raises(ValueError, "learning_rate"))
    c["Adam learning_rate string"] = (lambda: O.Adam(learning_rate="0.1"), raises(TypeError, "learning_rate"))
    c["SGD clipnorm negative"] = (lambda: O.SGD(clipnorm=-1), raises(ValueError, "clipnorm"))
    c["learning_rate set to nan"] = (lambda: setattr(_model().optimizer, "learning_rate", float("nan")),
                                     raises(ValueError, "learning_rate"))

    # fit ------------------------------------------------------------------------------------------
    def fit(x=None, y=None, model=None, **kw):
        m = model or _model()
        return m.fit(_x() if x is None else x, _y() if y is None else y, verbose=0, **kw)

    c["fit not compiled"] = (lambda: _model(compiled=False).fit(_x(), _y(), verbose=0), raises(Exception, "compile"))
    c["fit x object"] = (lambda: fit(x=_x().astype(object)), raises(TypeError, "x"))
    c["fit x complex"] = (lambda: fit(x=_x().astype(complex)), raises(TypeError, "x"))
    c["fit x strings"] = (lambda: fit(x=_x().astype(str)), raises(TypeError, "x"))
    c["fit x bool"] = (lambda: fit(x=_x() > 0), raises(TypeError, "x"))
    c["fit x 1-D"] = (lambda: fit(x=np.ones(8, np.float32)), raises(ValueError, "x"))
    c["fit x empty"] = (lambda: fit(x=np.ones((0, 4), np.float32), y=np.zeros(0, int)), raises(ValueError, "x"))
    c["fit x nan"] = (lambda: fit(x=_with(_x(), (3, 1), np.nan)), raises(ValueError, "x", "NaN"))
    c["fit x inf"] = (lambda: fit(x=_with(_x(), (3, 1), np.inf)), raises(ValueError, "x", "Inf"))
    c["fit x wrong features"] = (lambda: fit(x=np.ones((8, 5), np.float32)), raises(ValueError, "x"))
    c["fit x 3-D wrong"] = (lambda: fit(x=np.ones((8, 2, 3), np.float32)), raises(ValueError, "x"))
    c["fit y short"] = (lambda: fit(y=_y()[:5]), raises(ValueError, "y"))
    c["fit y label too big"] = (lambda: fit(y=_with(_y(), 2, 3).astype(int)), raises(ValueError, "y"))
    c["fit y label negative"] = (lambda: fit(y=_with(_y(), 2, -1).astype(int)), raises(ValueError, "y"))
    c["fit y label 2**40"] = (lambda: fit(y=_with(_y(), 2, 2**40).astype(np.int64)), raises(ValueError, "y"))
    c["fit y fractional"] = (lambda: fit(y=_with(_y(), 2, 0.5)), raises(ValueError, "y"))
    c["fit y nan"] = (lambda: fit(y=_with(_y(), 2, np.nan)), raises(ValueError, "y"))
    c["fit y object"] = (lambda: fit(y=_y().astype(object)), raises(TypeError, "y"))
    c["fit y strings"] = (lambda: fit(y=_y().astype(str)), raises(TypeError, "y"))
    c["fit y None"] = (lambda: _model().fit(_x(), verbose=0), raises(ValueError, "y"))
    c["fit mse y wrong width"] = (lambda: fit(model=_model(loss="mse"), y=np.ones((8, 2))), raises(ValueError, "y"))
    c["fit mse y inf"] = (lambda: fit(model=_model(loss="mse"), y=np.full((8, 3), np.inf)), raises(ValueError, "y"))
    c["fit categorical y labels"] = (lambda: fit(model=_model(loss="categorical_crossentropy"), y=_y()),
                                     raises(ValueError, "y"))
    for bad in (0, -1, 1.5, "32"):
        c[f"fit batch_size={bad!r}"] = (lambda bad=bad: fit(batch_size=bad), raises(ValueError, "batch_size"))
    c["fit epochs -1"] = (lambda: fit(epochs=-1), raises(ValueError, "epochs"))
    c["fit epochs string"] = (lambda: fit(epochs="2"), raises(ValueError, "epochs"))
    c["fit validation_split 1.5"] = (lambda: fit(validation_split=1.5), raises(ValueError, "validation_split"))
    c["fit validation_split -0.1"] = (lambda: fit(validation_split=-0.1), raises(ValueError, "validation_split"))
    c["fit validation_data wrong features"] = (lambda: fit(validation_data=(np.ones((4, 5)), _y(4))),
                                               raises(ValueError, "validation_data"))
    c["fit validation_data not a tuple"] = (lambda: fit(validation_data=np.ones((4, 4))),
                                            raises(ValueError, "validation_data"))
    c["fit sample_weight short"] = (lambda: fit(sample_weight=np.ones(5)), raises(ValueError, "sample_weight"))
    c["fit sample_weight nan"] = (lambda: fit(sample_weight=_with(np.ones(8), 1, np.nan)), raises(ValueError, "sample_weight"))
    c["fit sample_weight negative"] = (lambda: fit(sample_weight=-np.ones(8)), raises(ValueError, "sample_weight"))
    c["fit sample_weight strings"] = (lambda: fit(sample_weight=np.array(["a"] * 8)), raises(TypeError, "sample_weight"))
    c["fit class_weight negative"] = (lambda: fit(class_weight={0: -1.0, 1: 1.0, 2: 1.0}), raises(ValueError, "class_weight"))
    c["fit class_weight string key"] = (lambda: fit(class_weight={"a": 1.0}), raises(ValueError, "class_weight"))
    c["fit class_weight not a dict"] = (lambda: fit(class_weight=[1.0, 2.0]), raises(TypeError, "class_weight"))
    c["fit verbose 3"] = (lambda: _model().fit(_x(), _y(), verbose=3), raises(ValueError, "verbose"))
    c["fit callbacks int"] = (lambda: fit(callbacks=[5]), raises(TypeError, "callback"))
    c["fit initial_epoch -1"] = (lambda: fit(initial_epoch=-1), raises(ValueError, "initial_epoch"))
    c["fit list input works"] = (lambda: fit(x=_x().tolist(), y=_y().tolist()), works(lambda h: "loss" in h.history))

    # unusual but valid models and batches: they must train, not crash
    def train(*stack, n=8, batch_size=4, loss="sparse_categorical_crossentropy", y=None):
        m = pynn.Sequential([L.Input((4,)), *stack])
        m.compile("adam", loss)
        h = m.fit(_x(n), _y(n) if y is None else y, batch_size=batch_size, epochs=2, verbose=0)
        return np.isfinite(h.history["loss"]).all() and np.isfinite(m.predict(_x(3), verbose=0)).all()

    c["train Dense(use_bias=False)"] = (lambda: train(L.Dense(3, use_bias=False, activation="softmax")),
                                        works(bool))
    c["train Dense(use_bias=False) hidden"] = (lambda: train(L.Dense(5, activation="tanh", use_bias=False),
                                                             L.Dense(3, activation="softmax")), works(bool))
    c["train batch of 1 with BatchNormalization"] = (lambda: train(L.Dense(5), L.BatchNormalization(),
                                                                   L.Dense(3, activation="softmax"), batch_size=1),
                                                     works(bool))
    c["train one sample"] = (lambda: train(L.Dense(3, activation="softmax"), n=1, batch_size=32), works(bool))
    c["train width 1 sigmoid bce"] = (lambda: train(L.Dense(1, activation="sigmoid"), loss="binary_crossentropy",
                                                    y=np.arange(8) % 2), works(bool))
    c["train every layer"] = (lambda: train(L.Dense(6), L.BatchNormalization(center=False), L.PReLU(), L.ELU(),
                                            L.LeakyReLU(), L.ReLU(), L.Dropout(0.5), L.Activation("gelu"),
                                            L.Dense(3), L.Softmax()), works(bool))
    c["train rate 0 dropout"] = (lambda: train(L.Dropout(0.0), L.Dense(3, activation="softmax")), works(bool))

    # evaluate / predict -----------------------------------------------------------------------
    c["evaluate x nan"] = (lambda: _model().evaluate(_with(_x(), 0, np.nan), _y(), verbose=0), raises(ValueError, "x"))
    c["evaluate y short"] = (lambda: _model().evaluate(_x(), _y(5), verbose=0), raises(ValueError, "y"))
    c["evaluate batch_size 0"] = (lambda: _model().evaluate(_x(), _y(), batch_size=0, verbose=0), raises(ValueError, "batch_size"))
    c["evaluate not compiled"] = (lambda: _model(compiled=False).evaluate(_x(), _y(), verbose=0), raises(Exception, "compile"))
    c["predict wrong features"] = (lambda: _model().predict(np.ones((2, 5)), verbose=0), raises(ValueError, "x"))
    c["predict 1-D"] = (lambda: _model().predict(np.ones(4), verbose=0), raises(ValueError, "x"))
    c["predict object"] = (lambda: _model().predict(np.full((2, 4), None), verbose=0), raises(TypeError, "x"))
    c["predict complex"] = (lambda: _model().predict(np.ones((2, 4), complex), verbose=0), raises(TypeError, "x"))
    c["predict empty"] = (lambda: _model().predict(np.ones((0, 4)), verbose=0), raises(ValueError, "x"))
    c["predict batch_size 0"] = (lambda: _model().predict(_x(), batch_size=0, verbose=0), raises(ValueError, "batch_size"))
    c["predict batch_size 2**63"] = (lambda: _model().predict(_x(), batch_size=2**63, verbose=0),
                                     works(lambda r: r.shape == (8, 3)))
    c["predict batch_size 2**40"] = (lambda: _model().predict(_x(), batch_size=2**40, verbose=0),
                                     works(lambda r: r.shape == (8, 3)))
    c["fit batch_size 2**63"] = (lambda: fit(batch_size=2**63), works(lambda h: len(h.history["loss"]) == 1))
    c["evaluate batch_size 2**63"] = (lambda: _model().evaluate(_x(), _y(), batch_size=2**63, verbose=0),
                                      works(lambda r: np.isfinite(r)))
    c["predict verbose 7"] = (lambda: _model().predict(_x(), verbose=7), raises(ValueError, "verbose"))
    # predict does not refuse NaN (Keras does not); it must not hide it either
    c["predict nan gives nan (linear)"] = (
        lambda: _linear_model().predict(_with(_x(2), (0, 1), np.nan), verbose=0),
        works(lambda r: np.isnan(r[0]).all() and np.isfinite(r[1]).all()))
    c["predict nan gives nan (relu)"] = (
        lambda: _model().predict(_with(_x(2), (0, 1), np.nan), verbose=0),
        works(lambda r: np.isnan(r[0]).all() and np.isfinite(r[1]).all()))
    c["predict float64 strided"] = (lambda: _model().predict(np.ones((6, 8))[::2, ::2], verbose=0),
                                    works(lambda r: r.shape == (3, 3)))
    c["train_on_batch labels out of range"] = (lambda: _model().train_on_batch(_x(), _y() + 5), raises(ValueError, "y"))
    c["input_gradient class_index out of range"] = (lambda: _model().input_gradient(_x(), class_index=9),
                                                    raises(ValueError, "class_index"))

    # save / load ----------------------------------------------------------------------------------
    d = _tmpdir()
    c["save filepath int"] = (lambda: _model().save(123), raises(TypeError, "filepath"))
    c["save wrong extension"] = (lambda: _model().save(os.path.join(d, "m.h5")), raises(ValueError, "filepath"))
    c["save missing folder"] = (lambda: _model().save(os.path.join(d, "no", "m.safetensors")),
                                raises(FileNotFoundError, "filepath"))
    c["save overwrite=False"] = (lambda: (_model().save(os.path.join(d, "e.safetensors")),
                                          _model().save(os.path.join(d, "e.safetensors"), overwrite=False)),
                                 raises(FileExistsError, "filepath"))
    c["save unbuilt"] = (lambda: pynn.Sequential([L.Dense(2)]).save(os.path.join(d, "u.safetensors")),
                         raises(ValueError, "built"))
    c["save nan weights"] = (lambda: _nan_model().save(os.path.join(d, "n.safetensors")), raises(ValueError, "NaN"))
    c["load_model filepath int"] = (lambda: load_model(123), raises(TypeError, "filepath"))
    c["load_model missing"] = (lambda: load_model(os.path.join(d, "missing.safetensors")),
                               raises(FileNotFoundError, "missing.safetensors"))
    c["load_model directory"] = (lambda: load_model(d), raises(OSError))
    c["load_model empty file"] = (lambda: load_model(_write(d, "empty.safetensors", b"")), raises(ValueError, "short"))
    c["load_model text file"] = (lambda: load_model(_write(d, "t.safetensors", b"hello world, not a model")),
                                 raises(ValueError))
    c["load_weights other architecture"] = (lambda: (_model().save_weights(os.path.join(d, "w.safetensors")),
                                                     _model(n_in=5).load_weights(os.path.join(d, "w.safetensors"))),
                                            raises(ValueError, "shape"))
    c["load_weights missing"] = (lambda: _model().load_weights(os.path.join(d, "nope.safetensors")),
                                 raises(FileNotFoundError))

    # data sets and utilities -----------------------------------------------------------------
    c["fashion_mnist path missing"] = (lambda: fashion_mnist.load_data(path=os.path.join(d, "none"), download=False),
                                       raises(FileNotFoundError))
    c["fashion_mnist path int"] = (lambda: fashion_mnist.load_data(path=123, download=False), raises(TypeError, "path"))
    c["read_idx garbage"] = (lambda: idx.read_idx(_write(d, "g.idx", b"\x00\x00\x08\x03\xff\xff\xff\xff")),
                             raises(ValueError))
    c["read_idx huge dims"] = (lambda: idx.read_idx(_write(d, "h.idx", b"\x00\x00\x08\x02" + b"\x7f\xff\xff\xff" * 2)),
                               raises(ValueError))
    c["read_idx bad magic"] = (lambda: idx.read_idx(_write(d, "m.idx", b"\x01\x02\x03\x04" + b"\0" * 12)), raises(ValueError))
    c["to_categorical negative"] = (lambda: to_categorical([0, -1]), raises(ValueError, "x"))
    c["to_categorical fractional"] = (lambda: to_categorical([0.5]), raises(ValueError, "x"))
    c["to_categorical strings"] = (lambda: to_categorical(["a"]), raises(TypeError, "x"))
    c["to_categorical num_classes too small"] = (lambda: to_categorical([0, 5], num_classes=3), raises(ValueError, "num_classes"))
    c["to_categorical num_classes 0"] = (lambda: to_categorical([0], num_classes=0), raises(ValueError, "num_classes"))
    c["set_random_seed string"] = (lambda: set_random_seed("1"), raises(TypeError, "seed"))
    c["set_random_seed negative"] = (lambda: set_random_seed(-1), raises(ValueError, "seed"))
    c["set_num_threads 0"] = (lambda: pynn.set_num_threads(0), raises(ValueError))
    c["set_num_threads string"] = (lambda: pynn.set_num_threads("2"), raises(TypeError))

    # the compiled core's own checks (its last line of defence) ------------------------------
    core = pynn._core
    c["_core.gemm float64"] = (lambda: core.gemm(np.ones((2, 2)), np.ones((2, 2), np.float32),
                                                 np.zeros((2, 2), np.float32)), raises(TypeError, "a"))
    c["_core.gemm out read-only"] = (lambda: core.gemm(A, B, _readonly((3, 2))), raises(ValueError, "out"))
    c["_core.gemm out small"] = (lambda: core.gemm(A, B, np.zeros((1, 1), np.float32)), raises(ValueError, "out"))
    c["_core.Network width -1"] = (lambda: core.Network(-1), raises(ValueError, "width"))
    c["_core.Network predict wrong out"] = (lambda: _net().predict(np.ones((2, 4), np.float32),
                                                                    np.zeros((1, 3), np.float32), 8),
                                            raises(ValueError, "out"))
    c["_core.Network train_step bad idx"] = (lambda: _net(opt=True).train_step(np.ones((2, 4), np.float32), None,
                                                                                np.zeros(2, np.int32), None,
                                                                                np.array([5], np.int64)),
                                             raises(IndexError, "idx"))
    c["_core.Network get_param -1"] = (lambda: _net().get_param(-1), raises(IndexError, "index"))
    c["_core.Network set_param wrong size"] = (lambda: _net().set_param(0, np.ones(3, np.float32)),
                                               raises(ValueError, "value"))
    c["_core.dense_forward wrong W"] = (lambda: core.dense_forward(np.ones((2, 4), np.float32),
                                                                   np.ones((5, 3), np.float32)),
                                        raises(ValueError, "W"))
    return c


def _linear_model():
    import pynn

    return pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(3)])


def _readonly(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _write(folder, name, blob):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def _nan_model():
    m = _model()
    w = m.get_weights()
    w[0] = w[0].copy()
    m.weights[0].value[:] = np.nan  # what a diverged training leaves
    return m


def _net(opt=False):
    import pynn

    net = pynn._core.Network(4)
    net.add_dense(3, "linear", [], True)
    if opt:
        net.set_loss("sparse_categorical_crossentropy", False, 1.0)
        net.set_optimizer("sgd", {})
    return net


# --- child side --------------------------------------------------------------------------------


def _child(names):
    import warnings

    warnings.simplefilter("ignore")  # warnings are not what this matrix checks
    table = cases()
    for name in names:
        fn, expect = table[name]
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the point is to see every exception
            rec = rel_helpers.describe_exception(exc)
            problem = expect.check(rec) if isinstance(expect, raises) else \
                f"raised {rec['type']}: {rec['msg']}"
        else:
            rec = {"outcome": "returned"}
            if isinstance(expect, raises):
                problem = expect.check(rec)
            else:
                try:
                    problem = None if expect.fn(result) else "returned a wrong result"
                except Exception as exc:  # noqa: BLE001
                    problem = f"result check failed: {exc!r}"
        rel_helpers.report(name, problem=problem, **{k: rec.get(k) for k in ("type", "msg")})


# --- tests -------------------------------------------------------------------------------------

# Cases that fail on this branch because of bugs in files the reliability work does not own;
# each is reported with its fix. strict: when a fix lands the case passes and this list must
# shrink (the test then fails, pointing at the stale entry).
KNOWN_BUGS: set = set()

# Cases that crash the interpreter on this branch (reported with their fixes). Strict as above.
KNOWN_CRASHES: set = set()

_RESULTS = {}


def _all_results():
    if not _RESULTS:
        names = list(cases())
        results, crashes = rel_helpers.run_cases("test_bad_input", names, timeout=240,
                                                 address_space_gib=6)
        _RESULTS.update(results=results, crashes=crashes, names=names)
    return _RESULTS


def test_no_bad_input_crashes_the_interpreter():
    r = _all_results()
    print(f"\nbad-input cases tried: {len(r['names'])}, crashes: {len(r['crashes'])}")
    assert len(r["names"]) >= 150
    assert set(r["crashes"]) == KNOWN_CRASHES, {k: v for k, v in r["crashes"].items()
                                                if k not in KNOWN_CRASHES} or "fixed: remove"


def test_every_bad_input_raises_a_clear_exception():
    r = _all_results()
    problems = {n: rec for n, rec in r["results"].items() if rec["problem"]}
    unexpected = {n: rec for n, rec in problems.items() if n not in KNOWN_BUGS}
    stale = sorted(KNOWN_BUGS - set(problems))
    assert set(r["results"]) | set(r["crashes"]) == set(r["names"])
    assert not unexpected, "\n".join(f"{n}: {rec['problem']}" for n, rec in unexpected.items())
    assert not stale, f"fixed, remove from KNOWN_BUGS: {stale}"


def test_the_matrix_can_fail():
    # A case whose expectation is wrong must be reported as a problem by the child.
    assert raises(TypeError, "a").check({"outcome": "raised", "type": "ValueError",
                                         "mro": ["ValueError"], "msg": "a"})
    assert raises(ValueError, "units").check({"outcome": "raised", "type": "ValueError",
                                              "mro": ["ValueError"], "msg": "bad"})
    assert raises(ValueError).check({"outcome": "returned"})


@pytest.mark.skipif(importlib.util.find_spec("pynn.cli") is None
                    and importlib.util.find_spec("pynn.__main__") is None,
                    reason="pynn has no command-line interface on this branch")
def test_cli_bad_input():
    import subprocess
    import sys

    for args in (["--no-such-option"], ["train", "--epochs", "-1"], ["predict", "/nonexistent"]):
        proc = subprocess.run([sys.executable, "-P", "-m", "pynn", *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode not in (0,) and proc.returncode > 0, (args, proc.returncode)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
