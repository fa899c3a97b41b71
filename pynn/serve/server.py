"""Running the app on Uvicorn: binding the socket, one process or several workers, and a
graceful stop.

SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in flight finish (a batch
waiting for its window runs at once) and returns normally, so `pynn serve` exits with 0.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pynn.serve.app import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY,
    DEFAULT_WINDOW,
    ServedModel,
    create_app,
    served_pynn_model,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

CONFIG_ENV = "PYNN_SERVE_CONFIG"


@dataclass
class ServeOptions:
    """What `pynn serve` was asked for (JSON-serialisable: workers receive it in CONFIG_ENV)."""

    models: list[tuple[str, str]] = field(default_factory=list)  # (name, path)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body: int = DEFAULT_MAX_BODY
    batch_window_ms: float = 0.0
    max_batch: int = DEFAULT_MAX_BATCH
    window: int = DEFAULT_WINDOW
    prediction_ids: bool = False
    threads: int | None = None
    access_log: bool = False
    log_level: str = "info"

    def to_json(self) -> str:
        """The options as JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        """The inverse of `to_json`."""
        data = json.loads(text)
        data["models"] = [tuple(pair) for pair in data["models"]]
        return cls(**data)


def load_served_models(pairs: Sequence[tuple[str, str]]) -> list[ServedModel]:
    """Loads each (name, path) model with the training statistics saved beside it."""
    from pynn.cli.model import load_model
    from pynn.serve.stats import load_stats

    served = []
    for name, path in pairs:
        model, file = load_model(path)
        stats = load_stats(file)
        served.append(served_pynn_model(model, name, stats, file))
    return served


def build_app(options: ServeOptions) -> Starlette:
    """The app for `options` (loads the models)."""
    return create_app(load_served_models(options.models), max_body=options.max_body,
                      batch_window_ms=options.batch_window_ms, max_batch=options.max_batch,
                      window=options.window, prediction_ids=options.prediction_ids)


def app_factory() -> Starlette:
    """The app of a worker process, from the options in the CONFIG_ENV variable."""
    options = ServeOptions.from_json(os.environ[CONFIG_ENV])
    if options.threads:
        import pynn

        pynn.set_num_threads(options.threads)
    return build_app(options)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """http://host:port of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(options: ServeOptions, app: Starlette | None = None,
        on_listening: Callable[[str], None] | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then drains and returns.

    Args:
        options: the server options (models are loaded here unless `app` is given).
        app: an app to serve instead of the one `options` describes (one process only).
        on_listening: called with the server's URL once the socket is bound.
    """
    import uvicorn

    sock = bind(options.host, options.port)
    common: dict[str, Any] = {"log_level": options.log_level, "access_log": options.access_log,
                              "lifespan": "on", "timeout_graceful_shutdown": None}
    if options.workers > 1:
        if app is not None:
            raise ValueError("workers > 1 load the models in each worker; give no app")
        _run_workers(options, sock, common, on_listening)
        return
    if app is None:
        app = build_app(options)
    config = uvicorn.Config(app, **common)
    server = uvicorn.Server(config)
    if on_listening is not None:
        on_listening(url_of(sock))
    # Uvicorn raises the stop signal again once it has shut down; answered by these no-op
    # handlers, the process goes on to exit normally.
    originals = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in originals.items():
            signal.signal(sig, handler)
        sock.close()


def _ignore(signum: int, frame: Any) -> None:
    return


def _run_workers(options: ServeOptions, sock: socket.socket, common: dict[str, Any],
                 on_listening: Callable[[str], None] | None) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # prometheus_client's multiprocess mode: each worker writes its values to files in this
    # folder, and /metrics (whichever worker answers) adds them up.
    folder = tempfile.mkdtemp(prefix="pynn-serve-metrics-")
    saved = {k: os.environ.get(k) for k in (CONFIG_ENV, "PROMETHEUS_MULTIPROC_DIR")}
    os.environ[CONFIG_ENV] = options.to_json()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        config = uvicorn.Config("pynn.serve.server:app_factory", factory=True,
                                workers=options.workers, **common)
        if on_listening is not None:
            on_listening(url_of(sock))
        if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
            supervisor = Multiprocess(config, target=uvicorn.Server(config).run,  # type: ignore[call-arg]
                                      sockets=[sock])
        else:
            supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
