"""ReduceLROnPlateau: the learning rate after each epoch under patience, cooldown, min_lr,
min_delta and mode; expected sequences worked out by hand from Keras's rules."""
import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import LambdaCallback, ReduceLROnPlateau


def lr_sequence(values, key="val_loss", lr=1.0, **kwargs):
    """Learning rate in force after each epoch's end hooks."""
    model = FakeModel(learning_rate=lr)
    seen = []
    after = LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        model.optimizer.learning_rate))
    history, _ = run_fit(model, [ReduceLROnPlateau(monitor=key, **kwargs), after],
                         losses(values, key))
    return seen, history


def test_reduces_after_patience_epochs_without_improvement():
    # e0 best; e1 wait 1; e2 wait 2 -> 0.5; e3 wait 1; e4 wait 2 -> 0.25; e5 wait 1.
    seen, _ = lr_sequence([1.0] * 6, factor=0.5, patience=2)
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_improvement_resets_the_wait():
    # e2 improves -> wait 0; e3, e4 flat -> reduce at e4.
    seen, _ = lr_sequence([1.0, 1.0, 0.9, 0.9, 0.9], factor=0.1, patience=2)
    assert seen == [1.0, 1.0, 1.0, 1.0, pytest.approx(0.1, rel=1e-15)]


def test_cooldown_delays_the_next_reduction():
    # Reduce at e2 (cooldown 2); e3 cooldown 1, e4 cooldown 0 and wait restarts at 0 then
    # counts 1; e5 wait 2 -> reduce.
    seen, _ = lr_sequence([1.0] * 6, factor=0.5, patience=2, cooldown=2)
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_min_lr_bounds_the_rate():
    # 1 -> 0.1 -> max(0.01, 0.05) = 0.05, then stays.
    seen, _ = lr_sequence([1.0] * 5, factor=0.1, patience=1, min_lr=0.05)
    assert seen == [1.0, pytest.approx(0.1, rel=1e-15), 0.05, 0.05, 0.05]


def test_min_delta_ignores_small_improvements():
    values = [1.0, 0.99, 0.98, 0.97]
    seen, _ = lr_sequence(values, factor=0.5, patience=1, min_delta=0.05)
    assert seen == [1.0, 0.5, 0.25, 0.125]
    seen, _ = lr_sequence(values, factor=0.5, patience=1, min_delta=0.0)
    assert seen == [1.0] * 4


def test_auto_mode_maximises_accuracy():
    # Accuracy rising is improvement: no reduction until it falls at e2.
    seen, _ = lr_sequence([0.5, 0.6, 0.55], key="val_accuracy", factor=0.5, patience=1)
    assert seen == [1.0, 1.0, 0.5]
    # Forced min: e1 and e2 are both above the best 0.5 -> reduce at each.
    seen, _ = lr_sequence([0.5, 0.6, 0.55], key="val_accuracy", factor=0.5, patience=1,
                          mode="min")
    assert seen == [1.0, 0.5, 0.25]


def test_logs_hold_the_rate_used_during_the_epoch():
    # The rate is logged before it is reduced at that epoch's end.
    _, history = lr_sequence([1.0] * 4, factor=0.5, patience=1)
    assert history.history["learning_rate"] == [1.0, 1.0, 0.5, 0.25]


def test_state_reset_between_fits():
    model = FakeModel(learning_rate=1.0)
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
    run_fit(model, [cb], losses([1.0, 1.0]))
    assert model.optimizer.learning_rate == 0.5
    # New fit: best forgotten, so the first epoch of the second run is an improvement.
    run_fit(model, [cb], losses([5.0]))
    assert model.optimizer.learning_rate == 0.5


def test_missing_monitor_warns_and_leaves_rate():
    model = FakeModel(learning_rate=1.0)
    with pytest.warns(UserWarning, match="val_loss"):
        run_fit(model, [ReduceLROnPlateau(patience=0)], losses([1.0, 1.0]))
    assert model.optimizer.learning_rate == 1.0


def test_verbose_message(capsys):
    lr_sequence([1.0, 1.0], factor=0.5, patience=1, verbose=1)
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.5." in capsys.readouterr().out


def test_defaults_follow_keras():
    cb = ReduceLROnPlateau()
    assert (cb.monitor, cb.factor, cb.patience, cb.verbose, cb.mode, cb.min_delta,
            cb.cooldown, cb.min_lr) == ("val_loss", 0.1, 10, 0, "auto", 1e-4, 0, 0.0)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"factor": 1.0}, ValueError, "factor"),
    ({"factor": 2}, ValueError, "factor"),
    ({"factor": 0.0}, ValueError, "factor"),
    ({"factor": "half"}, TypeError, "factor"),
    ({"patience": -1}, ValueError, "patience"),
    ({"cooldown": -1}, ValueError, "cooldown"),
    ({"min_lr": -1e-3}, ValueError, "min_lr"),
    ({"mode": "up"}, ValueError, "mode"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        ReduceLROnPlateau(**kwargs)
