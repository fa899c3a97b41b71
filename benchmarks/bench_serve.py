"""`pynn serve` under load: requests per second and p50/p99 latency for 1, 8 and 32 concurrent
clients, against the same model (same weights) in PyTorch behind the same server stack
(Starlette + Uvicorn, the same JSON codec, batching and metrics), in the same run.

    python benchmarks/bench_serve.py            # the table (10 s per server and client count)
    python benchmarks/bench_serve.py --seconds 3 --clients 1,8
    pytest benchmarks/bench_serve.py            # a shorter run, in the ratio tables

The model is the README's 784-256-128-10 ReLU MLP with softmax; each request is one 784-pixel
sample, the typical online call. Both servers run as child processes with one compute thread
each and the same options; the clients are asyncio connections with keep-alive, in this
process. At each client count the two servers take turns, several short rounds each, and the
table gives the median round (a shared machine disturbs some rounds; taking turns spreads the
disturbance over both).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LAYERS = (784, 256, 128, 10)
WARMUP_SECONDS = 1.0


def make_model(path: Path):
    """Saves the MLP with seeded random weights to `path`; returns the pynn model."""
    import pynn

    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((LAYERS[0],))] + [
        pynn.layers.Dense(n, activation="relu" if i < len(LAYERS) - 2 else "softmax")
        for i, n in enumerate(LAYERS[1:])])
    model.save(path)
    return model


def torch_served_model(path: str, threads: int):
    """The pynn model in `path` rebuilt as a torch.nn MLP, wrapped as a `ServedModel`."""
    import torch

    import pynn
    from pynn.serve.app import ServedModel, signature_of

    torch.set_num_threads(threads)
    model = pynn.load_model(path)
    weights = model.get_weights()
    layers: list[torch.nn.Module] = []
    for i in range(0, len(weights), 2):
        kernel, bias = weights[i], weights[i + 1]
        linear = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
        layers.append(torch.nn.ReLU() if i + 2 < len(weights) else torch.nn.Softmax(dim=1))
    net = torch.nn.Sequential(*layers).eval()

    def predict(inputs):
        with torch.inference_mode():
            return [net(torch.from_numpy(inputs[0])).numpy()]

    return ServedModel("model", signature_of(model), predict, "multiclass", source="torch")


def serve_torch(path: str, threads: int, window_ms: float) -> None:
    """Runs the torch server (in a child process) until SIGTERM."""
    from pynn.serve.app import create_app
    from pynn.serve.server import ServeOptions, run

    options = ServeOptions(host="127.0.0.1", port=0, batch_window_ms=window_ms,
                           log_level="warning")
    app = create_app([torch_served_model(path, threads)], batch_window_ms=window_ms)
    run(options, app=app, on_listening=lambda url: print(f"listening on {url}", flush=True))


class Child:
    """A server child process; `url` once it listens."""

    def __init__(self, args: list[str], threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=HERE)
        self.url = ""
        found = threading.Event()

        def read():
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                match = re.search(r"listening on (http://\S+)", line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(120):
            self.stop()
            raise RuntimeError(f"server {args} did not start")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


async def _client(host: str, port: int, request: bytes, until: float, record: bool,
                  latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {head[:60]!r}")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
            if record:
                latencies.append(time.perf_counter() - start)
            done += 1
    finally:
        writer.close()
    return done


async def _load(url: str, body: bytes, clients: int, seconds: float,
                record: bool) -> tuple[int, float, list[float]]:
    host, port = url.split("//")[1].split(":")
    request = (f"POST /v1/models/model:predict HTTP/1.1\r\nHost: {host}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    latencies: list[float] = []
    start = time.perf_counter()
    counts = await asyncio.gather(*[_client(host, int(port), request, start + seconds, record,
                                            latencies) for _ in range(clients)])
    return sum(counts), time.perf_counter() - start, latencies


def batch_counts(url: str) -> tuple[float, float, float]:
    """(requests, predict calls, seconds in the model) the server has counted so far."""
    from pynn.cli.monitor import Snapshot, fetch

    snap = Snapshot.parse(fetch(url + "/metrics"))
    return (snap.total("pynn_batch_requests_sum"), snap.total("pynn_batch_requests_count"),
            snap.total("pynn_predict_duration_seconds_sum"))


def measure(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms) and requests per predict call of `clients` concurrent
    keep-alive clients during `seconds`."""
    before = batch_counts(url)
    done, elapsed, lat = asyncio.run(_load(url, body, clients, seconds, record=True))
    after = batch_counts(url)
    ms = np.array(lat) * 1000
    calls = after[1] - before[1]
    return {"rps": done / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "requests": done,
            "batch": (after[0] - before[0]) / calls if calls else float("nan"),
            "model_us": 1e6 * (after[2] - before[2]) / calls if calls else float("nan")}


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {key: float(np.median([r[key] for r in rounds])) for key in rounds[0]}


