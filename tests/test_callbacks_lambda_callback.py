"""LambdaCallback: each given function is called at its hook with the hook's arguments."""
import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import CallbackList, LambdaCallback


def test_all_training_hooks_in_order():
    calls = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch,
                                                             logs["loss"])),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs["loss"])),
        on_train_end=lambda logs: calls.append(("train_end",)),
    )
    run_fit(FakeModel(), [cb], losses([0.5, 0.25]), steps=2)
    assert calls == [
        ("train_begin",),
        ("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0, 0.5),
        ("batch_begin", 1), ("batch_end", 1, 0.5), ("epoch_end", 0, 0.5),
        ("epoch_begin", 1), ("batch_begin", 0), ("batch_end", 0, 0.25),
        ("batch_begin", 1), ("batch_end", 1, 0.25), ("epoch_end", 1, 0.25),
        ("train_end",),
    ]


def test_hooks_not_given_do_nothing():
    calls = []
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: calls.append(epoch))
    run_fit(FakeModel(), [cb], losses([1.0] * 3))
    assert calls == [0, 1, 2]


def test_other_hooks_through_keywords():
    calls = []
    cb = LambdaCallback(on_test_end=lambda logs: calls.append(("test_end", logs)),
                        on_predict_batch_end=lambda batch, logs: calls.append(batch))
    cbs = CallbackList([cb])
    cbs.on_predict_batch_end(4, None)
    cbs.on_test_end({"loss": 1.0})
    assert calls == [4, ("test_end", {"loss": 1.0})]


def test_extra_attributes_are_set():
    assert LambdaCallback(name="printer").name == "printer"


def test_unknown_hook_is_refused():
    with pytest.raises(TypeError, match="on_epoch_finish"):
        LambdaCallback(on_epoch_finish=lambda epoch, logs: None)


def test_non_callable_hook_is_refused():
    with pytest.raises(TypeError, match="on_epoch_end"):
        LambdaCallback(on_epoch_end="print")
