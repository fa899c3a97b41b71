"""EarlyStopping: the epoch it stops at under patience, min_delta, mode, baseline,
start_from_epoch, and the weights it restores. Expected epochs are worked out by hand in the
comments from Keras 3's documented rules."""
import numpy as np
import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import EarlyStopping


def fit(values, key="loss", **kwargs):
    model = FakeModel()
    stop = EarlyStopping(monitor=key, **kwargs)
    history, n = run_fit(model, [stop], losses(values, key))
    return model, stop, n


def test_patience_counts_epochs_without_improvement():
    # best 1.0 (e0), 0.9 (e1); e2 and e3 do not improve -> wait reaches 2 at e3.
    _, stop, n = fit([1.0, 0.9, 0.95, 0.92, 0.5, 0.4], patience=2)
    assert n == 4
    assert stop.stopped_epoch == 3 and stop.best == 0.9


def test_improvement_resets_patience():
    # e2 worse (wait 1), e3 better (wait 0), e4, e5 worse (wait 2) -> stop at e5.
    _, stop, n = fit([1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.1], patience=2)
    assert n == 6 and stop.stopped_epoch == 5


def test_patience_zero_stops_at_first_non_improvement_but_never_at_epoch_0():
    _, _, n = fit([1.0, 0.9, 0.9, 0.1], patience=0)
    assert n == 3


def test_runs_all_epochs_while_improving():
    model, stop, n = fit([5.0, 4.0, 3.0, 2.0], patience=0)
    assert n == 4 and stop.stopped_epoch == 0 and not model.stop_training


def test_min_delta_requires_a_large_enough_improvement():
    values = [1.0, 0.95, 0.91, 0.88, 0.86]
    # Each step improves by < 0.1: with min_delta=0.1, e1 is not an improvement -> stop.
    assert fit(values, patience=1, min_delta=0.1)[2] == 2
    assert fit(values, patience=1, min_delta=0.0)[2] == 5
    # A negative min_delta means the same as its absolute value (Keras).
    assert fit(values, patience=1, min_delta=-0.1)[2] == 2


def test_auto_mode_maximises_accuracy_and_minimises_loss():
    acc = [0.5, 0.6, 0.55, 0.58, 0.9]
    # max: best 0.6 at e1, e2 and e3 below it -> stop at e3 (4 epochs).
    _, stop, n = fit(acc, key="val_accuracy", patience=2)
    assert n == 4 and stop.best == 0.6
    # Forcing min: only e0 counts as best, e1 and e2 do not improve -> 3 epochs.
    assert fit(acc, key="val_accuracy", patience=2, mode="min")[2] == 3
    assert fit(acc, key="val_accuracy", patience=2, mode="max")[2] == 4
    # val_loss in auto mode is minimised: rising values stop it at e2.
    assert fit([1.0, 1.1, 1.2, 0.1], key="val_loss", patience=1)[2] == 2


@pytest.mark.parametrize("key", ["precision", "val_recall", "auc", "f1_score"])
def test_auto_mode_maximises_other_scores(key):
    # Rising values are improvements, so all 4 epochs run even with patience 0.
    assert fit([0.1, 0.2, 0.3, 0.4], key=key, patience=0)[2] == 4


def test_auto_mode_for_an_unknown_name_asks_for_a_mode():
    stop = EarlyStopping(monitor="my_score")
    with pytest.raises(ValueError, match="mode='max'"):
        run_fit(FakeModel(), [stop], losses([1.0], "my_score"))


def test_auto_mode_uses_the_direction_of_a_model_metric():
    class Metric:
        name = "my_score"
        direction = "up"

    model = FakeModel()
    model.metrics = [Metric()]
    _, n = run_fit(model, [EarlyStopping(monitor="val_my_score", patience=0)],
                   losses([0.1, 0.2, 0.1, 0.5], "val_my_score"))
    assert n == 3  # rising is better: e2 drops -> stop


