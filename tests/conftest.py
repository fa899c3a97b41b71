"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest


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
