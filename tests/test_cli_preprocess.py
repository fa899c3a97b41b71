"""pynn.cli.preprocess: the typed tabular and image preprocessors behind `pynn train`.

Expected values are computed here with NumPy from the same raw cells, independently of the
preprocessor's own code paths.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from pynn import cli
from pynn.cli.preprocess import (
    MISSING,
    CategoricalColumn,
    ClassTarget,
    ImagePreprocessor,
    NumericColumn,
    RegressionTarget,
    Table,
    TabularPreprocessor,
    preprocessor_from_dict,
)

COLOURS = ["red", "green", "blue"]


def make_table(n=60, seed=0, target="text"):
    """Columns: x (numeric, some missing), colour (text, some missing), z (numeric), y.

    y is a text class, a small set of integer classes, or a real number.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, n)
    z = rng.uniform(-5, 5, n)
    colour = rng.choice(COLOURS, n)
    rows = []
    for i in range(n):
        if target == "text":
            y = "hi" if x[i] > 3 else "lo"
        elif target == "int":
            y = str(1 + i % 3)
        else:
            y = repr(float(2 * x[i] - z[i]))
        rows.append([repr(float(x[i])) if i % 7 != 3 else "NA",
                     str(colour[i]) if i % 11 != 5 else "",
                     repr(float(z[i])), y])
    return Table(["x", "colour", "z", "y"], rows)


def column_cells(table, name):
    j = list(table.header).index(name)
    return [r[j] for r in table.rows]


def expected_numeric(train, test, name):
    """Standardised test cells with the mean/std of the present training cells; missing -> 0."""
    present = np.array([float(c) for c in column_cells(train, name)
                        if c.lower() not in MISSING])
    mean, std = present.mean(), present.std()
    out = np.zeros(len(test.rows))
    for k, c in enumerate(column_cells(test, name)):
        if c.lower() not in MISSING:
            out[k] = (float(c) - mean) / std
    return out[:, None]


def expected_one_hot(train, test, name):
    cats = sorted({c for c in column_cells(train, name) if c.lower() not in MISSING})
    cells = np.array(column_cells(test, name))
    return (cells[:, None] == np.array(cats)[None, :]).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# fit / transform

def test_fit_and_transform_numeric_and_categorical_columns():
    train, test = make_table(seed=1), make_table(n=25, seed=2)
    pre = TabularPreprocessor.fit(train, "y")
    assert [type(c) for c in pre.columns] == [NumericColumn, CategoricalColumn, NumericColumn]
    assert pre.task == "classification" and pre.class_names == ("hi", "lo")
    x = pre.transform(test)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    expected = np.hstack([expected_numeric(train, test, "x"),
                          expected_one_hot(train, test, "colour"),
                          expected_numeric(train, test, "z")])
    assert x.shape == (25, pre.n_features) == (25, 1 + len(COLOURS) + 1)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    assert pre.feature_names == ["x", "colour=blue", "colour=green", "colour=red", "z"]


def test_fit_statistics_match_numpy():
    train = make_table(seed=3)
    pre = TabularPreprocessor.fit(train, "y")
    x_col, colour, z_col = pre.columns
    present = np.array([float(c) for c in column_cells(train, "x") if c != "NA"])
    assert x_col.mean == pytest.approx(present.mean(), rel=1e-12)
    assert x_col.std == pytest.approx(present.std(), rel=1e-12)
    z = np.array([float(c) for c in column_cells(train, "z")])
    assert (z_col.mean, z_col.std) == pytest.approx((z.mean(), z.std()), rel=1e-12)
    assert colour.categories == tuple(sorted(set(column_cells(train, "colour")) - {""}))


def test_columns_are_found_by_name_and_extra_columns_ignored():
    train = make_table(seed=4)
    pre = TabularPreprocessor.fit(train, "y")
    # Reverse the column order and add a column the preprocessor never saw.
    order = [3, 2, 1, 0]
    shuffled = Table(["extra"] + [train.header[j] for j in order],
                     [["?"] + [r[j] for j in order] for r in train.rows])
    np.testing.assert_array_equal(pre.transform(shuffled), pre.transform(train))
    # The target column is not needed for the features.
    no_target = Table(train.header[:3], [r[:3] for r in train.rows])
    np.testing.assert_array_equal(pre.transform(no_target), pre.transform(train))


