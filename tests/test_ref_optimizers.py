"""The NumPy optimizers against values worked out by hand from the update rules (SPEC §4).

Each expected value below is derived in the comments from the rule itself, step by step, with
plain Python arithmetic, never by calling the code under test. Scalars in float64, so the only
error is rounding: rel 1e-12 covers a handful of float64 operations.
"""
import math

import numpy as np
import pytest

from pynn.reference import optimizers as ro

REL = 1e-12


def run(opt, w0, grad_of_w, steps):
    """Runs `steps` steps on parameter(s) w0 (list of floats) with gradient grad_of_w(w)."""
    w = np.array(w0, dtype=np.float64)
    trail = []
    for _ in range(steps):
        opt.apply([grad_of_w(w)], [w])
        trail.append(w.copy())
    return trail


def test_sgd_plain_on_quadratic():
    # L = w²/2, g = w, α = 0.1: w ← w − 0.1 w = 0.9 w → 0.9, 0.81, 0.729.
    trail = run(ro.SGD(learning_rate=0.1), [1.0], lambda w: w.copy(), 3)
    assert [t[0] for t in trail] == pytest.approx([0.9, 0.81, 0.729], rel=REL)


def test_sgd_momentum_on_quadratic():
    # Keras form v = γv − αg, w = w + v with γ = 0.9, α = 0.1, g = w:
    # step 1: v = −0.1,                       w = 0.9
    # step 2: v = 0.9(−0.1) − 0.1(0.9) = −0.18, w = 0.72
    # step 3: v = 0.9(−0.18) − 0.1(0.72) = −0.234, w = 0.486
    trail = run(ro.SGD(learning_rate=0.1, momentum=0.9), [1.0], lambda w: w.copy(), 3)
    assert [t[0] for t in trail] == pytest.approx([0.9, 0.72, 0.486], rel=REL)


def test_sgd_nesterov_on_quadratic():
    # v = γv − αg; w = w + γv − αg, γ = 0.9, α = 0.1, g = w:
    # step 1: g = 1,    v = −0.1,   w = 1 + 0.9(−0.1) − 0.1 = 0.81
    # step 2: g = 0.81, v = −0.09 − 0.081 = −0.171, w = 0.81 − 0.1539 − 0.081 = 0.5751
    trail = run(ro.SGD(learning_rate=0.1, momentum=0.9, nesterov=True), [1.0],
                lambda w: w.copy(), 2)
    assert [t[0] for t in trail] == pytest.approx([0.81, 0.5751], rel=REL)


def test_course_momentum_equals_keras_momentum_with_scaled_rate():
    # The course: m = γm + (1−γ)g, w −= αm. With γ = 0.5, α = 0.4, g = w, w0 = 1:
    # step 1: m = 0.5,                w = 1 − 0.2 = 0.8
    # step 2: m = 0.25 + 0.4 = 0.65,  w = 0.8 − 0.26 = 0.54
    # step 3: m = 0.325 + 0.27 = 0.595, w = 0.54 − 0.238 = 0.302
    w, m = np.array([1.0]), np.zeros(1)
    course = []
    for _ in range(3):
        ro.course_momentum_step(w, w.copy(), m, alpha=0.4, gamma=0.5)
        course.append(w[0])
    assert course == pytest.approx([0.8, 0.54, 0.302], rel=REL)
    # Keras SGD with learning_rate = α(1−γ) = 0.2 and momentum γ follows the same trajectory.
    cfg = ro.course_momentum_as_keras(0.4, 0.5)
    assert cfg == {"learning_rate": pytest.approx(0.2), "momentum": 0.5}
    trail = run(ro.SGD(**cfg), [1.0], lambda w: w.copy(), 3)
    assert [t[0] for t in trail] == pytest.approx(course, rel=REL)


