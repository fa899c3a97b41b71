"""Fixtures shared by several test modules."""
from __future__ import annotations

import os

import pytest

# Tests that run Keras itself (to hold pynn to Keras 3's numbers) use its torch backend, the
# one whose CPU build ships with the test extra; set before any test imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")


class Clock:
    """A settable stand-in for the progress bar's clock: tests move time by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    import pynn.utils.progbar as progbar_module

    c = Clock()
    monkeypatch.setattr(progbar_module, "_clock", c)
    return c


@pytest.fixture(scope="session")
def keras():
    """Keras 3 itself (torch backend), for tests that compare with its numbers."""
    import keras

    return keras


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test leaves open would pile up across the session (matplotlib warns past 20,
    and warnings are errors here): close them after every test that imported pyplot."""
    yield
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")