def test_constant_numeric_column_is_not_divided_by_zero():
    rows = [["5", c, y] for c, y in zip("abab", "pqpq")]
    pre = TabularPreprocessor.fit(Table(["k", "c", "y"], rows), "y")
    assert pre.columns[0].std == 1.0
    np.testing.assert_array_equal(pre.transform(Table(["k", "c"], [["7", "a"]]))[:, 0], [2.0])


def test_identifier_like_text_column_is_dropped():
    n = 50
    rows = [[f"id{i}", str(i % 5), "ab"[i % 2]] for i in range(n)]
    pre = TabularPreprocessor.fit(Table(["id", "v", "y"], rows), "y")
    assert pre.dropped == ("id",) and [c.name for c in pre.columns] == ["v"]


@pytest.mark.parametrize("kind, task", [("text", "classification"), ("int", "classification"),
                                        ("real", "regression")])
def test_task_is_inferred_from_the_target(kind, task):
    assert TabularPreprocessor.fit(make_table(target=kind), "y").task == task


# ---------------------------------------------------------------------------------------------
# unknown categories and missing values

def test_unknown_category_is_zeros_by_default_and_an_error_on_request():
    train = make_table(seed=5)
    test = Table(train.header, [["1.0", "purple", "0.5", "lo"]])
    pre = TabularPreprocessor.fit(train, "y")
    assert pre.handle_unknown == "ignore"          # what the CLI has always done
    np.testing.assert_array_equal(pre.transform(test)[0, 1:4], np.zeros(3))

    strict = TabularPreprocessor.fit(train, "y", handle_unknown="error")
    with pytest.raises(ValueError, match=r"new\.csv: column 'colour', data row 1: category "
                                         r"'purple' was not seen in training"):
        strict.transform(test, where="new.csv")
    # A missing cell is not an unknown category: all zeros, even when strict.
    blank = Table(train.header, [["1.0", "", "0.5", "lo"], ["1.0", "N/A", "0.5", "lo"]])
    np.testing.assert_array_equal(strict.transform(blank)[:, 1:4], np.zeros((2, 3)))


@pytest.mark.parametrize("token", sorted(MISSING))
def test_missing_numeric_cell_becomes_the_training_mean(token):
    train = make_table(seed=6)
    pre = TabularPreprocessor.fit(train, "y")
    cell = token.upper() if token else token       # matching ignores case
    x = pre.transform(Table(train.header, [[cell, "red", cell, "hi"]]))
    assert x[0, 0] == 0.0 and x[0, -1] == 0.0


def test_rows_without_a_target_are_left_out_of_the_statistics():
    rows = [["1", "a", "p"], ["2", "b", "q"], ["3", "a", "p"], ["100", "b", ""],
            ["200", "c", "nan"]]
    pre = TabularPreprocessor.fit(Table(["v", "c", "y"], rows), "y")
    kept = np.array([1.0, 2.0, 3.0])
    assert (pre.columns[0].mean, pre.columns[0].std) == pytest.approx((kept.mean(), kept.std()))
    assert pre.columns[1].categories == ("a", "b")   # "c" only occurs in a dropped row


# ---------------------------------------------------------------------------------------------
# targets and their inverse

def test_text_labels_encode_and_invert():
    train = make_table(seed=7)
    pre = TabularPreprocessor.fit(train, "y")
    y = pre.transform_target(train)
    labels = np.array(column_cells(train, "y"))
    names = np.array(sorted(set(labels)))
    np.testing.assert_array_equal(y, np.searchsorted(names, labels))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(pre.inverse_transform_target(y), labels)
    # Per-class scores invert through their argmax.
    scores = np.eye(len(names))[y] * 0.8 + 0.1
    np.testing.assert_array_equal(pre.inverse_transform_target(scores), labels)


def test_numeric_labels_match_by_value_and_invert_to_their_names():
    pre = TabularPreprocessor.fit(make_table(target="int"), "y")
    assert isinstance(pre.target_encoding, ClassTarget)
    assert pre.class_names == ("1", "2", "3")
    test = Table(["x", "colour", "z", "y"], [["0", "red", "0", "3.0"], ["0", "red", "0", "1e0"]])
    y = pre.transform_target(test)
    np.testing.assert_array_equal(y, [2, 0])
    np.testing.assert_array_equal(pre.inverse_transform_target(y), ["3", "1"])


