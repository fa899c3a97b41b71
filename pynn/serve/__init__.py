"""Serving pynn models over HTTP, with monitoring: the `pynn serve` and `pynn monitor` commands.

    pynn serve fashion.safetensors --port 8080
    curl -s localhost:8080/v1/models/fashion
    curl -s -d '{"instances": [[0.0, 0.1, ...]]}' localhost:8080/v1/models/fashion:predict
    pynn monitor http://localhost:8080

The server speaks the v1 REST protocol of TensorFlow Serving and KServe (`pynn.serve.app`),
batches requests that arrive together into one predict call (`pynn.serve.batching`) and exports
Prometheus metrics (`pynn.serve.monitoring`), including quality scores from labelled feedback
and input drift against training statistics saved beside the model (`pynn.serve.stats`).

It needs the `serve` extra (`pip install "pynn[serve]"`: Starlette, Uvicorn, prometheus_client);
`pynn.serve.stats` needs only NumPy, so statistics can be written without it.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"create_app": "pynn.serve.app", "ServedModel": "pynn.serve.app",
         "served_pynn_model": "pynn.serve.app", "ServeOptions": "pynn.serve.server",
         "run": "pynn.serve.server", "TrainingStats": "pynn.serve.stats",
         "save_stats": "pynn.serve.stats", "load_stats": "pynn.serve.stats"}


_SUBMODULES = {"app", "batching", "codec", "monitoring", "server", "stats"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pynn.serve.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pynn.serve' has no attribute {name!r}")


__all__ = ["ServeOptions", "ServedModel", "TrainingStats", "create_app", "load_stats", "run",
           "save_stats", "served_pynn_model"]