def run_benchmark(seconds: float, client_counts: list[int], threads: int = 1,
                  window_ms: float = 0.0, rounds: int = 5) -> list[dict]:
    """Starts both servers, checks they agree, measures each client count (`rounds` turns of
    `seconds` / `rounds` per server); the rows."""
    folder = Path(tempfile.mkdtemp(prefix="pynn-bench-serve-"))
    path = folder / "model.safetensors"
    model = make_model(path)
    rng = np.random.default_rng(1)
    sample = np.round(rng.random((1, LAYERS[0])), 3).astype(np.float32)
    body = json.dumps({"instances": sample.tolist()}).encode()
    pynn_server = Child(["-m", "pynn", "serve", str(path), "--port", "0", "--threads",
                         str(threads), "--batch-window-ms", str(window_ms), "--log-level",
                         "warning"], threads)
    try:
        torch_server = Child([str(Path(__file__).resolve()), "--torch-server", str(path),
                              "--threads", str(threads), "--batch-window-ms", str(window_ms)],
                             threads)
    except BaseException:
        pynn_server.stop()
        raise
    rows = []
    try:
        want = model.predict(sample, verbose=0)
        for server in (pynn_server, torch_server):
            got = asyncio.run(_answer(server.url, body))
            assert np.allclose(got, want, rtol=1e-4, atol=1e-6), (server.url, got, want)
        servers = (("pynn", pynn_server), ("torch", torch_server))
        for clients in client_counts:
            for _, server in servers:  # warm up: connections, caches, the allocator
                asyncio.run(_load(server.url, body, clients, WARMUP_SECONDS, record=False))
            turns: dict[str, list[dict[str, float]]] = {impl: [] for impl, _ in servers}
            for _ in range(rounds):
                for impl, server in servers:
                    turns[impl].append(measure(server.url, body, clients, seconds / rounds))
            for impl, _ in servers:
                rows.append({"impl": impl, "clients": clients, **median_round(turns[impl])})
    finally:
        codes = (pynn_server.stop(), torch_server.stop())
    if codes != (0, 0):
        raise RuntimeError(f"the servers exited with {codes}")
    return rows


async def _answer(url: str, body: bytes) -> np.ndarray:
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST /v1/models/model:predict HTTP/1.1\r\nHost: {host}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    data = await reader.read()
    writer.close()
    return np.array(json.loads(data.split(b"\r\n\r\n", 1)[1])["predictions"], np.float32)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, with pynn's throughput relative to PyTorch's."""
    header = ("| clients | server | requests/s | p50 ms | p99 ms | requests per predict call "
              "| µs in the model per call | pynn vs torch (req/s) |")
    lines = [header, "|---:|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r["impl"], r["clients"]): r for r in rows}
    for r in rows:
        ratio = ""
        other = by.get(("torch", r["clients"]))
        if r["impl"] == "pynn" and other:
            ratio = f"{r['rps'] / other['rps']:.2f}x"
        lines.append(f"| {r['clients']} | {r['impl']} | {r['rps']:.0f} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['batch']:.2f} | {r['model_us']:.0f} | {ratio} |")
    return "\n".join(lines)


def test_serve_throughput(recorder):
    """pytest: 3 seconds per point, reported as time per request and latency."""
    import pytest

    pytest.importorskip("starlette")
    pytest.importorskip("torch")
    for r in run_benchmark(3.0, [1, 8, 32], rounds=3):
        case = f"serve, {r['clients']} client(s)"
        recorder("serve: 1/throughput", case, r["impl"], 1.0 / r["rps"])
        recorder("serve: p50 latency", case, r["impl"], r["p50"] / 1000)
        recorder("serve: p99 latency", case, r["impl"], r["p99"] / 1000)
        recorder("serve: time in the model per predict call", case, r["impl"],
                 r["model_us"] / 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per server and client count (default: 10)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-window-ms", type=float, default=0.0)
    parser.add_argument("--torch-server", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_server:
        serve_torch(args.torch_server, args.threads, args.batch_window_ms)
        return 0
    rows = run_benchmark(args.seconds, [int(c) for c in args.clients.split(",")],
                         args.threads, args.batch_window_ms, args.rounds)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
