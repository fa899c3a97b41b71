"""Regression on a real data set: scikit-learn's diabetes data (442 patients, 10 baseline
measurements, disease progression one year later), which ships inside scikit-learn.

    python examples/regression.py [--small]

Standardise the inputs (scaler fitted on the training split only), train an MLP on the mean
squared error with early stopping on a validation split, and compare its test R^2 with
ordinary least squares, the baseline any regression model must beat or match.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import pynn


def main(small=False, seed=0):
    pynn.utils.set_random_seed(seed)
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    x_train_s, x_test_s = scaler.transform(x_train), scaler.transform(x_test)
    # Scaling the target too keeps the initial loss near 1 and Adam's default step sensible.
    y_mean, y_std = y_train.mean(), y_train.std()

    model = pynn.Sequential([
        pynn.Input((x.shape[1],)),
        pynn.layers.Dense(32, activation="relu", kernel_regularizer=pynn.regularizers.L2(1e-3)),
        pynn.layers.Dense(1),
    ])
    model.compile(optimizer=pynn.optimizers.Adam(learning_rate=3e-3), loss="mse",
                  metrics=["mae"])
    model.fit(x_train_s, (y_train - y_mean) / y_std, epochs=40 if small else 300,
              batch_size=32, validation_split=0.2, verbose=0,
              callbacks=[pynn.callbacks.EarlyStopping(patience=20, restore_best_weights=True)])
    pred = model.predict(x_test_s, verbose=0)[:, 0] * y_std + y_mean
    r2_mlp = r2_score(y_test, pred)
    r2_ols = r2_score(y_test, LinearRegression().fit(x_train_s, y_train).predict(x_test_s))
    print(f"test R^2: pynn MLP {r2_mlp:.3f}, least squares {r2_ols:.3f}; "
          f"MLP mean absolute error {np.mean(np.abs(pred - y_test)):.1f}")
    return {"r2": float(r2_mlp), "r2_linear": float(r2_ols)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="MLP regression on the diabetes data")
    parser.add_argument("--small", action="store_true")
    main(small=parser.parse_args().small)
