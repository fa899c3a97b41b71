"""CSVLogger: header, one row per epoch, separator, append, NA columns, flushing."""
import csv

import pytest
from callback_fakes import FakeModel, run_fit

from pynn.callbacks import CSVLogger, LambdaCallback


def read_rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_header_and_rows(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75, "val_accuracy": 0.125},
            {"loss": 0.375, "accuracy": 0.5, "val_loss": 0.625, "val_accuracy": 0.25}]
    run_fit(FakeModel(learning_rate=0.001), [CSVLogger(str(path))], logs)
    rows = read_rows(path)
    assert rows[0] == ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy",
                       "val_loss"]
    assert [[float(x) for x in r] for r in rows[1:]] == [
        [0, 0.25, 0.001, 0.5, 0.125, 0.75], [1, 0.5, 0.001, 0.375, 0.25, 0.625]]


def test_values_round_trip_exactly(tmp_path):
    path = tmp_path / "log.csv"
    values = [0.1 + 0.2, 1e-12, 123456.789]
    run_fit(FakeModel(), [CSVLogger(path)], [{"val_loss": v} for v in values],
            add_learning_rate=False)
    assert [float(r[1]) for r in read_rows(path)[1:]] == values


def test_without_validation_keys_val_columns_are_na(tmp_path):
    path = tmp_path / "log.csv"
    run_fit(FakeModel(), [CSVLogger(path)], [{"loss": 1.0}], add_learning_rate=False)
    assert read_rows(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"]]


def test_separator(tmp_path):
    path = tmp_path / "log.csv"
    run_fit(FakeModel(), [CSVLogger(path, separator=";")], [{"val_loss": 1.5}],
            add_learning_rate=False)
    assert path.read_text() == "epoch;val_loss\n0;1.5\n"


def test_overwrites_by_default(tmp_path):
    path = tmp_path / "log.csv"
    for v in (1.0, 2.0):
        run_fit(FakeModel(), [CSVLogger(path)], [{"val_loss": v}], add_learning_rate=False)
    assert read_rows(path) == [["epoch", "val_loss"], ["0", "2.0"]]


def test_append_writes_the_header_once(tmp_path):
    path = tmp_path / "log.csv"
    for v in (1.0, 2.0):
        run_fit(FakeModel(), [CSVLogger(path, append=True)], [{"val_loss": v}],
                add_learning_rate=False)
    assert read_rows(path) == [["epoch", "val_loss"], ["0", "1.0"], ["0", "2.0"]]


def test_append_to_empty_file_writes_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("")
    run_fit(FakeModel(), [CSVLogger(path, append=True)], [{"val_loss": 1.0}],
            add_learning_rate=False)
    assert read_rows(path)[0] == ["epoch", "val_loss"]


def test_each_row_is_on_disk_before_the_next_epoch(tmp_path):
    path = tmp_path / "log.csv"
    seen = []
    peek = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(len(read_rows(path))))
    run_fit(FakeModel(), [CSVLogger(path), peek], [{"val_loss": 1.0}] * 3,
            add_learning_rate=False)
    assert seen == [2, 3, 4]


def test_file_closed_at_train_end(tmp_path):
    logger = CSVLogger(tmp_path / "log.csv")
    run_fit(FakeModel(), [logger], [{"val_loss": 1.0}])
    assert logger.csv_file.closed


def test_list_values_are_quoted(tmp_path):
    path = tmp_path / "log.csv"
    run_fit(FakeModel(), [CSVLogger(path)], [{"val_loss": 1.0, "val_f1": [0.5, 0.25]}],
            add_learning_rate=False)
    assert read_rows(path)[1] == ["0", '"[0.5, 0.25]"', "1.0"]


@pytest.mark.parametrize("kwargs, err, match", [
    ({"filename": None}, TypeError, "filename"),
    ({"filename": "x.csv", "separator": ";;"}, ValueError, "separator"),
    ({"filename": "x.csv", "separator": "\n"}, ValueError, "separator"),
    ({"filename": "x.csv", "separator": 1}, ValueError, "separator"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        CSVLogger(**kwargs)