def test_course_momentum_mapping_on_random_gradients():
    # The mapping holds for any gradient sequence, not only on a quadratic: m = (1−γ)m' exactly.
    rng = np.random.default_rng(0)
    alpha, gamma = 0.05, 0.8
    w_course = rng.standard_normal(7)
    w_keras = w_course.copy()
    m = np.zeros(7)
    opt = ro.SGD(**ro.course_momentum_as_keras(alpha, gamma))
    for _ in range(50):
        g = rng.standard_normal(7)
        ro.course_momentum_step(w_course, g, m, alpha, gamma)
        opt.apply([g], [w_keras])
    np.testing.assert_allclose(w_keras, w_course, rtol=1e-12, atol=1e-12)


def test_adagrad_course_form():
    # Course: G += g², Δw = −αg/√G; Keras's form with initial_accumulator_value 0, ε = 0.
    # Constant g = 2, α = 0.1: G = 4, 8, 12 → Δw = −0.2/2, −0.2/√8, −0.2/√12.
    trail = run(ro.Adagrad(learning_rate=0.1, initial_accumulator_value=0.0, epsilon=0.0),
                [1.0], lambda w: np.array([2.0]), 3)
    expected = [1 - 0.1, 1 - 0.1 - 0.2 / math.sqrt(8), 1 - 0.1 - 0.2 / math.sqrt(8)
                - 0.2 / math.sqrt(12)]
    assert [t[0] for t in trail] == pytest.approx(expected, rel=REL)


def test_adagrad_keras_defaults():
    # G starts at 0.1, ε = 1e-7 inside the root; g = 2, α = 0.001: G = 4.1, then 8.1.
    trail = run(ro.Adagrad(), [1.0], lambda w: np.array([2.0]), 2)
    d1 = 0.001 * 2 / math.sqrt(4.1 + 1e-7)
    d2 = 0.001 * 2 / math.sqrt(8.1 + 1e-7)
    assert [t[0] for t in trail] == pytest.approx([1 - d1, 1 - d1 - d2], rel=REL)


def test_adadelta():
    # v = ρv + (1−ρ)g²; Δ = −√(D+ε) g/√(v+ε); D = ρD + (1−ρ)Δ²; w += αΔ. ρ = 0.95, ε = 1e-6,
    # α = 1 (the paper's form), g = 1 constant:
    eps, rho = 1e-6, 0.95
    v1 = 0.05
    d1 = -math.sqrt(eps) / math.sqrt(v1 + eps)
    D1 = 0.05 * d1 * d1
    v2 = 0.95 * v1 + 0.05
    d2 = -math.sqrt(D1 + eps) / math.sqrt(v2 + eps)
    opt = ro.Adadelta(learning_rate=1.0, rho=rho, epsilon=eps)
    trail = run(opt, [0.0], lambda w: np.array([1.0]), 2)
    assert [t[0] for t in trail] == pytest.approx([d1, d1 + d2], rel=REL)
    np.testing.assert_allclose(opt.slots[0][1], [0.95 * D1 + 0.05 * d2 * d2], rtol=REL)


def test_rmsprop_course_form():
    # v = β₂v + (1−β₂)g², Δw = −αg/√v; β₂ = 0.9, α = 0.01, g = 1: v = 0.1, 0.19, 0.271.
    trail = run(ro.RMSprop(learning_rate=0.01, rho=0.9, epsilon=0.0), [1.0],
                lambda w: np.array([1.0]), 3)
    d = [0.01 / math.sqrt(0.1), 0.01 / math.sqrt(0.19), 0.01 / math.sqrt(0.271)]
    assert [t[0] for t in trail] == pytest.approx([1 - d[0], 1 - d[0] - d[1],
                                                   1 - sum(d)], rel=REL)


