"""The fused C++ optimizer updates against the NumPy twin (pynn.reference.optimizers).

The twin runs in float64 from the same float32 starting values and gradients; the core runs in
float32. Tolerance: each step rounds every slot and parameter a few times (~3 float32 ops of
relative error 2^-24 ≈ 6e-8 each); the moving averages are contractions, so slot errors stay at
that level (observed ≤ 6e-7), while the parameter sums STEPS rounded updates: after 30 steps
|Δ| ≤ ~30·4·6e-8 ≈ 7e-6 relative to the parameter's scale of 1 (observed ≤ 2.5e-6, SGD with
momentum at lr 0.1). Parameters: rtol = atol = 2e-5; slots: rtol 2e-5, atol 1e-6 (the small
slots, Adadelta's Δ² average, are compared relatively). Effects of epsilon's placement are
below any float32 tolerance; the float64 hand-derived tests (test_ref_optimizers.py) pin those.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pynn import _core
from pynn.reference import optimizers as ro

SIZES = [0, 1, 15, 16, 17, 1000]
STEPS = 30
TOL = dict(rtol=2e-5, atol=2e-5)
SLOT_TOL = dict(rtol=2e-5, atol=1e-6)

CONFIGS = [
    ("sgd", {}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adagrad", {"learning_rate": 0.05}),
    ("adagrad", {"initial_accumulator_value": 0.5, "epsilon": 1e-4}),
    ("adadelta", {"learning_rate": 1.0}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"momentum": 0.5, "centered": True, "rho": 0.8}),
    ("adam", {"learning_rate": 0.01}),
    ("adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("adamw", {"learning_rate": 0.01}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("nadam", {"learning_rate": 0.01}),
    ("adamax", {"learning_rate": 0.01, "beta_2": 0.9}),
    ("sgd", {"learning_rate": 0.1, "weight_decay": 0.05}),
    ("rmsprop", {"weight_decay": 0.01, "clipvalue": 0.7}),
    ("adam", {"learning_rate": 0.01, "clipnorm": 2.0}),
    ("nadam", {"learning_rate": 0.01, "global_clipnorm": 5.0}),
    ("adagrad", {"clipvalue": 0.3}),
]


def ids(c):
    return c[0] + "-" + "-".join(f"{k}={v}" for k, v in c[1].items())


def run_both(kind, config, sizes, steps, seed=0):
    """Runs `steps` steps of the core and of the twin on one tensor per size."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    slots = [_core.optimizer_slots(kind, config, p.shape) for p in params]
    ref = ro.get(kind, **config)
    ref_params = [p.astype(np.float64) for p in params]
    u = 1.0
    for t in range(1, steps + 1):
        # Gradients of varying scale so that clipping engages on some steps and not others.
        grads = [(rng.standard_normal(n) * (0.2 + 3 * (t % 3))).astype(np.float32) for n in sizes]
        u = _core.optimizer_apply(kind, config, t, params, grads, slots, u)
        ref.apply([g.astype(np.float64) for g in grads], ref_params)
    return params, slots, ref_params, ref, u


@pytest.mark.parametrize("kind,config", CONFIGS, ids=[ids(c) for c in CONFIGS])
def test_core_matches_twin_over_many_steps(kind, config):
    params, slots, ref_params, ref, u = run_both(kind, config, SIZES, STEPS)
    assert _core.optimizer_slot_names(kind, config) == ref.slot_names()
    for n, p, s, rp, rs in zip(SIZES, params, slots, ref_params, ref.slots):
        np.testing.assert_allclose(p, rp, **TOL, err_msg=f"{kind} {config} size {n}: param")
        assert len(s) == len(rs)
        for name, a, b in zip(ref.slot_names(), s, rs):
            np.testing.assert_allclose(a, b, **SLOT_TOL,
                                       err_msg=f"{kind} {config} size {n}: slot {name}")
    if kind == "nadam":
        assert u == pytest.approx(ref.u_product, rel=1e-12)


def test_parameters_actually_move():
    # Guards the comparison above against both sides doing nothing.
    params, _, ref_params, _, _ = run_both("adam", {"learning_rate": 0.01}, [1000], 10)
    start = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert np.abs(params[0] - start).max() > 0.05
    assert np.abs(ref_params[0] - start).max() > 0.05


@pytest.mark.parametrize("kind", ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw",
                                  "nadam", "adamax"])
