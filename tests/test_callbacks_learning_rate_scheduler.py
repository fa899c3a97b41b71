"""LearningRateScheduler: the rate set at each epoch's start, both schedule signatures."""
import numpy as np
import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import LambdaCallback, LearningRateScheduler


def rates(schedule, epochs=4, lr=1.0, **kwargs):
    """Learning rate seen by each epoch (after the scheduler's on_epoch_begin)."""
    model = FakeModel(learning_rate=lr)
    seen = []
    peek = LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        model.optimizer.learning_rate))
    history, _ = run_fit(model, [LearningRateScheduler(schedule, **kwargs), peek],
                         losses([1.0] * epochs))
    return seen, history


def test_schedule_of_epoch_and_rate():
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr if epoch < 2 else lr * 0.5

    seen, history = rates(schedule)
    assert seen == [1.0, 1.0, 0.5, 0.25]
    assert calls == [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.5)]
    assert history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.25]


def test_schedule_of_epoch_only():
    seen, _ = rates(lambda epoch: 0.25 * (epoch + 1))
    assert seen == [0.25, 0.5, 0.75, 1.0]


def test_integer_and_numpy_results_become_floats():
    seen, _ = rates(lambda epoch, lr: np.float32(0.5) if epoch else 2, epochs=2)
    assert seen == [2.0, 0.5] and all(type(v) is float for v in seen)


@pytest.mark.parametrize("result", ["0.1", None, float("nan"), -0.1, True])
def test_bad_schedule_result(result):
    with pytest.raises(ValueError, match="schedule"):
        rates(lambda epoch, lr: result, epochs=1)


def test_schedule_must_be_callable():
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(0.1)


def test_optimizer_without_learning_rate():
    model = FakeModel()
    model.optimizer = object()
    with pytest.raises(ValueError, match="learning_rate"):
        run_fit(model, [LearningRateScheduler(lambda e, lr: lr)], losses([1.0]))


def test_verbose_message(capsys):
    rates(lambda epoch, lr: 0.5, epochs=1, verbose=1)
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.5." in \
        capsys.readouterr().out
