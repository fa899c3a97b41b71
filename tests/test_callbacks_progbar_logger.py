"""ProgbarLogger: what fit, evaluate and predict print at each verbosity.

The module clock is frozen (or stepped by the test) so times print as "0s"; metric values in
batch logs are running averages already (Keras 3), so the bar shows them as given.
"""
import io

from callback_fakes import FakeModel, run_fit

from pynn.callbacks import CallbackList, ProgbarLogger

LOGS = [{"loss": 0.5, "val_loss": 0.75}, {"loss": 0.25, "val_loss": 0.5}]


def test_verbose_2_one_line_per_epoch(clock, capsys):
    run_fit(FakeModel(), [], LOGS, steps=3, verbose=2)
    assert capsys.readouterr().out == (
        "Epoch 1/2\n"
        "3/3 - 0s - 0s/step - learning_rate: 0.0100 - loss: 0.5000 - val_loss: 0.7500\n"
        "Epoch 2/2\n"
        "3/3 - 0s - 0s/step - learning_rate: 0.0100 - loss: 0.2500 - val_loss: 0.5000\n")


def test_single_epoch_has_no_epoch_header(clock, capsys):
    run_fit(FakeModel(), [], LOGS[:1], steps=1, verbose=2, add_learning_rate=False)
    assert capsys.readouterr().out == "1/1 - 0s - 0s/step - loss: 0.5000 - val_loss: 0.7500\n"


def test_verbose_1_updates_in_place_with_running_values(clock, capsys):
    def batch_logs(epoch, batch):
        clock.now += 1.0  # one second per batch, so every update is past the interval
        return {"loss": [2.0, 1.5, 1.0][batch]}

    run_fit(FakeModel(), [], LOGS[:1], steps=3, verbose=1, batch_logs=batch_logs,
            add_learning_rate=False)
    out = capsys.readouterr().out
    chunks = out.split("\r")
    assert chunks[0] == ""  # single epoch: no header
    # Shown as given (1.5 at batch 1, not the mean of 2.0 and 1.5).
    assert chunks[1].startswith("1/3 ") and chunks[1].endswith(" 2s 1s/step - loss: 2.0000")
    assert chunks[2].startswith("2/3 ") and chunks[2].endswith(" 1s 1s/step - loss: 1.5000")
    # Batch 3 is the target but its update is not final: the epoch end finalizes the line.
    assert chunks[4].startswith("3/3 ") and chunks[4].endswith(
        " 3s 1s/step - loss: 0.5000 - val_loss: 0.7500\n")
    assert out.count("\n") == 1


def test_validation_inside_fit_draws_nothing(clock):
    out = io.StringIO()
    model = FakeModel()
    cbs = CallbackList([ProgbarLogger(stream=out)], model=model, verbose=2, epochs=1, steps=1)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    cbs.on_train_batch_end(0, {"loss": 1.0})
    cbs.on_test_begin()
    cbs.on_test_batch_end(0, {"loss": 3.0})
    cbs.on_test_end({"loss": 3.0})
    cbs.on_epoch_end(0, {"loss": 1.0, "val_loss": 3.0})
    cbs.on_train_end()
    assert out.getvalue() == "1/1 - 0s - 0s/step - loss: 1.0000 - val_loss: 3.0000\n"


def test_evaluate_draws_its_own_bar(clock):
    out = io.StringIO()
    cbs = CallbackList([ProgbarLogger(stream=out)], model=FakeModel(), verbose=2, epochs=1,
                       steps=2)
    cbs.on_test_begin()
    for batch in range(2):
        cbs.on_test_batch_end(batch, {"loss": 1.0})
    cbs.on_test_end({"loss": 0.875, "accuracy": 0.5})
    assert out.getvalue() == "2/2 - 0s - 0s/step - accuracy: 0.5000 - loss: 0.8750\n"


def test_predict_shows_no_metrics(clock):
    out = io.StringIO()
    cbs = CallbackList([ProgbarLogger(stream=out)], verbose=2, epochs=1, steps=2)
    cbs.on_predict_begin()
    for batch in range(2):
        cbs.on_predict_batch_end(batch, {"outputs": 1.0})
    cbs.on_predict_end()
    assert out.getvalue() == "2/2 - 0s - 0s/step\n"


def test_unknown_steps_take_the_count_seen(clock):
    out = io.StringIO()
    cbs = CallbackList([ProgbarLogger(stream=out)], model=FakeModel(), verbose=2, epochs=1,
                       steps=None)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    for batch in range(5):
        cbs.on_train_batch_end(batch, {"loss": 1.0})
    cbs.on_epoch_end(0, {"loss": 1.0})
    cbs.on_train_end()
    assert out.getvalue() == "5/5 - 0s - 0s/step - loss: 1.0000\n"


def test_auto_verbosity_on_a_file_is_one_line_per_epoch(clock):
    out = io.StringIO()
    logger = ProgbarLogger(stream=out)
    run_fit(FakeModel(), [logger], LOGS[:1], steps=2, verbose="auto",
            add_learning_rate=False)
    assert logger.verbose == 2
    assert out.getvalue() == "2/2 - 0s - 0s/step - loss: 0.5000 - val_loss: 0.7500\n"


def test_auto_verbosity_on_a_terminal_is_the_live_bar(clock):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    out = TTY()
    logger = ProgbarLogger(stream=out)
    run_fit(FakeModel(), [logger], LOGS[:1], steps=2, verbose="auto")
    assert logger.verbose == 1 and out.getvalue().startswith("\r")


def test_verbose_0_prints_nothing(clock, capsys):
    run_fit(FakeModel(), [ProgbarLogger()], LOGS, steps=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_training_ended_mid_epoch_closes_the_live_line(clock):
    out = io.StringIO()
    cbs = CallbackList([ProgbarLogger(stream=out)], model=FakeModel(), verbose=1, epochs=1,
                       steps=10)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    cbs.on_train_batch_end(0, {"loss": 1.0})
    cbs.on_train_end()  # e.g. interrupted before the epoch's end
    assert out.getvalue().startswith("\r 1/10 ") and out.getvalue().endswith("\n")
    assert out.getvalue().count("\n") == 1


def test_finished_epoch_gets_no_extra_newline(clock):
    out = io.StringIO()
    run_fit(FakeModel(), [ProgbarLogger(stream=out)], LOGS[:1], steps=1, verbose=1)
    assert out.getvalue().count("\n") == 1 and not out.getvalue().endswith("\n\n")