def test_defaults_are_keras(kind):
    cfg = _core.optimizer_config(kind)
    ref = ro.get(kind)
    assert cfg["learning_rate"] == ref.learning_rate
    for key in ("rho", "epsilon", "beta_1", "beta_2", "momentum", "initial_accumulator_value"):
        if key in cfg:
            assert cfg[key] == getattr(ref, key), key
    assert cfg["weight_decay"] == (0.004 if kind == "adamw" else None)
    assert cfg["clipnorm"] is None and cfg["clipvalue"] is None


def test_config_reads_back_the_written_decimals():
    # The core holds float32 hyperparameters but forms 1 - beta_2 from the decimal the user
    # wrote, as Keras does with its Python floats; the config shows that decimal.
    cfg = _core.optimizer_config("adam", {"beta_2": 0.9999, "learning_rate": 3e-4,
                                          "epsilon": 1e-8})
    assert (cfg["beta_2"], cfg["learning_rate"], cfg["epsilon"]) == (0.9999, 3e-4, 1e-8)
    # One step with beta_2 = 0.9999: v = (1 - 0.9999) g² exactly as Keras's float32 would get
    # it (rel 1e-6: one float32 rounding of 1e-4 and one of the product).
    w = np.zeros(1, np.float32)
    slots = _core.optimizer_slots("adam", cfg, w.shape)
    _core.optimizer_update("adam", cfg, 1, w, np.array([3.0], np.float32), slots)
    assert slots[1][0] == pytest.approx((1 - 0.9999) * 9.0, rel=1e-6)


def test_slot_layout_and_initial_values():
    assert _core.optimizer_slot_names("sgd") == []
    assert _core.optimizer_slot_names("sgd", {"momentum": 0.9}) == ["momentum"]
    assert _core.optimizer_slot_names("rmsprop", {"centered": True}) == ["velocity",
                                                                        "average_gradient"]
    assert _core.optimizer_slot_names("adam", {"amsgrad": True}) == ["momentum", "velocity",
                                                                     "velocity_hat"]
    (acc,) = _core.optimizer_slots("adagrad", {"initial_accumulator_value": 0.25}, (3, 2))
    assert acc.shape == (3, 2) and acc.dtype == np.float32
    np.testing.assert_array_equal(acc, 0.25)
    m, v = _core.optimizer_slots("adamax", None, (4,))
    np.testing.assert_array_equal(m, 0)
    np.testing.assert_array_equal(v, 0)


def test_update_single_tensor_with_grad_scale_and_2d_shape():
    # optimizer_update takes the norm-clipping factor as grad_scale; check it on a 2-D tensor.
    rng = np.random.default_rng(1)
    w = rng.standard_normal((17, 5)).astype(np.float32)
    g = rng.standard_normal((17, 5)).astype(np.float32)
    slots = _core.optimizer_slots("adam", None, w.shape)
    w_ref = w.astype(np.float64)
    ref = ro.Adam()
    ref.build([w_ref])
    _core.optimizer_update("adam", None, 1, w, g, slots, 1.0, 0.25)
    ref.update(1, w_ref, 0.25 * g.astype(np.float64), ref.slots[0])
    np.testing.assert_allclose(w, w_ref, **TOL)
    np.testing.assert_allclose(slots[1], ref.slots[0][1], rtol=1e-6)


def test_nadam_scalar_state_advances_like_keras():
    u = 1.0
    ref = ro.Nadam()
    for t in range(1, 6):
        u = _core.optimizer_begin_step("nadam", None, t, u)
        ref.begin_step(t)
    assert u == pytest.approx(ref.u_product, rel=1e-12)
    # Other optimizers keep no scalar state.
    assert _core.optimizer_begin_step("adam", None, 3, 1.0) == 1.0


def test_global_clipnorm_with_non_finite_gradient_poisons_the_step():
    # Keras makes the global scale NaN when the norm is inf/NaN instead of passing it on.
    w = [np.ones(3, np.float32), np.ones(2, np.float32)]
    g = [np.array([1, np.inf, 0], np.float32), np.ones(2, np.float32)]
    _core.optimizer_apply("sgd", {"global_clipnorm": 1.0}, 1, w, g, [[], []])
    assert np.isnan(w[0]).all() and np.isnan(w[1]).all()
    ref_w = [np.ones(3), np.ones(2)]
    ro.SGD(global_clipnorm=1.0).apply([x.astype(np.float64) for x in g], ref_w)
    assert np.isnan(ref_w[0]).all() and np.isnan(ref_w[1]).all()


