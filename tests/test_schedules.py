"""Learning-rate schedules: values against Keras's at many steps, applied once per optimizer
step in training, and saved with the model."""
import numpy as np
import pytest

import pynn
from pynn.optimizers import schedules as S

STEPS = [0, 1, 2, 3, 5, 9, 10, 11, 17, 25, 49, 50, 51, 99, 100, 101, 250, 777, 1000, 5000]
CASES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9}),
    ("ExponentialDecay", {"initial_learning_rate": 0.5, "decay_steps": 7, "decay_rate": 0.5,
                          "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [10, 50, 100], "values": [1.0, 0.5, 0.1, 0.01]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 100}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 30,
                         "end_learning_rate": 0.01, "power": 0.5, "cycle": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5,
                          "staircase": True}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 100}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 100, "alpha": 0.1}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 200, "warmup_target": 0.2,
                     "warmup_steps": 50}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 20}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10,
                             "t_mul": 1.0, "m_mul": 0.8, "alpha": 0.05}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 15,
                             "t_mul": 3.0, "m_mul": 0.5}),
]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_values_match_keras(keras, name, kwargs):
    ours = getattr(S, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    for step in STEPS:
        want = float(np.asarray(theirs(step)))
        # both in float32, through pow/cos/log: a few ulps
        assert float(ours(step)) == pytest.approx(want, rel=2e-6, abs=1e-9), step
    again = S.deserialize(S.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    # Keras's config reads back in pynn (same constructor arguments)
    assert getattr(S, name).from_config(theirs.get_config()).get_config() == ours.get_config()


def test_documented_values():
    # ExponentialDecay's formula: 0.1 * 0.96 ** (1000 / 100000) etc.
    lr = S.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    assert float(lr(200)) == pytest.approx(0.025)
    pw = S.PiecewiseConstantDecay([100000, 110000], [1.0, 0.5, 0.1])
    assert [float(pw(s)) for s in (0, 100000, 100001, 110000, 110001)] == \
        [1.0, 1.0, 0.5, 0.5, pytest.approx(0.1)]
    cos = S.CosineDecay(0.1, decay_steps=100)
    assert float(cos(50)) == pytest.approx(0.05)
    assert float(cos(100)) == pytest.approx(0.0, abs=1e-9)
    assert float(cos(150)) == pytest.approx(0.0, abs=1e-9)   # stays at the end
    poly = S.PolynomialDecay(0.1, 10, end_learning_rate=0.0)
    assert float(poly(5)) == pytest.approx(0.05)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="decay_steps: expected a number > 0"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="values: expected one more value than boundaries"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.01])
    with pytest.raises(ValueError, match="boundaries: expected increasing steps"):
        S.PiecewiseConstantDecay([5, 2], [0.1, 0.01, 0.001])
    with pytest.raises(TypeError, match="initial_learning_rate: expected a finite real number"):
        S.CosineDecay("0.1", 10)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'Nope'"):
        S.deserialize({"class_name": "Nope", "config": {}})


def _xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    return x, (x @ rng.normal(size=(5, 2))).astype(np.float32)


def _model():
    pynn.utils.set_random_seed(2)
    return pynn.Sequential([pynn.Input((5,)), pynn.layers.Dense(4, activation="tanh"),
                            pynn.layers.Dense(2)])


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_schedule_is_applied_at_every_step(opt):
    x, y = _xy()
    schedule = S.CosineDecayRestarts(0.05, first_decay_steps=3)
    a = _model()
    optimizer = getattr(pynn.optimizers, opt)(learning_rate=schedule)
    a.compile(optimizer, loss="mse")
    a.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)   # 12 steps
    assert optimizer.iterations == 12
    assert optimizer.learning_rate == pytest.approx(float(schedule(12)))
    # the same steps with the rate set by hand before each one
    b = _model()
    manual = getattr(pynn.optimizers, opt)(learning_rate=float(schedule(0)))
    b.compile(manual, loss="mse")
    for step in range(12):
        manual.learning_rate = float(schedule(step))
        start = (step % 4) * 16
        b.train_on_batch(x[start:start + 16], y[start:start + 16])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_schedule_starting_at_zero_and_not_settable():
    opt = pynn.optimizers.SGD(learning_rate=S.CosineDecay(0.0, 100, warmup_target=0.1,
                                                           warmup_steps=10))
    assert opt.learning_rate == 0.0
    with pytest.raises(TypeError, match="the learning rate comes from the schedule"):
        opt.learning_rate = 0.01


def test_saved_and_loaded_with_the_model(tmp_path):
    x, y = _xy()
    model = _model()
    model.compile(pynn.optimizers.Adam(learning_rate=S.InverseTimeDecay(0.01, 5, 0.5)),
                  loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = pynn.models.load_model(path)
    assert isinstance(again.optimizer._schedule, S.InverseTimeDecay)
    assert again.optimizer.iterations == 4
    assert again.optimizer.learning_rate == pytest.approx(model.optimizer.learning_rate)
    # training continues with the schedule where it was
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    again.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for wa, wb in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    cfg = pynn.optimizers.serialize(again.optimizer)
    assert cfg["config"]["learning_rate"]["class_name"] == "InverseTimeDecay"
    assert type(pynn.optimizers.deserialize(cfg)._schedule) is S.InverseTimeDecay


def test_a_registered_schedule_of_ones_own(tmp_path):
    @pynn.saving.register_serializable(package="test_schedules")
    class Halving(S.LearningRateSchedule):
        def __init__(self, start, every):
            self.start, self.every = start, every

        def __call__(self, step):
            return np.float32(self.start * 0.5 ** (step // self.every))

        def get_config(self):
            return {"start": self.start, "every": self.every}

    x, y = _xy()
    model = _model()
    model.compile(pynn.optimizers.SGD(learning_rate=Halving(0.02, 2)), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert model.optimizer.learning_rate == pytest.approx(0.02 * 0.25)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = pynn.models.load_model(path)
    assert isinstance(again.optimizer._schedule, Halving)