def test_rmsprop_centered_with_momentum():
    # ḡ = 0.9ḡ + 0.1g, d = v − ḡ² + ε, Δ = αg/√d, m = μm + Δ, w −= m; g = 1, α = 0.01, μ = 0.5,
    # ε = 0: step 1 v = 0.1, ḡ = 0.1, d = 0.09; step 2 v = 0.19, ḡ = 0.19, d = 0.19 − 0.0361.
    i1 = 0.01 / math.sqrt(0.09)
    i2 = 0.01 / math.sqrt(0.19 - 0.0361)
    m1, m2 = i1, 0.5 * i1 + i2
    opt = ro.RMSprop(learning_rate=0.01, rho=0.9, momentum=0.5, epsilon=0.0, centered=True)
    trail = run(opt, [1.0], lambda w: np.array([1.0]), 2)
    assert [t[0] for t in trail] == pytest.approx([1 - m1, 1 - m1 - m2], rel=REL)


def test_adam_bias_correction():
    # With a constant g, m_t = (1−β₁ᵗ)g and v_t = (1−β₂ᵗ)g², so m̂ = g and v̂ = g²: the course's
    # Δw = −α m̂/√v̂ = −α sign(g) every step. Keras's ε sits on √v: Δw = −α_t m/(√v + ε) with
    # α_t = α√(1−β₂ᵗ)/(1−β₁ᵗ), i.e. −α g √(1−β₂ᵗ)/(√(1−β₂ᵗ)|g| + ε).
    g, a, eps = 0.5, 0.001, 1e-7
    steps = [a * g * math.sqrt(1 - 0.999**t) / (math.sqrt(1 - 0.999**t) * g + eps)
             for t in (1, 2, 3)]
    trail = run(ro.Adam(), [1.0], lambda w: np.array([g]), 3)
    assert [t[0] for t in trail] == pytest.approx(
        [1 - steps[0], 1 - steps[0] - steps[1], 1 - sum(steps)], rel=REL)
    # And with ε = 0 exactly the course's −α per step.
    trail = run(ro.Adam(epsilon=0.0), [1.0], lambda w: np.array([g]), 3)
    assert [t[0] for t in trail] == pytest.approx([0.999, 0.998, 0.997], rel=REL)


def test_adam_two_steps_varying_gradient():
    # g1 = 1, g2 = −2, β = (0.9, 0.999), α = 0.1, ε = 0:
    # m1 = 0.1, v1 = 0.001, α_1 = 0.1·√0.001/0.1 → Δ1 = α_1·0.1/√0.001 = 0.1
    # m2 = 0.09 − 0.2 = −0.11, v2 = 0.000999 + 0.004 = 0.004999,
    # α_2 = 0.1·√(1−0.998001)/(1−0.81), Δ2 = α_2·(−0.11)/√0.004999
    grads = iter([1.0, -2.0])
    trail = run(ro.Adam(learning_rate=0.1, epsilon=0.0), [0.0],
                lambda w: np.array([next(grads)]), 2)
    a2 = 0.1 * math.sqrt(1 - 0.998001) / 0.19
    d2 = a2 * -0.11 / math.sqrt(0.004999)
    assert [t[0] for t in trail] == pytest.approx([-0.1, -0.1 - d2], rel=1e-10)


def test_amsgrad_uses_the_running_maximum():
    # g1 = 2 then g2 = 0.01: v1 = 0.004, v2 = 0.999·0.004 + 0.001·0.0001 = 0.0039961 < v1, so
    # v̂ stays 0.004 and step 2 divides by √0.004 where plain Adam would use √0.0039961.
    opt = ro.Adam(learning_rate=0.1, epsilon=0.0, amsgrad=True)
    grads = iter([2.0, 0.01])
    trail = run(opt, [0.0], lambda w: np.array([next(grads)]), 2)
    m2 = 0.9 * 0.2 + 0.1 * 0.01
    a2 = 0.1 * math.sqrt(1 - 0.999**2) / (1 - 0.81)
    assert trail[1][0] == pytest.approx(trail[0][0] - a2 * m2 / math.sqrt(0.004), rel=1e-10)
    assert opt.slots[0][2][0] == pytest.approx(0.004, rel=REL)
    assert opt.slots[0][1][0] == pytest.approx(0.0039961, rel=REL)


