"""Memory: 100 rounds of fit / predict (and of whole model lifecycles) keep the process's RSS
flat. Each scenario runs in a fresh child process so that the rest of the test session does not
move its resident set.

Tolerance: after a warm-up (the engine sizes its buffers for the largest batch, NumPy and
Python fill their free lists and malloc settles its arenas), the RSS may still move by a few
pages as glibc trims or keeps freed chunks. The bound, 2 MiB over 100 rounds, is smaller than
what any per-round leak of the data these rounds touch would add: one leaked copy of the
inputs (512 x 64 float32 = 128 KiB) a round is 12.5 MiB, one leaked copy of a model's weights
and optimizer state (~100 KiB) 10 MiB.
"""
from __future__ import annotations

import os

import rel_helpers

ROUNDS, WARMUP = 100, 15
TOLERANCE_MIB = 2.0


def _rss_mib():
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(step):
    import gc

    for _ in range(WARMUP):
        step()
    gc.collect()
    start = _rss_mib()
    samples = []
    for _ in range(ROUNDS):
        step()
        gc.collect()
        samples.append(_rss_mib())
    return {"start": start, "end": samples[-1], "max": max(samples),
            "growth": samples[-1] - start}


def fit_predict_rounds():
    import numpy as np

    import pynn
    from pynn import layers as L

    pynn.utils.set_random_seed(0)
    m = pynn.Sequential([pynn.Input((64,)), L.Dense(128, activation="relu"),
                         L.BatchNormalization(), L.Dropout(0.2), L.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    x64 = x.astype(np.float64)  # forces the conversion path every round
    y = rng.integers(0, 10, 512)

    def step():
        m.fit(x64, y, epochs=1, batch_size=64, validation_split=0.25, verbose=0)
        m.predict(x, verbose=0)
        m.predict(x[:1], verbose=0)
        m.evaluate(x, y, verbose=0)
        m.train_on_batch(x[:32], y[:32])

    return _measure(step)


def model_lifecycle_rounds():
    import tempfile

    import numpy as np

    import pynn
    from pynn import layers as L

    folder = tempfile.mkdtemp()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 32)).astype(np.float32)
    y = rng.integers(0, 4, 256)

    def step():
        m = pynn.Sequential([pynn.Input((32,)), L.Dense(64, activation="relu"),
                             L.Dense(4, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=1, batch_size=32, verbose=0)
        m.save(os.path.join(folder, "m.safetensors"))
        back = pynn.models.load_model(os.path.join(folder, "m.safetensors"))
        back.predict(x, verbose=0)
        try:
            back.fit(x[:, :5], y, verbose=0)  # an error path must not leak either
        except ValueError:
            pass

    return _measure(step)


def leaky_rounds():
    kept = []
    import numpy as np

    return _measure(lambda: kept.append(np.ones(32768, np.float32)))  # 128 KiB a round


def _child(names):
    for name in names:
        rel_helpers.report(name, **globals()[name]())


def _check(name):
    results, crashes = rel_helpers.run_cases("test_memory", [name], timeout=300)
    assert not crashes, crashes
    r = results[name]
    print(f"\n{name}: RSS {r['start']:.1f} -> {r['end']:.1f} MiB over {ROUNDS} rounds "
          f"(growth {r['growth'] * 1024:.0f} KiB, max {r['max']:.1f} MiB)")
    assert r["growth"] <= TOLERANCE_MIB, r
    assert r["max"] - r["start"] <= TOLERANCE_MIB, r


def test_fit_predict_rounds_keep_rss_flat():
    _check("fit_predict_rounds")


def test_model_lifecycles_keep_rss_flat():
    _check("model_lifecycle_rounds")


def test_the_measure_sees_a_leak():
    # The same measurement over a step that keeps 128 KiB a round must exceed the bound.
    results, crashes = rel_helpers.run_cases("test_memory", ["leaky_rounds"], timeout=300)
    assert not crashes, crashes
    assert results["leaky_rounds"]["growth"] > TOLERANCE_MIB