def test_baseline_not_reached_but_improving_runs_every_epoch():
    # Each epoch improves on the previous one but never goes below 0.5: as in Keras 3, an
    # improving epoch never stops training (tests/test_keras_surface.py runs Keras itself).
    _, stop, n = fit([1.0, 0.9, 0.8, 0.7, 0.6], patience=3, baseline=0.5)
    assert n == 5 and stop.stopped_epoch == 0
    # once it stops improving, patience (counted from the first epoch) runs out at once
    _, stop, n = fit([1.0, 0.9, 0.8, 0.8, 0.8], patience=3, baseline=0.5)
    assert n == 4 and stop.stopped_epoch == 3


def test_baseline_reached_resets_patience():
    # e0, e1 above 0.85 (wait 1, 2); e2 beats it (wait 0); e3, e4 improve further.
    assert fit([1.0, 0.9, 0.8, 0.7, 0.6], patience=3, baseline=0.85)[2] == 5


def test_start_from_epoch_ignores_warm_up_epochs():
    flat = [1.0] * 6
    assert fit(flat, patience=0)[2] == 2
    # e0-e2 not monitored, e3 sets the best, e4 does not improve -> 5 epochs.
    model, stop, n = fit(flat, patience=0, start_from_epoch=3)
    assert n == 5 and stop.stopped_epoch == 4


def test_restore_best_weights_after_early_stop():
    # FakeModel holds weights = epoch + 1. Best loss at e1 -> weights 2.
    model, stop, n = fit([1.0, 0.5, 0.7, 0.8, 0.1], patience=2, restore_best_weights=True)
    assert n == 4 and stop.best_epoch == 1
    assert all(np.all(w == 2.0) for w in model.get_weights())


def test_restore_best_weights_also_when_training_runs_to_the_end():
    model, _, n = fit([1.0, 0.5, 0.7], patience=5, restore_best_weights=True)
    assert n == 3
    assert all(np.all(w == 2.0) for w in model.get_weights())


def test_weights_kept_without_restore_best_weights():
    model, _, _ = fit([1.0, 0.5, 0.7, 0.8], patience=2)
    assert all(np.all(w == 4.0) for w in model.get_weights())


def test_restore_best_weights_within_patience_window_when_baseline_never_beaten():
    # Documented: restore from the best epoch of the window even if the baseline is missed.
    model, _, n = fit([1.0, 0.7, 0.9], patience=3, baseline=0.1, restore_best_weights=True)
    assert n == 3
    assert all(np.all(w == 2.0) for w in model.get_weights())


def test_state_is_reset_between_fits():
    model = FakeModel()
    stop = EarlyStopping(monitor="loss", patience=1)
    assert run_fit(model, [stop], losses([1.0, 2.0, 3.0]))[1] == 2
    # A fresh run starts from no best value: 5.0 is accepted as the first best.
    assert run_fit(model, [stop], losses([5.0, 4.0, 3.0]))[1] == 3


def test_verbose_messages(capsys):
    fit([1.0, 0.5, 0.6, 0.7], patience=1, verbose=1, restore_best_weights=True)
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_silent_by_default(capsys):
    fit([1.0, 0.5, 0.6, 0.7], patience=1, restore_best_weights=True)
    assert capsys.readouterr().out == ""


def test_missing_monitor_warns_and_does_not_stop():
    model = FakeModel()
    with pytest.warns(UserWarning, match="val_loss.*not available.*loss"):
        _, n = run_fit(model, [EarlyStopping(patience=0)], losses([1.0, 2.0, 3.0]))
    assert n == 3


@pytest.mark.parametrize("kwargs, err, match", [
    ({"mode": "maximum"}, ValueError, "mode"),
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, ValueError, "patience"),
    ({"start_from_epoch": -2}, ValueError, "start_from_epoch"),
    ({"min_delta": "0.1"}, TypeError, "min_delta"),
    ({"baseline": "low"}, TypeError, "baseline"),
    ({"monitor": None}, TypeError, "monitor"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        EarlyStopping(**kwargs)


def test_defaults_follow_keras():
    stop = EarlyStopping()
    assert (stop.monitor, stop.min_delta, stop.patience, stop.verbose, stop.mode,
            stop.baseline, stop.restore_best_weights, stop.start_from_epoch) == \
        ("val_loss", 0, 0, 0, "auto", None, False, 0)
