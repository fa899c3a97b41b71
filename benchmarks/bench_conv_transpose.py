"""Transposed convolutions against PyTorch CPU in the same run: the decoder of a small
convolutional autoencoder / DCGAN generator on 28x28 images, batch 128.

    Conv2DTranspose(32, 3, strides=2, padding="same", relu)   (7, 7, 64) -> (14, 14, 32)
    Conv2DTranspose(1, 3, strides=2, padding="same", sigmoid)  (14, 14, 32) -> (28, 28, 1)

PyTorch's equivalent is ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1), whose
outputs are Keras's for this geometry. Timed: predict (forward) and one SGD training step on a
mean squared error (forward, both kernels' gradients and the input gradient of the second
layer), on 1 and 2 threads.

"pynn_bf16" is the same decoder under the mixed_bfloat16 policy (every product on bf16-rounded
operands, float32 sums: VDPBF16PS / AMX where the CPU has them, an exact emulation elsewhere);
"torch_bf16" is PyTorch under torch.autocast("cpu", torch.bfloat16), its own mixed precision.
test_decoder_ratios notes the times as ratios to PyTorch float32 and pynn float32.

    pytest benchmarks/bench_conv_transpose.py -s
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import record, thread_limits, timed

import pynn
from pynn import layers

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

BATCH = 128
# multiply-adds per image of the forward pass: every input position times kh*kw*F*C
_FWD = 2 * (7 * 7 * 9 * 32 * 64 + 14 * 14 * 9 * 1 * 32)
# training: forward, both kernel gradients, the second layer's input gradient
FLOP_TRAIN = _FWD + 2 * (7 * 7 * 9 * 32 * 64 + 14 * 14 * 9 * 32) + 2 * 14 * 14 * 9 * 32


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 7, 7, 64)).astype(np.float32)
    t = rng.random((BATCH, 28, 28, 1)).astype(np.float32)
    return x, t


def pynn_model(dtype=None):
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([
        pynn.Input((7, 7, 64)),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                               dtype=dtype),
        layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid",
                               dtype=dtype)])
    model.compile(optimizer=pynn.optimizers.SGD(0.01), loss="mse")
    return model


def torch_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),
        torch.nn.Sigmoid())
    return net, torch.optim.SGD(net.parameters(), lr=0.01)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["predict", "train_step"])
@pytest.mark.parametrize("impl", ["pynn", "pynn_bf16"] +
                         (["torch", "torch_bf16"] if torch is not None else []))
def test_decoder(benchmark, impl, kind, threads):
    x, t = _data()
    with thread_limits(threads):
        if impl.startswith("pynn"):
            before = pynn.get_num_threads()
            pynn.set_num_threads(threads)
            model = pynn_model("mixed_bfloat16" if impl == "pynn_bf16" else None)
            if kind == "predict":
                def fn():
                    model.predict(x, batch_size=BATCH, verbose=0)
            else:
                def fn():
                    model.train_on_batch(x, t)
            try:
                seconds = timed(benchmark, fn)
            finally:
                pynn.set_num_threads(before)
        else:
            net, opt = torch_model()
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            tt = torch.from_numpy(np.ascontiguousarray(t.transpose(0, 3, 1, 2)))
            bf16 = impl == "torch_bf16"
            if kind == "predict":
                def fn():
                    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        net(xt)
            else:
                def fn():
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        y = net(xt)
                    torch.nn.functional.mse_loss(y.float(), tt).backward()
                    opt.step()
            seconds = timed(benchmark, fn)
    flops = BATCH * (_FWD if kind == "predict" else FLOP_TRAIN)
    record(f"conv_transpose decoder {kind}, batch {BATCH}", f"{threads}t", impl,
           seconds, flops)


def test_decoder_ratios():
    """Notes the times as ratios: each to PyTorch float32's, and bf16 to float32 per library."""
    from conftest import NOTES, RESULTS

    for group, cases in RESULTS.items():
        if not group.startswith("conv_transpose decoder"):
            continue
        for case, per in cases.items():
            parts = [f"{i} {per[i][0] / per['torch'][0]:.2f}x" for i in
                     ("pynn", "pynn_bf16", "torch_bf16") if i in per and "torch" in per]
            for lib in ("pynn", "torch"):
                if lib in per and lib + "_bf16" in per:
                    parts.append(f"{lib} bf16/fp32 {per[lib + '_bf16'][0] / per[lib][0]:.2f}x")
            NOTES.append(f"{group} {case}: time / PyTorch fp32's: " + ", ".join(parts))
