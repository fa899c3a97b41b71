"""`pynn serve`: saved models behind an HTTP server speaking the v1 REST protocol of
TensorFlow Serving and KServe, with Prometheus metrics (see `pynn.serve`)."""
from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

from pynn.cli.arguments import add_threads_option, number, positive_int
from pynn.cli.common import CliError, say

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
window_ms = number(float, "a number of milliseconds in [0, 3600000]",
                   lambda v: 0 <= v <= 3_600_000)
port_number = number(int, "a port number in 0..65535", lambda v: 0 <= v <= 65535)


def add_parser(sub: Subcommands) -> None:
    """Registers `serve` and its options."""
    s = sub.add_parser(
        "serve", help="serve saved models over HTTP (needs pynn[serve])",
        description="Serve saved models with the v1 REST protocol of TensorFlow Serving and "
        "KServe: GET /v1/models/NAME, POST /v1/models/NAME:predict with {\"instances\": "
        "[...]}, POST /v1/models/NAME:feedback with {\"instances\", \"labels\"}, and "
        "Prometheus metrics at GET /metrics. Training statistics saved beside a model "
        "(MODEL.stats.json, see pynn.serve.stats.save_stats) turn on the input-drift gauges. "
        "SIGTERM finishes the requests in flight and exits with 0.")
    s.add_argument("models", nargs="+", metavar="MODEL",
                   help="a model file (or a folder holding model.safetensors)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1; 0.0.0.0 for every interface)")
    s.add_argument("--port", type=port_number, default=8080,
                   help="port to listen on (default: 8080; 0 picks a free one)")
    s.add_argument("--name", action="append", default=None, metavar="NAME",
                   help="the model's name in /v1/models/NAME (default: the file name without "
                        "its extension); repeat it once per MODEL")
    s.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="worker processes, each with its own copy of the models (default: 1)")
    s.add_argument("--max-body", type=positive_int, default=16 * 2**20, metavar="BYTES",
                   help="the largest request body accepted; larger ones get 413 "
                        "(default: 16 MiB)")
    s.add_argument("--batch-window-ms", type=window_ms, default=0.0, metavar="MS",
                   help="how long a batch waits for more requests after its first one "
                        "(default: 0: a batch is what waits when the model is free)")
    s.add_argument("--max-batch", type=positive_int, default=256, metavar="ROWS",
                   help="a batch closes once it holds this many samples (default: 256)")
    s.add_argument("--window", type=positive_int, default=1000, metavar="SAMPLES",
                   help="samples kept for the feedback scores and the drift statistics "
                        "(default: 1000)")
    s.add_argument("--prediction-ids", action="store_true",
                   help="answer predictions with an id per sample (\"ids\"), so that "
                        ":feedback can send {\"ids\", \"labels\"} instead of the instances")
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    add_threads_option(s)


def model_names(paths: list[str], names: list[str] | None) -> list[str]:
    """The name of each model: --name in order, else from the file name."""
    from pynn.serve.app import model_name_for

    if names is not None and len(names) != len(paths):
        raise CliError(f"--name: given {len(names)} time(s) for {len(paths)} model(s); give "
                       f"one per MODEL, in order")
    chosen = list(names) if names is not None else [model_name_for(p) for p in paths]
    for name in chosen:
        if not _NAME.fullmatch(name):
            raise CliError(f"model name {name!r}: use letters, digits, '_', '-' and '.' "
                           f"(give one with --name)")
    if len(set(chosen)) != len(chosen):
        raise CliError(f"model names {chosen} repeat; give distinct ones with --name")
    return chosen


def run(args: argparse.Namespace) -> int:
    """Loads the models, serves until SIGTERM/SIGINT, returns 0 after draining."""
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CliError(f"pynn serve needs the serve extra: pip install \"pynn[serve]\" "
                       f"({exc})") from None
    from pynn.serve.server import ServeOptions, build_app
    from pynn.serve.server import run as serve_run

    names = model_names(args.models, args.name)
    options = ServeOptions(models=list(zip(names, args.models)), host=args.host,
                           port=args.port, workers=args.workers, max_body=args.max_body,
                           batch_window_ms=args.batch_window_ms, max_batch=args.max_batch,
                           window=args.window, prediction_ids=args.prediction_ids,
                           threads=args.threads,
                           access_log=args.access_log,
                           log_level=args.log_level)
    # Load the models here first, so that a bad file is a one-line error before any worker
    # starts (the workers load their own copies).
    try:
        app = build_app(options)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    served = app.state.models

    def listening(url: str) -> None:
        for name, m in served.items():
            drift = "with drift statistics" if m.stats else "no drift statistics"
            say(f"pynn serve: model {name!r} from {m.source} ({m.task}, {drift})")
        say(f"pynn serve: listening on {url} (POST {url}/v1/models/NAME:predict, "
            f"metrics at {url}/metrics)")

    try:
        serve_run(options, app=None if args.workers > 1 else app, on_listening=listening)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") \
            from None
    sys.stdout.flush()
    say("pynn serve: stopped")
    return 0
