"""The Starlette app of `pynn serve`: the v1 REST protocol of TensorFlow Serving and KServe, and
the Prometheus metrics.

    GET  /                              liveness: {"status": "alive"}
    GET  /v1/models                     {"models": [names]}
    GET  /v1/models/NAME                {"name", "ready", "model_version_status", "inputs",
                                         "outputs"}
    GET  /v1/models/NAME/metadata       the same, TensorFlow Serving's metadata path
    POST /v1/models/NAME:predict        {"instances": [...]} -> {"predictions": [...]};
                                        {"inputs": ...} -> {"outputs": ...}
    POST /v1/models/NAME:feedback       {"instances": [...], "labels": [...]} -> the window's
                                        scores; with --prediction-ids, predictions carry "ids"
                                        and {"ids": [...], "labels": [...]} works too
    GET  /metrics                       Prometheus text format

Errors are JSON ``{"error": message}`` with status 400 (a request the model cannot take),
404 (no such model or endpoint) or 413 (a body over the limit); the server goes on serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pynn.serve.batching import Batcher, PredictFn
from pynn.serve.codec import (
    RequestError,
    Signature,
    decode_inputs,
    decode_labels,
    encode_outputs,
    error_body,
    parse_body,
)
from pynn.serve.monitoring import (
    DriftWindow,
    FeedbackWindow,
    PredictionLog,
    ServeMetrics,
    Task,
)
from pynn.serve.stats import FeatureStats

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from pynn.models import Model

log = logging.getLogger("pynn.serve")

DEFAULT_MAX_BODY = 16 * 2**20
DEFAULT_WINDOW = 1000
DEFAULT_MAX_BATCH = 256
UNKNOWN_MODEL = "(unknown)"
# How often a worker of a multi-process server refreshes its windowed gauges.
REFRESH_SECONDS = 1.0


@dataclass
class ServedModel:
    """A model behind the server: how to call it and what it takes and gives.

    Attributes:
        name: the NAME in /v1/models/NAME.
        signature: input and output names and per-sample shapes.
        predict: (n, F) float32 array per input -> one array per output (see `Batcher`).
        task: how :feedback turns outputs into predictions ("multiclass": argmax,
            "binary": first value > threshold, "regression": the values).
        threshold: the binary decision threshold (0.5 for probabilities, 0 for logits).
        stats: training statistics per input, for drift; None: no drift gauges.
        source: where the model came from (shown in the status).
    """

    name: str
    signature: Signature
    predict: PredictFn
    task: Task = "multiclass"
    threshold: float = 0.5
    stats: list[FeatureStats] | None = None
    source: str = ""
    batcher: Batcher | None = field(default=None, repr=False)
    feedback: FeedbackWindow | None = field(default=None, repr=False)
    drift: DriftWindow | None = field(default=None, repr=False)
    ids: PredictionLog | None = field(default=None, repr=False)


def signature_of(model: Model) -> Signature:
    """The input/output names and shapes of a pynn model."""
    inputs = [tuple(int(d) for d in t.sample_shape) for t in model.inputs]
    outputs = [tuple(int(d) for d in t.sample_shape) for t in model.outputs]
    return Signature(tuple(model.input_names), tuple(inputs), tuple(model.output_names),
                     tuple(outputs))


def task_of(model: Model, signature: Signature) -> tuple[Task, float]:
    """(task, binary threshold) of a pynn model's first output: from its loss when compiled,
    else from the output's width (several values: classes; one value: regression)."""
    width = int(np.prod(signature.output_shapes[0]))
    losses = getattr(model, "_losses", None) or []
    loss = losses[0] if losses else None
    kind = getattr(type(loss), "kind", None) or ""
    logits = bool(getattr(loss, "from_logits", False))
    if kind == "binary_crossentropy" or (kind.endswith("crossentropy") and width == 1):
        return "binary", 0.0 if logits else 0.5
    if kind.endswith("crossentropy") or (not kind and width > 1):
        return "multiclass", 0.5
    return "regression", 0.5