def test_no_weight_decay_leaves_infinite_weight_alone():
    # With decay off the kernel must not compute w - w*0 (inf*0 = NaN).
    w = np.array([np.inf, 1.0], np.float32)
    _core.optimizer_update("sgd", None, 1, w, np.zeros(2, np.float32), [])
    assert w[0] == np.inf and w[1] == 1.0


def test_thread_count_does_not_change_results():
    # Large enough to be split among threads (chunks of 32768); not a multiple of 16.
    n = 3 * 32768 + 13
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    before = _core.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            w = w0.copy()
            slots = _core.optimizer_slots("adam", None, w.shape)
            _core.optimizer_update("adam", None, 1, w, g, slots)
            _core.optimizer_update("adam", None, 2, w, g, slots)
            results.append((w, slots))
    finally:
        _core.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1][1], results[1][1][1])


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_apply_splits_tensors_in_one_region_bitwise(kind):
    # optimizer_apply runs every tensor's elements in one region, cut at element counts that
    # fall inside tensors (sizes like a 784-256-128-10 MLP's, odd ones included): the result
    # must be each tensor's own update, on 1 and 2 threads alike.
    sizes = [784 * 91 + 3, 91, 40000, 1, 17, 65537]
    rng = np.random.default_rng(5)
    w0 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    config = {"momentum": 0.9} if kind != "adam" else None
    before = _core.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            ws = [w.copy() for w in w0]
            slots = [_core.optimizer_slots(kind, config, w.shape) for w in ws]
            for t in (1, 2, 3):
                _core.optimizer_apply(kind, config, t, ws, grads, slots)
            results.append((ws, slots))
        _core.set_num_threads(1)
        ws = [w.copy() for w in w0]
        slots = [_core.optimizer_slots(kind, config, w.shape) for w in ws]
        for t in (1, 2, 3):
            for w, g, s in zip(ws, grads, slots):
                _core.optimizer_update(kind, config, t, w, g, s)
        results.append((ws, slots))
    finally:
        _core.set_num_threads(before)
    for ws, slots in results[1:]:
        for a, b in zip(results[0][0], ws):
            np.testing.assert_array_equal(a, b)
        for sa, sb in zip(results[0][1], slots):
            for a, b in zip(sa, sb):
                np.testing.assert_array_equal(a, b)


def test_sum_of_squares_and_clip_scale():
    g = np.arange(1000, dtype=np.float32) / 100
    # rel 1e-12: float64 accumulation of exact float32 squares.
    assert _core.sum_of_squares(g) == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)),
                                                    rel=1e-12)
    assert _core.sum_of_squares(np.zeros(0, np.float32)) == 0.0
    assert _core.clip_scale(5.0, 1.0) == pytest.approx(0.2)
    assert _core.clip_scale(0.5, 1.0) == 1.0
    assert _core.clip_scale(5.0, 0.0) == 1.0  # 0 = off


