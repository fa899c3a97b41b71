"""The installed package: stubs, typing marker, import time, version."""
from __future__ import annotations

import ast
from importlib import resources

import pynn
from pynn import _core


def test_core_stub_lists_every_binding():
    text = resources.files("pynn").joinpath("_core.pyi").read_text()
    tree = ast.parse(text)
    listed = set()
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "__all__":
            listed = {elt.value for elt in node.value.elts}
    public = {name for name in dir(_core) if not name.startswith("_")}
    assert listed == public, f"regenerate pynn/_core.pyi: missing {public - listed}, " \
                             f"stale {listed - public}"


def test_py_typed_is_shipped():
    assert resources.files("pynn").joinpath("py.typed").is_file()


def test_tests_use_the_installed_package():
    # The source tree's pynn/ has no compiled core; the tests must import the installed one.
    assert hasattr(pynn._core, "gemm")
    assert "site-packages" in pynn.__file__ or "dist-packages" in pynn.__file__


def test_version():
    assert pynn.__version__ == "0.1.0"