def test_adamw_decays_then_steps():
    # w ← w − w·wd·lr, then Adam's step: w0 = 2, wd = 0.004, lr = 0.001, g = 1, ε = 0:
    # decay → 2 − 2·0.004·0.001 = 1.999992; Adam step −0.001 (constant-gradient case above).
    trail = run(ro.AdamW(epsilon=0.0), [2.0], lambda w: np.array([1.0]), 1)
    assert trail[0][0] == pytest.approx(1.999992 - 0.001, rel=REL)


def test_nadam_two_steps():
    # u_t = 0.9(1 − ½·0.96ᵗ), P_t = u_1⋯u_t; g = 1 constant, lr = 0.001, ε = 0.
    u = [0.9 * (1 - 0.5 * 0.96**t) for t in (1, 2, 3)]
    P1, P2 = u[0], u[0] * u[1]
    m1, v1 = 0.1, 0.001
    mh1 = u[1] * m1 / (1 - P1 * u[1]) + (1 - u[0]) / (1 - P1)
    w1 = -0.001 * mh1 / math.sqrt(v1 / 0.001)
    m2, v2 = 0.19, 0.001999
    mh2 = u[2] * m2 / (1 - P2 * u[2]) + (1 - u[1]) / (1 - P2)
    w2 = w1 - 0.001 * mh2 / math.sqrt(v2 / (1 - 0.999**2))
    opt = ro.Nadam(epsilon=0.0)
    trail = run(opt, [0.0], lambda w: np.array([1.0]), 2)
    assert [t[0] for t in trail] == pytest.approx([w1, w2], rel=1e-10)
    assert opt.u_product == pytest.approx(P2, rel=REL)


def test_adamax():
    # Constant g: m_t = (1−β₁ᵗ)g, u_t = |g|, so Δw = −lr·g/(|g| + ε) every step.
    g, eps = -0.25, 1e-7
    trail = run(ro.Adamax(), [0.0], lambda w: np.array([g]), 3)
    d = 0.001 * g / (abs(g) + eps)
    assert [t[0] for t in trail] == pytest.approx([-d, -2 * d, -3 * d], rel=1e-10)


def test_clipnorm_per_tensor():
    # g = (3, 4) has norm 5; clipnorm 1 → (0.6, 0.8); SGD lr 1 → w = −(0.6, 0.8).
    # A second tensor of norm 0.5 < 1 is left alone.
    w1, w2 = np.zeros(2), np.zeros(1)
    ro.SGD(learning_rate=1.0, clipnorm=1.0).apply([np.array([3.0, 4.0]), np.array([0.5])],
                                                  [w1, w2])
    np.testing.assert_allclose(w1, [-0.6, -0.8], rtol=REL)
    np.testing.assert_allclose(w2, [-0.5], rtol=REL)


def test_global_clipnorm():
    # Two tensors (3) and (4): global norm 5 → both scaled by 1/5 with global_clipnorm 1.
    w1, w2 = np.zeros(1), np.zeros(1)
    ro.SGD(learning_rate=1.0, global_clipnorm=1.0).apply([np.array([3.0]), np.array([4.0])],
                                                         [w1, w2])
    np.testing.assert_allclose([w1[0], w2[0]], [-0.6, -0.8], rtol=REL)


def test_clipvalue():
    w = np.zeros(3)
    ro.SGD(learning_rate=1.0, clipvalue=0.5).apply([np.array([3.0, -0.2, -7.0])], [w])
    np.testing.assert_allclose(w, [-0.5, 0.2, 0.5], rtol=REL)


def test_only_one_clip():
    with pytest.raises(ValueError, match="Only one of"):
        ro.Adam(clipnorm=1.0, clipvalue=1.0)


def test_get_registry_and_defaults():
    assert ro.get("SGD").learning_rate == 0.01
    assert ro.get("adadelta").rho == 0.95
    assert ro.get("rmsprop").rho == 0.9
    assert ro.get("adamw").weight_decay == 0.004
    assert ro.get("adagrad").initial_accumulator_value == 0.1
    with pytest.raises(ValueError, match="unknown optimizer"):
        ro.get("adamm")
