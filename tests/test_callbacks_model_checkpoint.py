"""ModelCheckpoint: file names from {epoch}/log fields, save_best_only, weights-only, save_freq."""
import os

import pytest
from callback_fakes import FakeModel, read_saved, run_fit

from pynn.callbacks import ModelCheckpoint


def names(directory):
    return sorted(os.listdir(directory))


def test_epoch_and_log_fields_fill_the_file_name(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{val_loss:.2f}.st"))
    run_fit(model, [ckpt], [{"loss": 1.0, "val_loss": 0.5}, {"loss": 0.9, "val_loss": 0.456},
                            {"loss": 0.8, "val_loss": 0.7}])
    # {epoch} is 1-based.
    assert names(tmp_path) == ["ck-01-0.50.st", "ck-02-0.46.st", "ck-03-0.70.st"]
    assert [kind for kind, _ in model.saves] == ["save"] * 3
    assert read_saved(tmp_path / "ck-02-0.46.st")["weights"] == [[2.0, 2.0], [2.0]]


def test_plain_epoch_field_and_path_like(tmp_path):
    run_fit(FakeModel(), [ModelCheckpoint(tmp_path / "m{epoch}.st")],
            [{"val_loss": 1.0}] * 2)
    assert names(tmp_path) == ["m1.st", "m2.st"]


def test_save_best_only_keeps_the_best_model_in_one_file(tmp_path):
    path = str(tmp_path / "best.st")
    model = FakeModel()
    ckpt = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    run_fit(model, [ckpt], [{"val_loss": v} for v in [1.0, 0.6, 0.8, 0.7, 0.65]])
    # Improvements at e0 and e1 only.
    assert model.saves == [("save", path), ("save", path)]
    assert read_saved(path)["weights"] == [[2.0, 2.0], [2.0]]
    assert ckpt.best == 0.6


def test_save_best_only_with_epoch_field_writes_only_improving_epochs(tmp_path):
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}.st"), monitor="val_accuracy",
                           save_best_only=True)
    # Auto mode maximises accuracy: improvements at e0, e2, e4.
    run_fit(FakeModel(), [ckpt], [{"val_accuracy": v} for v in [0.5, 0.4, 0.7, 0.7, 0.8]])
    assert names(tmp_path) == ["e1.st", "e3.st", "e5.st"]


def test_mode_min_on_an_accuracy(tmp_path):
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}.st"), monitor="val_accuracy",
                           save_best_only=True, mode="min")
    run_fit(FakeModel(), [ckpt], [{"val_accuracy": v} for v in [0.5, 0.4, 0.7, 0.3]])
    assert names(tmp_path) == ["e1.st", "e2.st", "e4.st"]


def test_initial_value_threshold_must_be_beaten_first(tmp_path):
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}.st"), save_best_only=True,
                           initial_value_threshold=0.5)
    run_fit(FakeModel(), [ckpt], [{"val_loss": v} for v in [0.9, 0.6, 0.4, 0.45]])
    assert names(tmp_path) == ["e3.st"]


def test_save_weights_only_uses_save_weights(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(str(tmp_path / "w{epoch}.st"), save_weights_only=True)
    run_fit(model, [ckpt], [{"val_loss": 1.0}] * 2)
    assert [kind for kind, _ in model.saves] == ["save_weights", "save_weights"]
    assert read_saved(tmp_path / "w2.st")["kind"] == "save_weights"


def test_integer_save_freq_counts_batches_across_epochs(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.st"), save_freq=3)
    # 3 epochs of 2 batches: the 3rd batch is e1 b0, the 6th is e2 b1 (names are 1-based).
    run_fit(model, [ckpt], [{"loss": 1.0}] * 3, steps=2)
    assert names(tmp_path) == ["e2-b1.st", "e3-b2.st"]


def test_missing_field_in_filepath_names_it(tmp_path):
    ckpt = ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.st"))
    with pytest.raises(KeyError, match="val_acc"):
        run_fit(FakeModel(), [ckpt], [{"val_loss": 1.0}])


def test_missing_monitor_with_save_best_only_warns_and_saves(tmp_path):
    model = FakeModel()
    ckpt = ModelCheckpoint(str(tmp_path / "m.st"), save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss"):
        run_fit(model, [ckpt], [{"loss": 1.0}])
    assert len(model.saves) == 1


def test_parent_directories_are_created(tmp_path):
    run_fit(FakeModel(), [ModelCheckpoint(str(tmp_path / "a" / "b" / "m{epoch}.st"))],
            [{"val_loss": 1.0}])
    assert names(tmp_path / "a" / "b") == ["m1.st"]


def test_directory_as_filepath_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="directory"):
        run_fit(FakeModel(), [ModelCheckpoint(str(tmp_path))], [{"val_loss": 1.0}])


def test_verbose_messages(tmp_path, capsys):
    ckpt = ModelCheckpoint(str(tmp_path / "m.st"), save_best_only=True, verbose=1)
    run_fit(FakeModel(), [ckpt], [{"val_loss": 1.0}, {"val_loss": 2.0}])
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from None to 1.00000, saving model to" in out
    assert "Epoch 2: val_loss did not improve from 1.00000" in out


@pytest.mark.parametrize("kwargs, err, match", [
    ({"filepath": 5}, TypeError, "filepath"),
    ({"filepath": ""}, ValueError, "filepath"),
    ({"filepath": "m.st", "save_freq": 0}, ValueError, "save_freq"),
    ({"filepath": "m.st", "save_freq": "batch"}, ValueError, "save_freq"),
    ({"filepath": "m.st", "mode": "best"}, ValueError, "mode"),
    ({"filepath": "m.st", "initial_value_threshold": "x"}, TypeError,
     "initial_value_threshold"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        ModelCheckpoint(**kwargs)
