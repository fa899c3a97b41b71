"""A preprocessing pipeline feeding pynn: outliers, categorical columns and scaling, done with
scikit-learn, fitted on the training rows only.

    python examples/preprocessing_pipeline.py [--small]

The data is a synthetic table of apartments (so the example runs offline and the truth is
known): area, rooms, age and distance to the centre (numeric), district and heating type
(categorical), some cells missing, and a few data-entry errors (areas in square feet or with an
extra zero). The target is the rent.

    1. outliers: rows whose numeric values lie far outside the training interquartile range
       are dropped from the training data (never from the test data: at prediction time we
       cannot choose our inputs);
    2. ColumnTransformer: numeric columns -> median imputation, clipping to the training
       range (so an outlier at prediction time cannot send the network far outside what it
       learned) and StandardScaler; categorical columns -> most-frequent imputation and
       OneHotEncoder(handle_unknown="ignore");
    3. the transformed matrix goes to a pynn MLP; the same fitted transformer prepares the test
       rows.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import pynn

NUMERIC = ["area_m2", "rooms", "age_years", "distance_km"]
CATEGORICAL = ["district", "heating"]


def make_apartments(n, seed=0):
    """An object array (n, 6) of the columns NUMERIC + CATEGORICAL, and the rent."""
    rng = np.random.default_rng(seed)
    district = rng.choice(["centre", "north", "south", "harbour"], n, p=[0.2, 0.3, 0.3, 0.2])
    heating = rng.choice(["gas", "electric", "district"], n)
    area = rng.gamma(6.0, 12.0, n) + 15
    rooms = np.clip(np.round(area / 25 + rng.normal(0, 0.7, n)), 1, 8)
    age = rng.uniform(0, 100, n)
    distance = rng.gamma(2.0, 2.5, n)
    premium = {"centre": 1.35, "north": 1.0, "south": 0.9, "harbour": 1.15}
    rent = (np.array([premium[d] for d in district]) * (12.0 * area + 40 * rooms)
            * (1 - 0.002 * age) * np.exp(-0.03 * distance)
            + np.where(heating == "electric", -40, 0) + rng.normal(0, 60, n))
    # Data-entry errors: square feet instead of square metres, or an extra zero.
    bad = rng.choice(n, size=max(1, n // 50), replace=False)
    area[bad[::2]] *= 10.764
    area[bad[1::2]] *= 10
    table = np.empty((n, 6), dtype=object)
    table[:, 0], table[:, 1], table[:, 2], table[:, 3] = area, rooms, age, distance
    table[:, 4], table[:, 5] = district, heating
    for col in (2, 5):   # some missing cells
        table[rng.choice(n, size=n // 30, replace=False), col] = np.nan if col < 4 else None
    table[table == None] = np.nan  # noqa: E711 - SimpleImputer reads NaN as missing
    return table, rent.astype(np.float64)


def iqr_inliers(numeric, k=3.0):
    """Rows whose every numeric value lies within [Q1 - k IQR, Q3 + k IQR] (NaN counts as in)."""
    q1, q3 = np.nanpercentile(numeric, [25, 75], axis=0)
    low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    with np.errstate(invalid="ignore"):
        ok = (numeric >= low) & (numeric <= high)
    return np.all(ok | np.isnan(numeric), axis=1)


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Clips each column to [Q1 - k IQR, Q3 + k IQR] of the data it was fitted on."""

    def __init__(self, k=3.0):
        self.k = k

    def fit(self, x, y=None):
        q1, q3 = np.nanpercentile(np.asarray(x, dtype=np.float64), [25, 75], axis=0)
        self.low_, self.high_ = q1 - self.k * (q3 - q1), q3 + self.k * (q3 - q1)
        return self

    def transform(self, x):
        return np.clip(np.asarray(x, dtype=np.float64), self.low_, self.high_)


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    table, rent = make_apartments(600 if small else 4000, seed=seed)
    x_train, x_test, y_train, y_test = train_test_split(table, rent, test_size=0.2,
                                                        random_state=seed)
    keep = iqr_inliers(x_train[:, :4].astype(np.float64))
    print(f"outliers: dropped {int((~keep).sum())} of {len(keep)} training rows")
    x_train, y_train = x_train[keep], y_train[keep]

    numeric_cols = list(range(len(NUMERIC)))
    categorical_cols = list(range(len(NUMERIC), len(NUMERIC) + len(CATEGORICAL)))
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), ClipToTrainingRange(),
                              StandardScaler()),
         numeric_cols),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
         categorical_cols),
    ])
    xt_train = prep.fit_transform(x_train).astype(np.float32)
    xt_test = prep.transform(x_test).astype(np.float32)
    print(f"features after preprocessing: {xt_train.shape[1]} "
          f"({len(NUMERIC)} scaled numeric + one-hot columns)")

    y_mean, y_std = y_train.mean(), y_train.std()
    model = pynn.Sequential([
        pynn.Input((xt_train.shape[1],)),
        pynn.layers.Dense(64, activation="relu"),
        pynn.layers.Dense(32, activation="relu"),
        pynn.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    model.fit(xt_train, (y_train - y_mean) / y_std, epochs=60 if small else 100, batch_size=32,
              validation_split=0.1, verbose=0,
              callbacks=[pynn.callbacks.EarlyStopping(patience=10, restore_best_weights=True)])
    pred = model.predict(xt_test, verbose=0)[:, 0] * y_std + y_mean
    r2 = r2_score(y_test, pred)
    print(f"test R^2 {r2:.3f}, mean absolute error {np.mean(np.abs(pred - y_test)):.0f}")
    return {"r2": float(r2), "dropped": int((~keep).sum()), "n_features": xt_train.shape[1]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Outliers, categories and scaling into pynn")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
