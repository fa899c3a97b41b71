"""`pynn monitor`: a `pynn serve` server's metrics as a table in the terminal, refreshed live."""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pynn.cli.arguments import non_negative_int, positive_float
from pynn.cli.common import CliError, one_line

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands

Labels = dict[str, str]


def add_parser(sub: Subcommands) -> None:
    """Registers `monitor` and its options."""
    m = sub.add_parser("monitor", help="watch a pynn serve server's metrics",
                       description="Print the metrics of a pynn serve server as a table: "
                       "requests, latency, batching, the feedback window's accuracy, "
                       "precision, recall and F1, and input drift. Refreshes until Ctrl-C.")
    m.add_argument("url", metavar="URL", help="the server (http://HOST:PORT) or its /metrics")
    m.add_argument("--interval", type=positive_float, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default: 2)")
    m.add_argument("--once", action="store_true", help="print the table once and exit")
    m.add_argument("--top", type=non_negative_int, default=3, metavar="K",
                   help="drifting features listed per model (default: 3)")


def metrics_url(url: str) -> str:
    """The /metrics address of a server given by its base URL (or already by /metrics)."""
    if "://" not in url:
        url = "http://" + url
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


def fetch(url: str, timeout: float = 10.0) -> str:
    """The metrics text at `url`; CliError when the server cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"{url}: {one_line(getattr(exc, 'reason', exc))}") from None


@dataclass
class Snapshot:
    """The samples of one scrape: metric sample name -> [(labels, value)]."""

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    taken: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """Reads the Prometheus text format."""
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[s.name].append((dict(s.labels), float(s.value)))
        return cls(dict(samples), time.monotonic())

    def values(self, name: str, **match: str) -> list[tuple[Labels, float]]:
        """The samples of `name` whose labels include `match`."""
        return [(labels, v) for labels, v in self.samples.get(name, [])
                if all(labels.get(k) == want for k, want in match.items())]

    def total(self, name: str, **match: str) -> float:
        """The sum of the matching samples."""
        return sum(v for _, v in self.values(name, **match))

    def models(self) -> list[str]:
        """The served models (those with a ready gauge), in order of appearance."""
        names: list[str] = []
        for labels, _ in self.samples.get("pynn_model_ready", []):
            if labels.get("model") not in names:
                names.append(labels["model"])
        return names


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram [(upper bound, count)], interpolated within
    its bucket as Prometheus does; None without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, count
    return lower


def _buckets(snap: Snapshot, name: str, **match: str) -> list[tuple[float, float]]:
    merged: dict[float, float] = defaultdict(float)
    for labels, v in snap.values(name + "_bucket", **match):
        merged[float(labels["le"])] += v
    return sorted(merged.items())


def _mean(snap: Snapshot, name: str, **match: str) -> float | None:
    count = snap.total(name + "_count", **match)
    return snap.total(name + "_sum", **match) / count if count else None


def _weighted(snap: Snapshot, name: str, model: str) -> float | None:
    """A feedback gauge of `model`, averaged over worker processes by their window sizes."""
    weights = {labels.get("pid"): v for labels, v in snap.values("pynn_feedback_samples",
                                                                 model=model)}
    values = snap.values(name, model=model)
    total = sum(weights.get(labels.get("pid"), 0.0) for labels, _ in values)
    if not values or total <= 0:
        return None
    return sum(v * weights.get(labels.get("pid"), 0.0) for labels, v in values) / total


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return lines


def render(snap: Snapshot, url: str, previous: Snapshot | None = None, top: int = 3) -> str:
    """The tables of one snapshot (request rates from the change since `previous`)."""
    models = snap.models()
    lines = [f"pynn monitor  {url}  {time.strftime('%H:%M:%S')}", ""]
    if not models:
        return "\n".join(lines + ["no pynn models in these metrics"])
    rows = []
    for m in models:
        done = snap.values("pynn_requests_total", model=m)
        by_class: defaultdict[str, float] = defaultdict(float)
        for labels, v in done:
            by_class[labels.get("status", "?")[:1] + "xx"] += v
        total = sum(by_class.values())
        rate = None
        if previous is not None and snap.taken > previous.taken:
            before = previous.total("pynn_requests_total", model=m)
            rate = (total - before) / (snap.taken - previous.taken)
        lat = _buckets(snap, "pynn_request_duration_seconds", model=m, endpoint="predict")
        p50, p99 = histogram_quantile(0.5, lat), histogram_quantile(0.99, lat)
        rows.append([m, f"{total:.0f}", f"{by_class['2xx']:.0f}", f"{by_class['4xx']:.0f}",
                     f"{by_class['5xx']:.0f}", _fmt(rate, ".1f"),
                     _fmt(None if p50 is None else 1000 * p50, ".2f"),
                     _fmt(None if p99 is None else 1000 * p99, ".2f"),
                     _fmt(_mean(snap, "pynn_batch_rows", model=m), ".2f"),
                     _fmt(_mean(snap, "pynn_batch_requests", model=m), ".2f"),
                     f"{snap.total('pynn_inflight_requests', model=m):.0f}"])
    lines += _table(["model", "requests", "2xx", "4xx", "5xx", "req/s", "p50 ms", "p99 ms",
                     "rows/batch", "reqs/batch", "in flight"], rows)
    rows = []
    for m in models:
        samples = snap.total("pynn_feedback_samples", model=m)
        rows.append([m, f"{samples:.0f}"] + [
            _fmt(_weighted(snap, f"pynn_feedback_{k}", m), ".4f")
            for k in ("accuracy", "precision", "recall", "f1", "mae", "mse")])
    lines += [""] + _table(["feedback", "window", "accuracy", "precision", "recall", "f1",
                            "mae", "mse"], rows)
    rows = []
    for m in models:
        count = snap.values("pynn_drift_rows", model=m)
        if not count:
            rows.append([m, "-", "-", "-", "no training statistics"])
            continue
        psi = snap.values("pynn_drift_psi", model=m)
        worst: dict[tuple[str, str], float] = {}
        for labels, v in psi:
            key = (labels.get("input", ""), labels.get("feature", ""))
            worst[key] = max(v, worst.get(key, 0.0))
        ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:max(0, top)]
        several = len({k[0] for k in worst}) > 1
        names = ", ".join(f"{(i + '/') if several else ''}{f}: {v:.3f}"
                          for (i, f), v in ranked)
        shift = max((v for _, v in snap.values("pynn_drift_max_abs_mean_shift", model=m)),
                    default=None)
        top_psi = max((v for _, v in snap.values("pynn_drift_max_psi", model=m)),
                      default=None)
        rows.append([m, f"{sum(v for _, v in count):.0f}", _fmt(shift, ".3f"),
                     _fmt(top_psi, ".3f"), names or "-"])
    lines += [""] + _table(["drift", "rows", "max |shift|", "max PSI",
                            "features with the largest PSI"], rows)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prints the table once (--once) or refreshes it every --interval seconds."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise CliError("pynn monitor needs the serve extra: pip install \"pynn[serve]\"") \
            from None
    url = metrics_url(args.url)
    if args.once:
        print(render(Snapshot.parse(fetch(url)), url, top=args.top), flush=True)
        return 0
    live = sys.stdout.isatty()
    previous: Snapshot | None = None
    try:
        while True:
            try:
                snap = Snapshot.parse(fetch(url))
                text = render(snap, url, previous, args.top)
                previous = snap
            except CliError as exc:
                text = f"pynn monitor  {url}  {time.strftime('%H:%M:%S')}\n\n{exc}"
            if live:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text + ("" if live else "\n"), flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
