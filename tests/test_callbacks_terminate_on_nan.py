"""TerminateOnNaN: a NaN or infinite batch loss stops training at that batch."""
import math

import pytest
from callback_fakes import FakeModel, losses, run_fit

from pynn.callbacks import Callback, TerminateOnNaN


def script(bad_epoch, bad_batch, bad_value):
    def batch_logs(epoch, batch):
        return {"loss": bad_value if (epoch, batch) == (bad_epoch, bad_batch) else 0.5}
    return batch_logs


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_stops_at_the_bad_batch(bad, capsys):
    model = FakeModel()
    seen = []

    class Count(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    _, n = run_fit(model, [TerminateOnNaN(), Count()], losses([1.0] * 5), steps=4,
                   batch_logs=script(1, 2, bad))
    assert model.stop_training
    assert n == 2  # the epoch with the bad batch is the last one
    assert len(seen) == 4 + 3  # epoch 0 complete, epoch 1 up to batch 2
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


def test_finite_losses_do_not_stop():
    model = FakeModel()
    _, n = run_fit(model, [TerminateOnNaN()], losses([1e30, 0.0, -5.0]))
    assert n == 3 and not model.stop_training


def test_batches_without_loss_are_ignored():
    _, n = run_fit(FakeModel(), [TerminateOnNaN()], losses([1.0, 1.0]),
                   batch_logs=lambda e, b: {"accuracy": math.nan})
    assert n == 2


def test_raise_error():
    with pytest.raises(RuntimeError, match="batch 0"):
        run_fit(FakeModel(), [TerminateOnNaN(raise_error=True)], losses([1.0]),
                batch_logs=script(0, 0, math.nan))