ARCH_SCRIPT = textwrap.dedent("""
    import numpy as np
    from pynn import _core
    from pynn.reference import optimizers as ro
    rng = np.random.default_rng(3)
    for kind, cfg in [("adam", {"amsgrad": True}), ("nadam", {}), ("rmsprop",
                      {"momentum": 0.5, "centered": True}), ("adadelta", {}),
                      ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
                      ("adamax", {"clipvalue": 0.5}), ("adagrad", {})]:
        for n in (1, 15, 16, 17, 33, 1000):
            w = rng.standard_normal(n).astype(np.float32)
            s = _core.optimizer_slots(kind, cfg, w.shape)
            rw = w.astype(np.float64)
            ref = ro.get(kind, **cfg)
            u = 1.0
            for t in range(1, 11):
                g = rng.standard_normal(n).astype(np.float32)
                u = _core.optimizer_apply(kind, cfg, t, [w], [g], [s], u)
                ref.apply([g.astype(np.float64)], [rw])
            np.testing.assert_allclose(w, rw, rtol=2e-5, atol=2e-5, err_msg=f"{kind} {n}")
        # cut among threads (chunks of 32768) inside the vector loop: the same bits
        n = 3 * 32768 + 13
        w0, g = rng.standard_normal((2, n)).astype(np.float32)
        out = []
        for threads in (1, 2):
            _core.set_num_threads(threads)
            w = w0.copy()
            s = _core.optimizer_slots(kind, cfg, w.shape)
            u = 1.0
            for t in (1, 2, 3):
                u = _core.optimizer_apply(kind, cfg, t, [w], [g], [s], u)
            out.append([w] + list(s))
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b, err_msg=f"{kind}: 1 vs 2 threads")
    print("ok", _core.arch())
""")


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_every_instruction_set_path(arch):
    # The loops are compiled once per ISA; the choice is made at import, hence a subprocess.
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU lacks {arch}")
    env = dict(os.environ, PYNN_ARCH=arch)
    out = subprocess.run([sys.executable, "-c", ARCH_SCRIPT], env=env, capture_output=True,
                         text=True, cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", arch]


# -- bad input ------------------------------------------------------------------------------

def test_bad_kind_and_config():
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="kind: unknown optimizer 'adamm'; expected one of"):
        _core.optimizer_slots("adamm", None, (3,))
    with pytest.raises(ValueError, match="'momentum' is not an argument of adam"):
        _core.optimizer_config("adam", {"momentum": 0.9})
    with pytest.raises(ValueError, match="only one of clipnorm and global_clipnorm"):
        _core.optimizer_config("adam", {"clipnorm": 1.0, "global_clipnorm": 1.0})
    with pytest.raises(ValueError, match="momentum.*\\[0, 1\\]"):
        _core.optimizer_config("sgd", {"momentum": 1.5})
    with pytest.raises(ValueError, match="finite"):
        _core.optimizer_config("sgd", {"learning_rate": float("nan")})
    with pytest.raises(TypeError, match="nesterov.*bool"):
        _core.optimizer_config("sgd", {"nesterov": 1})
    with pytest.raises(ValueError, match="adamw: expected weight_decay >= 0, got None"):
        _core.optimizer_config("adamw", {"weight_decay": None})
    with pytest.raises(ValueError, match="t: expected"):
        _core.optimizer_update("sgd", None, 0, w, w.copy(), [])
    with pytest.raises(ValueError, match="grad_scale"):
        _core.optimizer_update("sgd", None, 1, w, w.copy(), [], 1.0, float("inf"))
    with pytest.raises(ValueError, match="optimizer_apply"):
        _core.optimizer_update("sgd", {"clipnorm": 1.0}, 1, w, w.copy(), [])


def test_bad_arrays():
    w = np.zeros(4, np.float32)
    g = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="grad: expected shape \\(4,\\)"):
        _core.optimizer_update("sgd", None, 1, w, np.zeros(5, np.float32), [])
    with pytest.raises(TypeError, match="grad: expected a float32"):
        _core.optimizer_update("sgd", None, 1, w, np.zeros(4), [])
    with pytest.raises(ValueError, match="slots: expected 2 slot arrays"):
        _core.optimizer_update("adam", None, 1, w, g, [np.zeros(4, np.float32)])
    with pytest.raises(ValueError, match="slots\\[1\\]: expected shape"):
        _core.optimizer_update("adam", None, 1, w, g, [np.zeros(4, np.float32),
                                                      np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="param: expected a C-contiguous"):
        _core.optimizer_update("sgd", None, 1, np.zeros(8, np.float32)[::2], g, [])
    ro_w = np.zeros(4, np.float32)
    ro_w.flags.writeable = False
    with pytest.raises(ValueError, match="param: array is read-only"):
        _core.optimizer_update("sgd", None, 1, ro_w, g, [])
    with pytest.raises(ValueError, match="same length"):
        _core.optimizer_apply("sgd", None, 1, [w], [], [])
    with pytest.raises(ValueError, match="tensor 0: slots: expected 1"):
        _core.optimizer_apply("sgd", {"momentum": 0.5}, 1, [w], [g], [[]])


def test_course_momentum_through_the_core():
    # SPEC §4's momentum m = γm + (1−γ)g, w −= αm, run in float64 by the twin's helper, against
    # the core's SGD with learning_rate α(1−γ), momentum γ (the documented mapping), 40 steps.
    rng = np.random.default_rng(4)
    alpha, gamma = 0.1, 0.9
    w = rng.standard_normal(17).astype(np.float32)
    w_course, m = w.astype(np.float64), np.zeros(17)
    cfg = ro.course_momentum_as_keras(alpha, gamma)
    slots = _core.optimizer_slots("sgd", cfg, w.shape)
    for t in range(1, 41):
        g = rng.standard_normal(17).astype(np.float32)
        ro.course_momentum_step(w_course, g.astype(np.float64), m, alpha, gamma)
        _core.optimizer_update("sgd", cfg, t, w, g, slots)
    np.testing.assert_allclose(w, w_course, **TOL)
    # Keras's velocity is −α(1−γ)·(usual m') = −α·(course m).
    np.testing.assert_allclose(slots[0], -alpha * m, rtol=2e-5, atol=1e-6)