def test_regression_target_is_standardised_and_inverts():
    train = make_table(target="real", seed=8)
    pre = TabularPreprocessor.fit(train, "y")
    values = np.array([float(c) for c in column_cells(train, "y")])
    y = pre.transform_target(train)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, (values - values.mean()) / values.std(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(pre.inverse_transform_target(y.astype(np.float64)), values,
                               rtol=1e-6, atol=1e-5)
    assert pre.class_names == ()


def test_unseen_class_and_bad_class_indices_are_errors():
    pre = TabularPreprocessor.fit(make_table(seed=9), "y")
    with pytest.raises(ValueError, match=r"t\.csv: data row 2: class 'mid' of 'y' was not seen"):
        pre.transform_target(Table(["y"], [["hi"], ["mid"]]), "t.csv")
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        pre.inverse_transform_target(np.array([0, 2]))


# ---------------------------------------------------------------------------------------------
# storing

@pytest.mark.parametrize("kind", ["text", "int", "real"])
@pytest.mark.parametrize("handle_unknown", ["ignore", "error"])
def test_json_round_trip_gives_identical_transforms(kind, handle_unknown):
    train, test = make_table(seed=10, target=kind), make_table(n=30, seed=11, target=kind)
    pre = TabularPreprocessor.fit(train, "y", handle_unknown=handle_unknown)
    text = pre.to_json()
    back = TabularPreprocessor.from_json(text)
    assert back == pre
    assert preprocessor_from_dict(json.loads(text)) == pre
    np.testing.assert_array_equal(back.transform(test), pre.transform(test))
    y = pre.transform_target(test)
    np.testing.assert_array_equal(back.transform_target(test), y)
    np.testing.assert_array_equal(back.inverse_transform_target(y),
                                  pre.inverse_transform_target(y))


def test_stored_layout_is_the_one_older_versions_wrote_and_read():
    pre = TabularPreprocessor.fit(make_table(seed=12), "y")
    data = pre.to_dict()
    assert data["kind"] == "table" and data["target"] == "y"
    assert data["task"] == "classification" and data["class_names"] == ["hi", "lo"]
    assert data["columns"][1] == {"name": "colour", "type": "categorical",
                                  "categories": sorted(COLOURS)}
    assert set(data["columns"][0]) == {"name", "type", "mean", "std"}
    assert data["n_features"] == pre.n_features
    # A file written before handle_unknown existed loads with the old behaviour.
    del data["handle_unknown"]
    old = TabularPreprocessor.from_dict(data)
    assert old.handle_unknown == "ignore" and old.columns == pre.columns


def test_dict_functions_of_earlier_versions_agree_with_the_class():
    train, test = make_table(seed=13), make_table(n=20, seed=14)
    pre = TabularPreprocessor.fit(train, "y")
    prep = cli.fit_table(list(train.header), train.rows, "y")
    assert prep == pre.to_dict()
    np.testing.assert_array_equal(cli.table_features(prep, test.header, test.rows, "t"),
                                  pre.transform(test))
    np.testing.assert_array_equal(cli.table_targets(prep, test.header, test.rows, "t"),
                                  pre.transform_target(test))


@pytest.mark.parametrize("damage, exc, words", [
    (lambda d: d.pop("columns"), ValueError, "missing field 'columns'"),
    (lambda d: d.update(task="ranking"), ValueError, "unknown task 'ranking'"),
    (lambda d: d["columns"][0].update(type="date"), ValueError, "'x': unknown type 'date'"),
    (lambda d: d["columns"][0].update(std="1"), TypeError, "field 'std' must be a number"),
    (lambda d: d["columns"][0].update(std=0.0), ValueError, "'x': mean and std"),
    (lambda d: d.update(n_features=99), ValueError, "n_features is 99"),
    (lambda d: d.update(handle_unknown="warn"), ValueError, "'handle_unknown'"),
])
def test_damaged_dict_is_refused_with_the_field_named(damage, exc, words):
    data = TabularPreprocessor.fit(make_table(seed=15), "y").to_dict()
    damage(data)
    with pytest.raises(exc, match=words):
        TabularPreprocessor.from_dict(data)


def test_image_preprocessor_scales_round_trips_and_names_classes():
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    pre = ImagePreprocessor("digits", (3, 3), tuple("abcdefghij"), 1 / 255, subset=True)
    np.testing.assert_array_equal(pre.transform(pixels),
                                  pixels.astype(np.float32) * np.float32(1 / 255))
    back = preprocessor_from_dict(json.loads(pre.to_json()))
    assert back == pre and isinstance(back, ImagePreprocessor)
    np.testing.assert_array_equal(pre.inverse_transform_target(np.array([3, 0])), ["d", "a"])


# ---------------------------------------------------------------------------------------------
# bad input

def test_row_with_the_wrong_number_of_cells():
    train = make_table(seed=17)
    pre = TabularPreprocessor.fit(train, "y")
    with pytest.raises(ValueError, match=r"in\.csv: data row 2 has 3 cells, the header has 4"):
        pre.transform(Table(train.header, [train.rows[0], train.rows[1][:3]]), "in.csv")
    with pytest.raises(ValueError, match="data row 1 has 5 cells"):
        TabularPreprocessor.fit(Table(train.header, [train.rows[0] + ["1"]]), "y")


def test_array_with_the_wrong_number_of_columns():
    rows = [[str(i), str(i * i % 7), "ab"[i % 2]] for i in range(10)]
    pre = TabularPreprocessor.fit(Table(["u", "v", "y"], rows), "y")
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    u = np.arange(10.0)
    v = np.array([i * i % 7 for i in range(10)], dtype=float)
    expected = np.stack([(x[:, 0] - u.mean()) / u.std(), (x[:, 1] - v.mean()) / v.std()], 1)
    np.testing.assert_allclose(pre.transform_array(x), expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"x\.npy: expected rows of 2 numbers \(columns u, v\), "
                                         r"got shape \(2, 3\)"):
        pre.transform_array(np.ones((2, 3)), "x.npy")
    with_text = TabularPreprocessor.fit(make_table(seed=18), "y")
    with pytest.raises(ValueError, match="categorical column.*colour"):
        with_text.transform_array(np.ones((2, 2)))


def test_non_numeric_cell_in_a_numeric_column_names_column_and_row():
    train = make_table(seed=19)
    pre = TabularPreprocessor.fit(train, "y")
    rows = [train.rows[0], ["1.5", "red", "twelve", "hi"]]
    with pytest.raises(ValueError, match=r"b\.csv: column 'z', data row 2: expected a number, "
                                         r"got 'twelve'"):
        pre.transform(Table(train.header, rows), "b.csv")
    with pytest.raises(ValueError, match="column 'x', data row 1: expected a number, got 'inf'"):
        pre.transform(Table(train.header, [["inf", "red", "1", "hi"]]))


def test_missing_column_and_non_text_cells_are_named():
    train = make_table(seed=20)
    pre = TabularPreprocessor.fit(train, "y")
    with pytest.raises(ValueError, match="missing column 'z' that the model was trained on"):
        pre.transform(Table(["x", "colour"], [["1", "red"]]))
    with pytest.raises(TypeError, match=r"column 'x', data row 1: cells must be strings, got "
                                        r"float"):
        pre.transform(Table(train.header, [[1.5, "red", "1", "hi"]]))
    with pytest.raises(ValueError, match="'x'.*more than once"):
        pre.transform(Table(["x", "x", "colour", "z"], [["1", "1", "red", "1"]]))
    with pytest.raises(TypeError, match=r"expected a table as \(header, rows\)"):
        pre.transform(np.zeros((2, 4)))


@pytest.mark.parametrize("target, task, words", [
    ("nope", "auto", "--target: no column 'nope'"),
    ("colour", "regression", "--task regression: the target column 'colour' is not numeric"),
    ("y", "guess", "task: expected 'auto'"),
])
def test_bad_fit_arguments_are_named(target, task, words):
    with pytest.raises(ValueError, match=words):
        TabularPreprocessor.fit(make_table(seed=21), target, task)


def test_single_class_or_too_few_targets_are_refused():
    rows = [["1", "a"], ["2", "a"], ["3", ""]]
    with pytest.raises(ValueError, match=r"--target y: only one class \('a'\)"):
        TabularPreprocessor.fit(Table(["v", "y"], rows), "y")
    with pytest.raises(ValueError, match="--target y: fewer than two rows have a value"):
        TabularPreprocessor.fit(Table(["v", "y"], rows[:1] + [["2", "?"]]), "y")


def test_encodings_check_their_own_fields():
    with pytest.raises(ValueError, match="at least two classes"):
        ClassTarget(("only",))
    with pytest.raises(ValueError, match="std positive"):
        RegressionTarget(0.0, 0.0)
    with pytest.raises(ValueError, match="'c': categories must be distinct"):
        CategoricalColumn("c", ("a", "a"))