def pynn_predictor(model: Model, signature: Signature) -> PredictFn:
    """`model.predict` as a `PredictFn` (outputs in the signature's order)."""
    names = signature.output_names

    def predict(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        x: Any = inputs[0] if len(inputs) == 1 else list(inputs)
        out = model.predict(x, batch_size=max(1, int(inputs[0].shape[0])), verbose=0)
        if isinstance(out, dict):
            return [out[n] for n in names]
        if isinstance(out, (list, tuple)):
            return list(out)
        return [out]

    return predict


def served_pynn_model(model: Model, name: str, stats: Any = None,
                      source: str = "") -> ServedModel:
    """A pynn model ready to serve; `stats` is a `TrainingStats` (or None)."""
    sig = signature_of(model)
    task, threshold = task_of(model, sig)
    per_input = None
    if stats is not None:
        per_input = stats.for_inputs(sig.input_names, sig.input_sizes,
                                     f"statistics of model {name!r}")
    return ServedModel(name, sig, pynn_predictor(model, sig), task, threshold, per_input, source)


def _json(body: Any, status: int = 200) -> Response:
    from starlette.responses import Response

    return Response(json.dumps(body, separators=(",", ":")), status,
                    media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(f"Content-Length: not a number ({declared!r})") from None
        if size > limit:
            raise RequestError(f"body: {size} bytes, over the limit of {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"body: over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(models: Sequence[ServedModel], *, max_body: int = DEFAULT_MAX_BODY,
               batch_window_ms: float = 0.0, max_batch: int = DEFAULT_MAX_BATCH,
               window: int = DEFAULT_WINDOW, prediction_ids: bool = False) -> Starlette:
    """The ASGI app serving `models`.

    Args:
        models: the models, by distinct name.
        max_body: the largest request body accepted, in bytes (larger: 413).
        batch_window_ms: how long a batch waits for more requests after its first one.
        max_batch: a batch closes once it holds this many samples.
        window: samples kept for the feedback scores and for the drift statistics.
        prediction_ids: answer predictions with an id per sample, which :feedback accepts in
            place of the instances (the last max(10 * window, 10000) are kept).
    """
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    by_name = {m.name: m for m in models}
    if len(by_name) != len(models):
        raise ValueError(f"models: duplicate names in {[m.name for m in models]}")
    if not models:
        raise ValueError("models: expected at least one model")
    metrics = ServeMetrics()
    for m in models:
        m.feedback = FeedbackWindow(m.task, window, int(np.prod(m.signature.output_shapes[0])),
                                    m.threshold)
        m.drift = DriftWindow(m.stats, m.signature.input_names, window) if m.stats else None
        m.ids = PredictionLog(max(10 * window, 10_000)) if prediction_ids else None
        def observe(rows: int, reqs: int, sec: float, name: str = m.name) -> None:
            metrics.observe_batch(name, rows, reqs, sec)

        m.batcher = Batcher(m.predict, batch_window_ms / 1000.0, max_batch, observe, m.name)

    def refresh(force: bool = False) -> None:
        for m in models:
            if m.drift is not None:
                metrics.set_drift(m.name, m.drift, force)

    def drain_all() -> None:
        for m in models:
            if m.batcher is not None:
                m.batcher.drain_threadsafe()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for m in models:
            assert m.batcher is not None and m.feedback is not None
            m.batcher.start()
            metrics.ready.labels(m.name).set(1)
            metrics.set_feedback(m.name, m.feedback.scores())
        refresh(force=True)
        restore = _chain_signal_handlers(drain_all)
        ticker = asyncio.ensure_future(_refresh_loop(refresh)) if metrics.multiprocess else None
        try:
            yield
        finally:
            restore()
            if ticker is not None:
                ticker.cancel()
            for m in models:
                if m.batcher is not None:
                    await m.batcher.stop()
            metrics.mark_dead()

    def status(m: ServedModel) -> dict[str, Any]:
        return {"name": m.name, "ready": True,
                "model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}],
                **m.signature.describe(), "task": m.task, "source": m.source,
                "drift": m.stats is not None}

    def lookup(name: str) -> ServedModel:
        m = by_name.get(name)
        if m is None:
            raise RequestError(f"no model named {name!r}; this server has "
                               f"{sorted(by_name)}", 404)
        return m

    async def alive(request: Request) -> Response:
        return _json({"status": "alive"})

    async def list_models(request: Request) -> Response:
        return _json({"models": [m.name for m in models]})

    async def model_status(request: Request) -> Response:
        name = request.path_params["name"]
        start = time.perf_counter()
        try:
            m = lookup(name)
        except RequestError as exc:
            metrics.observe_request(UNKNOWN_MODEL, "status", exc.status,
                                    time.perf_counter() - start)
            return _json({"error": exc.message}, exc.status)
        metrics.observe_request(m.name, "status", 200, time.perf_counter() - start)
        return _json(status(m))

    async def post(request: Request) -> Response:
        start = time.perf_counter()
        name, sep, verb = request.path_params["spec"].rpartition(":")
        m = by_name.get(name) if sep else None
        label = m.name if m is not None else UNKNOWN_MODEL
        endpoint = verb if verb in ("predict", "feedback") else "other"
        counted = m is not None
        if counted:
            metrics.inflight.labels(label).inc()
        try:
            if not sep:
                raise RequestError("unknown endpoint; POST to /v1/models/NAME:predict or "
                                   "/v1/models/NAME:feedback", 404)
            m = lookup(name)
            if endpoint == "other":
                raise RequestError(f"unknown verb {verb!r}; use :predict or :feedback", 404)
            body = await read_body(request, max_body)
            payload = parse_body(body)
            literals = b"true" in body or b"false" in body
            if endpoint == "feedback":
                content = await feedback(m, payload, literals)
            else:
                assert m.batcher is not None and m.feedback is not None
                inputs, columnar = decode_inputs(payload, m.signature, literals)
                outputs = await m.batcher.submit(inputs)
                if m.drift is not None:
                    m.drift.add(inputs)
                ids = None
                if m.ids is not None:
                    ids = m.ids.record(m.feedback.predicted(outputs[0]))
                content = encode_outputs(outputs, m.signature, columnar, ids)
            code = 200
        except RequestError as exc:
            content, code = error_body(exc.message), exc.status
        except Exception as exc:  # a bug or a failing model: log it, tell the client, go on
            log.exception("%s %s failed", request.method, request.url.path)
            content, code = error_body(f"internal error: {type(exc).__name__}: {exc}"), 500
        finally:
            if counted:
                metrics.inflight.labels(label).dec()
        metrics.observe_request(label, endpoint, code, time.perf_counter() - start)
        return Response(content, code, media_type="application/json")

    async def feedback(m: ServedModel, payload: dict[str, Any], literals: bool) -> bytes:
        assert m.batcher is not None and m.feedback is not None
        ids = payload.get("ids")
        if ids is not None:
            if m.ids is None:
                raise RequestError('ids: this server gives no prediction ids (start it with '
                                   '--prediction-ids); send "instances" with the labels')
            if "instances" in payload or "inputs" in payload:
                raise RequestError('body: give "ids" or "instances", not both')
            if (not isinstance(ids, list) or not ids
                    or not all(isinstance(i, str) for i in ids)):
                raise RequestError("ids: expected a non-empty array of prediction ids")
            raw = decode_labels(payload, len(ids), literals)
        else:
            inputs, _ = decode_inputs(payload, m.signature, literals)
            raw = decode_labels(payload, int(inputs[0].shape[0]), literals)
        try:
            labels = m.feedback.labels(raw)
            predicted = None if ids is None or m.ids is None else m.ids.lookup(ids)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        if predicted is None:
            outputs = await m.batcher.submit(inputs)
            predicted = m.feedback.predicted(outputs[0])
        try:
            m.feedback.add(labels, predicted)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        if ids is not None:
            assert m.ids is not None
            m.ids.forget(ids)
        scores = m.feedback.scores()
        metrics.set_feedback(m.name, scores)
        return json.dumps({"received": int(labels.shape[0]), "window": m.feedback.size,
                           **scores}, separators=(",", ":")).encode()

    def render() -> tuple[bytes, str]:
        refresh()
        return metrics.exposition()

    async def metrics_endpoint(request: Request) -> Response:
        # Recomputing the drift of many features takes milliseconds: not on the event loop.
        text, content_type = await asyncio.get_running_loop().run_in_executor(None, render)
        return Response(text, 200, headers={"Content-Type": content_type})

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        return _json({"error": str(getattr(exc, "detail", "")) or "error"}, code)

    routes = [
        Route("/", alive, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name}", model_status, methods=["GET"]),
        Route("/v1/models/{name}/metadata", model_status, methods=["GET"]),
        Route("/v1/models/{spec}", post, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    from starlette.exceptions import HTTPException

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.metrics = metrics
    app.state.models = by_name
    return app


async def _refresh_loop(refresh: Any) -> None:
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            refresh()
        except Exception:  # keep serving; the next scrape shows the problem again
            log.exception("refreshing the drift gauges failed")


def _chain_signal_handlers(action: Any) -> Any:
    """Runs `action` first when SIGTERM or SIGINT arrives, then the handler already installed
    (uvicorn's, which starts the graceful shutdown). Returns a function undoing it. Only the
    main thread can install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        if not callable(before):
            continue

        def handler(signum: int, frame: Any, before: Any = before) -> None:
            action()
            before(signum, frame)

        previous[sig] = before
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, before in previous.items():
            if threading.current_thread() is threading.main_thread():
                signal.signal(sig, before)

    return restore


def model_name_for(path: str) -> str:
    """The default name of the model in `path`: the file name without its extension, or the
    folder's name for a folder."""
    path = os.path.normpath(path)
    base = os.path.basename(path)
    if os.path.isdir(path):
        return base
    return os.path.splitext(base)[0]
