"""The keras.io "Simple MNIST convnet" on Fashion-MNIST: one training epoch (Adam 1e-3, batch
128) with pynn's fit and PyTorch CPU eager in the same run, on 1 and 2 threads; predict on one
image; and the two convolutions of that network alone (forward, and forward + backward).

    Conv2D 32 3x3 relu, MaxPool 2, Conv2D 64 3x3 relu, MaxPool 2, Flatten, Dropout 0.5,
    Dense 10 softmax: 34,826 parameters, about 14.6 MFLOP per image and training step.

    pytest benchmarks/bench_conv.py -s

"pynn_bf16" is the same network under the mixed_bfloat16 policy (convolutions and the dense
layer on bf16-rounded operands with float32 sums: VDPBF16PS / AMX where the CPU has them,
an exact emulation elsewhere); test_epoch_bf16_accuracy trains both pynn variants a few
epochs from the same seed and notes their test accuracy.

Uses the real data set when installed (apt-get install dataset-fashion-mnist), else the subset
shipped with pynn. PYNN_BENCH_CONV_ROWS (default 12000) caps the rows of the timed epoch so
that a run takes minutes, not an hour; 0 means all of them. The ratios are what matter.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import record, thread_limits, timed, torch_epoch

import pynn
from pynn import layers

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

BATCH = 128
# Multiply-adds per image of the forward pass: conv1 26*26*9*32, conv2 11*11*288*64, dense.
_FWD = 2 * (26 * 26 * 9 * 32 + 11 * 11 * 288 * 64 + 1600 * 10)
# Training: forward, the weight gradients, and the input gradients of conv2 and dense.
FLOP_PER_IMAGE = _FWD + 2 * (26 * 26 * 9 * 32 + 11 * 11 * 288 * 64 + 1600 * 10) + \
    2 * (11 * 11 * 288 * 64 + 1600 * 10)


def _images(x):
    return np.ascontiguousarray(x[:, :, :, None], dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def data():
    from pynn.datasets import fashion_mnist

    ((x, y), _), _ = fashion_mnist.load_data_or_subset(quiet=True)
    rows = int(os.environ.get("PYNN_BENCH_CONV_ROWS", "12000"))
    if rows > 0:
        x, y = x[:rows], y[:rows]
    return _images(x), y.astype(np.int64)


def pynn_model(dtype=None):
    model = pynn.Sequential([
        pynn.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu", dtype=dtype), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu", dtype=dtype), layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax", dtype=dtype)])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def torch_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(1600, 10))
    return net, torch.optim.Adam(net.parameters(), lr=1e-3)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn", "pynn_bf16"] + (["torch"] if torch is not None else []))
def test_epoch(benchmark, data, impl, threads):
    x, y = data
    n = len(x)
    if impl.startswith("pynn"):
        pynn.utils.set_random_seed(0)
        model = pynn_model("mixed_bfloat16" if impl == "pynn_bf16" else None)

        def epoch():
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    else:
        net, opt = torch_model()
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))   # NCHW
        epoch = torch_epoch(net, opt, xt, torch.from_numpy(y), BATCH)
    with thread_limits(threads):
        best = timed(benchmark, epoch, rounds=3, warmup=1)
    record("convnet: train one epoch", f"epoch {n} images {threads}t", impl, best,
           FLOP_PER_IMAGE * n)


def test_epoch_bf16_ratios():
    """Notes the epoch times as pynn / PyTorch ratios (the table prints the inverse)."""
    from conftest import NOTES, RESULTS

    for case, per in RESULTS.get("convnet: train one epoch", {}).items():
        if "torch" in per:
            parts = [f"{i} {per[i][0] / per['torch'][0]:.2f}x" for i in ("pynn", "pynn_bf16")
                     if i in per]
            NOTES.append(f"convnet {case}: time / PyTorch's: " + ", ".join(parts))
        if "pynn" in per and "pynn_bf16" in per:
            NOTES.append(f"convnet {case}: bf16 / fp32 pynn time "
                         f"{per['pynn_bf16'][0] / per['pynn'][0]:.2f}x")


def test_epoch_bf16_accuracy(data):
    """Test accuracy after a few epochs from the same seed, fp32 and mixed_bfloat16."""
    from conftest import NOTES

    from pynn.datasets import fashion_mnist

    x, y = data
    (_, (xt, yt)), subset = fashion_mnist.load_data_or_subset(quiet=True)
    epochs = int(os.environ.get("PYNN_BENCH_CONV_EPOCHS", "3"))
    accs = {}
    for dtype in (None, "mixed_bfloat16"):
        pynn.utils.set_random_seed(0)
        model = pynn_model(dtype)
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
        accs[dtype or "float32"] = model.evaluate(_images(xt), yt, verbose=0)[1]
    NOTES.append(f"convnet test accuracy after {epochs} epochs on {len(x)} images "
                 f"({'shipped subset' if subset else 'real data'}, {len(xt)} test images): " +
                 ", ".join(f"{k} {v:.4f}" for k, v in accs.items()))


@pytest.mark.parametrize("impl", ["pynn"] + (["torch"] if torch is not None else []))
def test_predict_one_image(benchmark, data, impl):
    x, _ = data
    image = x[:1].copy()
    if impl == "pynn":
        pynn.utils.set_random_seed(0)
        model = pynn_model()

        def fn():
            model.predict(image, verbose=0)
    else:
        net, _ = torch_model()
        net.eval()
        t = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))

        def fn():
            with torch.no_grad():
                net(t).numpy()
    best = timed(benchmark, fn, rounds=500, warmup=20)
    record("convnet: predict one image", "predict 1 image", impl, best)


# The two convolutions of the network at batch 128: (input shape, filters).
LAYERS = {"conv1 28x28x1->32": ((28, 28, 1), 32), "conv2 13x13x32->64": ((13, 13, 32), 64)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("impl", ["pynn"] + (["torch"] if torch is not None else []))
def test_conv_layer(benchmark, name, backward, threads, impl):
    shape, filters = LAYERS[name]
    h, w, c = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH,) + shape).astype(np.float32)
    out = (BATCH, h - 2, w - 2, filters)
    macs = BATCH * (h - 2) * (w - 2) * 9 * c * filters
    flops = 2 * macs * ((3 if c > 1 else 2) if backward else 1)
    if impl == "pynn":
        from pynn.models.graph_spec import GraphSpec, ParamRef

        spec = GraphSpec()
        t = spec.add_input(shape)
        k = spec.add_param(ParamRef((rng.standard_normal((3, 3, c, filters)) * 0.1)
                                    .astype(np.float32), "kernel"))
        b = spec.add_param(ParamRef(np.zeros(filters, np.float32), "bias"))
        spec.outputs = spec.add_node("conv", [t], [out[1:]], [k, b],
                                     {"activation": "relu"}, "conv")
        g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
        g.set_optimizer("sgd", {"learning_rate": 1e-6})
        target = np.zeros(out, np.float32)
        y = np.empty(out, np.float32)
        if backward:
            def fn():
                g.train_step([x], [target])
        else:
            def fn():
                g.predict([x], [y], BATCH)
    else:
        conv = torch.nn.Conv2d(c, filters, 3)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        xt.requires_grad_(c > 1)

        def fn():
            if backward:
                conv.zero_grad(set_to_none=True)
                torch.relu(conv(xt)).square().mean().backward()
            else:
                with torch.no_grad():
                    torch.relu(conv(xt))
    with thread_limits(threads):
        best = timed(benchmark, fn, rounds=20, warmup=3)
    record("convnet layers, batch 128", f"{name} {'fwd+bwd' if backward else 'fwd'} {threads}t",
           impl, best, flops)
