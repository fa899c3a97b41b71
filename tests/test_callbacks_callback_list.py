"""Callback (base hooks), CallbackList (fan-out, defaults, log conversion) and History."""
import numpy as np
import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import Callback, CallbackList, History, ProgbarLogger

HOOKS_WITH_INDEX = ["on_batch_begin", "on_batch_end", "on_train_batch_begin",
                    "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
                    "on_predict_batch_begin", "on_predict_batch_end", "on_epoch_begin",
                    "on_epoch_end"]
HOOKS_RUN = ["on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
             "on_predict_begin", "on_predict_end"]


class Recorder(Callback):
    """Records every hook call as (hook, args, logs)."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def __getattribute__(self, name):
        if name in HOOKS_WITH_INDEX or name in HOOKS_RUN:
            calls = object.__getattribute__(self, "calls")
            return lambda *args, **kw: calls.append((name, args[:-1], args[-1] if args else
                                                     kw.get("logs")))
        return object.__getattribute__(self, name)


def test_base_callback_hooks_accept_arguments_and_do_nothing():
    cb = Callback()
    assert cb.model is None and cb.params is None
    for hook in HOOKS_WITH_INDEX:
        assert getattr(cb, hook)(3, {"loss": 1.0}) is None
    for hook in HOOKS_RUN:
        assert getattr(cb, hook)({"loss": 1.0}) is None
    model = FakeModel()
    cb.set_model(model)
    cb.set_params({"epochs": 2})
    assert cb.model is model and cb.params == {"epochs": 2}


def test_train_batch_hooks_forward_to_generic_batch_hooks():
    seen = []

    class Old(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"]))

    run_fit(FakeModel(), [Old()], losses([0.5]), steps=2)
    assert seen == [("begin", 0), ("end", 0, 0.5), ("begin", 1), ("end", 1, 0.5)]


def test_defaults_are_appended_after_user_callbacks():
    user = Callback()
    model = FakeModel()
    cbs = CallbackList([user], add_history=True, add_progbar=True, model=model, verbose=2,
                       epochs=1, steps=3)
    assert cbs.callbacks[0] is user
    assert isinstance(cbs.callbacks[1], History) and isinstance(cbs.callbacks[2], ProgbarLogger)
    assert cbs.history is cbs.callbacks[1] and model.history is cbs.history
    for cb in cbs.callbacks:
        assert cb.model is model
        assert cb.params == {"verbose": 2, "epochs": 1, "steps": 3}


def test_existing_history_and_progbar_are_not_duplicated():
    history, progbar = History(), ProgbarLogger()
    cbs = CallbackList([progbar, history], add_history=True, add_progbar=True,
                       model=FakeModel(), verbose=1, epochs=1, steps=1)
    assert cbs.callbacks == [progbar, history]
    assert cbs.history is history


def test_no_defaults_unless_asked():
    cbs = CallbackList(None)
    assert len(cbs) == 0 and cbs.history is None


def test_single_callback_is_accepted():
    cb = Callback()
    assert CallbackList(cb).callbacks == [cb]


@pytest.mark.parametrize("bad", ["history", 3, {"a": Callback()}])
def test_rejects_what_is_not_a_list_of_callbacks(bad):
    with pytest.raises(TypeError, match="callbacks"):
        CallbackList(bad)


def test_rejects_non_callback_element_naming_its_index():
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        CallbackList([Callback(), lambda epoch, logs: None])


def test_every_hook_is_forwarded_with_its_arguments():
    calls = []
    cbs = CallbackList([Recorder(calls)])
    for hook in HOOKS_WITH_INDEX:
        getattr(cbs, hook)(7, {"loss": 2.0})
    for hook in HOOKS_RUN:
        getattr(cbs, hook)({"loss": 2.0})
    assert [c[0] for c in calls] == HOOKS_WITH_INDEX + HOOKS_RUN
    assert all(c[1] == (7,) for c in calls[:len(HOOKS_WITH_INDEX)])
    assert all(c[1] == () for c in calls[len(HOOKS_WITH_INDEX):])
    assert all(c[2] == {"loss": 2.0} for c in calls)


def test_logs_become_python_floats_in_a_fresh_sorted_dict():
    calls = []
    cbs = CallbackList([Recorder(calls)])
    original = {"val_loss": np.float32(0.25), "loss": np.array(0.5), "accuracy": 1,
                "name": "x"}
    cbs.on_epoch_end(0, original)
    logs = calls[0][2]
    assert list(logs) == ["accuracy", "loss", "name", "val_loss"]
    assert logs == {"accuracy": 1.0, "loss": 0.5, "name": "x", "val_loss": 0.25}
    assert all(type(logs[k]) is float for k in ("accuracy", "loss", "val_loss"))
    logs["learning_rate"] = 0.1  # a callback editing logs must not touch the caller's dict
    assert "learning_rate" not in original


def test_none_logs_become_empty_dict():
    calls = []
    CallbackList([Recorder(calls)]).on_train_begin()
    assert calls == [("on_train_begin", (), {})]


def test_edits_by_earlier_callbacks_are_seen_by_later_ones():
    class AddKey(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = 10.0 * epoch

    history, _ = run_fit(FakeModel(), [AddKey()], losses([0.3, 0.2]))
    assert history.history["extra"] == [0.0, 10.0]


def test_history_records_every_epoch():
    model = FakeModel(learning_rate=0.5)
    logs = [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}]
    history, n = run_fit(model, [], logs)
    assert n == 2
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [1.0, 0.5], "val_loss": [2.0, 1.5],
                               "learning_rate": [0.5, 0.5]}
    assert history.model is model and model.history is history
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 2}


def test_history_passed_to_two_fits_appends_and_resets_epoch_list():
    history = History()
    model = FakeModel()
    run_fit(model, [history], losses([3.0, 2.0]), add_learning_rate=False)
    run_fit(model, [history], losses([1.0]), add_learning_rate=False)
    assert history.history == {"loss": [3.0, 2.0, 1.0]}
    assert history.epoch == [0]
