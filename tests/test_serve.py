"""`pynn serve` and `pynn monitor`: a real server (`python -m pynn serve`, a child process on a
free loopback port) queried over HTTP with the standard library's client.

Every wait has a timeout, so a hung server fails its test instead of stalling the suite; no
assertion depends on how fast anything runs.
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import pynn
from pynn import metrics as pm
from pynn.serve import stats as serve_stats

TESTS_DIR = Path(__file__).resolve().parent
START_TIMEOUT = 120
REQUEST_TIMEOUT = 60


# --- a server in a child process ----------------------------------------------------------------

class Server:
    """`python -m pynn serve ARGS --port 0` in a child process, and an HTTP client for it."""

    def __init__(self, *args: object):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pynn", "serve", *[str(a) for a in args], "--port", "0",
             "--log-level", "warning"],
            cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.pumps = [threading.Thread(target=self._pump, args=args, daemon=True) for args in
                      ((self.proc.stdout, self.lines, self.stdout),
                       (self.proc.stderr, None, self.stderr))]
        for t in self.pumps:
            t.start()
        self.url = self._wait_for_url()
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    @staticmethod
    def _pump(stream, lines, keep):
        for line in stream:
            keep.append(line)
            if lines is not None:
                lines.put(line)
        if lines is not None:
            lines.put(None)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
        self.kill()
        raise AssertionError(f"the server did not start:\n{''.join(self.stdout)}\n"
                             f"{''.join(self.stderr)}")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, chunked: bool = False) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            if chunked:
                conn.request(method, path, body=iter([body]), headers=headers or {},
                             encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, object]:
        status, body = self.request("GET", path)
        return status, json.loads(body)

    def post_json(self, path: str, payload: object) -> tuple[int, dict]:
        status, body = self.request("POST", path, json.dumps(payload).encode(),
                                    {"Content-Type": "application/json"})
        return status, json.loads(body)

    def predict(self, name: str, payload: object) -> tuple[int, dict]:
        return self.post_json(f"/v1/models/{name}:predict", payload)

    def metrics(self):
        from pynn.cli.monitor import Snapshot

        status, body = self.request("GET", "/metrics")
        assert status == 200
        return Snapshot.parse(body.decode())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` and returns the exit status (AssertionError if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the server did not stop after the signal") from None
        self._close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        for t in self.pumps:
            t.join(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(autouse=True)
def one_thread():
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    yield
    pynn.set_num_threads(before)


# --- models ----------------------------------------------------------------------------------

def _fit(model, x, y, loss):
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved models: 'clf' (3x2 images, 4 classes, with training statistics), 'two' (two
    named inputs, two named outputs), 'bin' (sigmoid) and 'reg' (regression)."""
    folder = tmp_path_factory.mktemp("serve-models")
    rng = np.random.default_rng(0)
    pynn.utils.set_random_seed(1)
    x = rng.normal(1.0, 2.0, size=(400, 3, 2)).astype(np.float32)
    y = (x.reshape(400, -1)[:, :2].sum(1) > 2).astype(int) + 2 * (x[:, 0, 0] > 1)
    clf = _fit(pynn.Sequential([pynn.Input((3, 2)), pynn.layers.Flatten(),
                                pynn.layers.Dense(16, activation="relu"),
                                pynn.layers.Dense(4, activation="softmax")]),
               x, y, "sparse_categorical_crossentropy")
    clf.save(folder / "clf.safetensors")
    serve_stats.save_stats(folder / "clf.safetensors", x)

    a, b = pynn.Input((3,), name="a"), pynn.Input((2, 2), name="b")
    h = pynn.layers.Concatenate()([a, pynn.layers.Flatten()(b)])
    h = pynn.layers.Dense(8, activation="tanh")(h)
    two = pynn.Model(inputs={"a": a, "b": b},
                     outputs={"p": pynn.layers.Dense(3, activation="softmax", name="p")(h),
                              "v": pynn.layers.Dense(1, name="v")(h)})
    two.save(folder / "two.safetensors")

    xb = rng.normal(size=(300, 5)).astype(np.float32)
    yb = (xb[:, 0] + xb[:, 1] > 0).astype(np.float32)
    binary = _fit(pynn.Sequential([pynn.Input((5,)), pynn.layers.Dense(1, activation="sigmoid")]),
                  xb, yb, "binary_crossentropy")
    binary.save(folder / "bin.safetensors")
    reg = _fit(pynn.Sequential([pynn.Input((5,)), pynn.layers.Dense(2)]), xb,
               np.stack([xb[:, 0], xb[:, 1] * 2], 1), "mse")
    reg.save(folder / "reg.safetensors")
    loaded = {name: pynn.load_model(folder / f"{name}.safetensors")
              for name in ("clf", "two", "bin", "reg")}
    return folder, loaded, x


@pytest.fixture(scope="module")
def server(models):
    """One server for the tests that do not depend on its windows."""
    folder = models[0]
    srv = Server(*(folder / f"{n}.safetensors" for n in ("clf", "two", "bin", "reg")),
                 "--max-body", 4096, "--window", 50)
    yield srv
    code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def as32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --- status and predictions ---------------------------------------------------------------------

def test_status_gives_readiness_and_shapes(server):
    status, body = server.get_json("/v1/models/clf")
    assert status == 200
    assert body["ready"] is True and body["name"] == "clf"
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert [i["shape"] for i in body["inputs"]] == [[-1, 3, 2]]
    assert [o["shape"] for o in body["outputs"]] == [[-1, 4]]
    assert body["drift"] is True and body["task"] == "multiclass"
    status, two = server.get_json("/v1/models/two/metadata")
    assert status == 200
    assert {i["name"]: i["shape"] for i in two["inputs"]} == {"a": [-1, 3], "b": [-1, 2, 2]}
    assert {o["name"]: o["shape"] for o in two["outputs"]} == {"p": [-1, 3], "v": [-1, 1]}
    assert server.get_json("/v1/models") == (200, {"models": ["clf", "two", "bin", "reg"]})
    assert server.get_json("/") == (200, {"status": "alive"})


def test_predictions_equal_model_predict(server, models):
    _, loaded, x = models
    rows = x[:7]
    want = loaded["clf"].predict(rows, verbose=0)
    status, body = server.predict("clf", {"instances": rows.tolist()})
    assert status == 200
    got = as32(body["predictions"])
    assert got.shape == (7, 4) and np.array_equal(got, want)
    # columns in, columns out; flattened samples are taken too
    status, body = server.predict("clf", {"inputs": rows.reshape(7, 6).tolist()})
    assert status == 200 and np.array_equal(as32(body["outputs"]), want)
    # integers are numbers
    ints = np.arange(12).reshape(2, 3, 2)
    status, body = server.predict("clf", {"instances": ints.tolist()})
    assert status == 200
    assert np.array_equal(as32(body["predictions"]),
                          loaded["clf"].predict(ints.astype(np.float32), verbose=0))


def test_several_named_inputs_and_outputs(server, models):
    _, loaded, _ = models
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(4, 2, 2)).astype(np.float32)
    want = loaded["two"].predict({"a": a, "b": b}, verbose=0)
    instances = [{"b": b[i].tolist(), "a": a[i].tolist()} for i in range(4)]
    status, body = server.predict("two", {"instances": instances})
    assert status == 200
    assert [sorted(p) for p in body["predictions"]] == [["p", "v"]] * 4
    assert np.array_equal(as32([p["p"] for p in body["predictions"]]), want["p"])
    assert np.array_equal(as32([p["v"] for p in body["predictions"]]), want["v"])
    status, body = server.predict("two", {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert status == 200
    assert np.array_equal(as32(body["outputs"]["p"]), want["p"])
    assert np.array_equal(as32(body["outputs"]["v"]), want["v"])


# --- bad requests -------------------------------------------------------------------------------

GOOD_ROW = [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]
BAD_REQUESTS = [
    ("malformed JSON", b'{"instances": [[1, 2]', "malformed JSON"),
    ("empty body", b"", "empty"),
    ("not an object", b"[1, 2, 3]", "expected a JSON object"),
    ("missing key", b'{"instance": []}', 'missing key "instances"'),
    ("both keys", b'{"instances": [], "inputs": []}', "exactly one"),
    ("instances not a list", b'{"instances": 3}', "expected an array"),
    ("no samples", b'{"instances": []}', "at least one sample"),
    ("wrong shape", json.dumps({"instances": [[1.0, 2.0, 3.0]]}).encode(), "shape [3, 2]"),
    ("one sample without the batch", json.dumps({"instances": GOOD_ROW}).encode(), "shape"),
    ("ragged rows", json.dumps({"instances": [GOOD_ROW, [[1, 2], [3]]]}).encode(), "ragged"),
    ("a string", json.dumps({"instances": [[[0.5, "1"], [1, 2], [3, 4]]]}).encode(), "string"),
    ("all strings", json.dumps({"instances": [[["a", "b"]] * 3]}).encode(), "string"),
    ("a boolean", json.dumps({"instances": [[[0.5, True], [1, 2], [3, 4]]]}).encode(),
     "boolean"),
    ("a null", json.dumps({"instances": [[[0.5, None], [1, 2], [3, 4]]]}).encode(), "null"),
    ("an object in a row", json.dumps({"instances": [[[0.5, {}], [1, 2], [3, 4]]]}).encode(),
     "object"),
    ("NaN", b'{"instances": [[[NaN, 1], [1, 2], [3, 4]]]}', "NaN"),
    ("Infinity", b'{"instances": [[[Infinity, 1], [1, 2], [3, 4]]]}', "Infinity"),
    ("-Infinity", b'{"instances": [[[-Infinity, 1], [1, 2], [3, 4]]]}', "Infinity"),
    ("beyond float32", b'{"instances": [[[1e39, 1], [1, 2], [3, 4]]]}', "float32"),
    ("huge integer", json.dumps({"instances": [[[10**400, 1], [1, 2], [3, 4]]]}).encode(),
     "float32"),
    ("not UTF-8", b'{"instances": [[\xff]]}', "malformed JSON"),
    ("deep nesting", b"[" * 2000 + b"]" * 2000, "JSON"),
]


def test_bad_requests_are_400_and_the_server_goes_on(server, models):
    _, loaded, x = models
    before = server.metrics().total("pynn_requests_total", model="clf", status="400")
    for what, body, message in BAD_REQUESTS:
        status, answer = server.request("POST", "/v1/models/clf:predict", body)
        assert status == 400, (what, answer)
        error = json.loads(answer)["error"]
        assert message in error, (what, error)
    after = server.metrics().total("pynn_requests_total", model="clf", status="400")
    assert after - before == len(BAD_REQUESTS)
    status, body = server.predict("clf", {"instances": [x[0].tolist()]})
    assert status == 200
    assert np.array_equal(as32(body["predictions"]), loaded["clf"].predict(x[:1], verbose=0))


@pytest.fixture(params=["orjson", "json"])
def codec(request, monkeypatch):
    """pynn.serve.codec with orjson (when installed) and with the standard library alone."""
    from pynn.serve import codec as module

    if request.param == "json":
        monkeypatch.setattr(module, "orjson", None)
    elif module.orjson is None:
        pytest.skip("orjson is not installed")
    return module


def test_codec_refuses_the_bad_bodies_with_either_json_reader(codec):
    sig = codec.Signature(("x",), ((3, 2),), ("y",), ((4,),))
    for what, body, message in BAD_REQUESTS:
        with pytest.raises(codec.RequestError) as info:
            codec.decode_inputs(codec.parse_body(body), sig, b"true" in body)
        assert info.value.status == 400 and message in info.value.message, (what, info.value)
    good = json.dumps({"instances": [GOOD_ROW, GOOD_ROW]}).encode()
    arrays, columnar = codec.decode_inputs(codec.parse_body(good), sig, False)
    assert not columnar and np.array_equal(arrays[0], as32([GOOD_ROW] * 2).reshape(2, 6))
    out = np.random.default_rng(0).random((2, 4)).astype(np.float32)
    for columnar in (False, True):
        text = codec.encode_outputs([out], sig, columnar)
        back = json.loads(text)["outputs" if columnar else "predictions"]
        assert np.array_equal(as32(back), out)
        assert text == json.dumps({"outputs" if columnar else "predictions":
                                   out.astype(np.float64).tolist()},
                                  separators=(",", ":")).encode()


@pytest.mark.parametrize("payload, message", [
    ({"instances": [{"a": [1, 2, 3]}]}, "missing key 'b'"),
    ({"instances": [{"a": [1, 2, 3], "b": [[1, 2], [3, 4]], "c": [1]}]}, "unknown input 'c'"),
    ({"instances": [{"a": [1, 2, 3], "b": [[1, 2], [3, 4]]}, [1, 2, 3]]}, "expected an object"),
    ({"instances": [[1, 2, 3]]}, "give each sample as an object"),
    ({"inputs": {"a": [[1, 2, 3]]}}, "missing key 'b'"),
    ({"inputs": {"a": [[1, 2, 3]], "b": [[[1, 2], [3, 4]]] * 2}}, "2 samples"),
    ({"inputs": [[1, 2, 3]]}, "give an object by input name"),
])
def test_bad_multi_input_requests(server, payload, message):
    status, body = server.predict("two", payload)
    assert status == 400 and message in body["error"], body


def test_body_over_the_limit_is_413(server, models):
    _, loaded, x = models
    big = json.dumps({"instances": [x[0].tolist()] * 60}).encode()
    assert len(big) > 4096
    status, body = server.request("POST", "/v1/models/clf:predict", big)
    assert status == 413 and "limit" in json.loads(body)["error"]
    # without a Content-Length: counted while reading
    status, body = server.request("POST", "/v1/models/clf:predict", big, chunked=True)
    assert status == 413 and "limit" in json.loads(body)["error"]
    small = json.dumps({"instances": [x[0].tolist()] * 3}).encode()
    status, body = server.request("POST", "/v1/models/clf:predict", small, chunked=True)
    assert status == 200
    assert np.array_equal(as32(json.loads(body)["predictions"]),
                          loaded["clf"].predict(np.repeat(x[:1], 3, 0), verbose=0))
    assert server.metrics().total("pynn_requests_total", model="clf", status="413") == 2


def test_unknown_model_or_endpoint_is_404(server):
    status, body = server.predict("nope", {"instances": [[1]]})
    assert status == 404 and "no model named 'nope'" in body["error"]
    assert "clf" in body["error"]
    status, body = server.get_json("/v1/models/nope")
    assert status == 404 and "nope" in body["error"]
    status, body = server.post_json("/v1/models/clf:explain", {"instances": [GOOD_ROW]})
    assert status == 404 and "explain" in body["error"]
    status, body = server.post_json("/v1/models/clf", {"instances": [GOOD_ROW]})
    assert status == 404
    status, body = server.request("GET", "/v2/health")
    assert status == 404 and json.loads(body) == {"error": "Not Found"}
    status, body = server.request("DELETE", "/v1/models/clf")
    assert status == 405 and "error" in json.loads(body)
    assert server.metrics().total("pynn_requests_total", model="(unknown)", status="404") >= 2


# --- concurrency and batching -------------------------------------------------------------------

def run_clients(count: int, work) -> list:
    """`work(i)` in `count` threads started together; their results (errors re-raised)."""
    results: list = [None] * count
    errors: list = []
    barrier = threading.Barrier(count)

    def client(i):
        try:
            barrier.wait(timeout=REQUEST_TIMEOUT)
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    return results


def test_concurrent_requests_share_predict_calls(models):
    folder, loaded, x = models
    # A long window that closes once 8 samples wait: 8 clients of 1 sample each make a batch as
    # soon as they have all arrived, whatever the machine's speed.
    srv = Server(folder / "clf.safetensors", "--batch-window-ms", 30000, "--max-batch", 8)
    try:
        answers = run_clients(8, lambda i: srv.predict("clf", {"instances": [x[i].tolist()]}))
        want = loaded["clf"].predict(x[:8], verbose=0)
        for i, (status, body) in enumerate(answers):
            assert status == 200
            assert np.array_equal(as32(body["predictions"]), want[i:i + 1])
        snap = srv.metrics()
        calls = snap.total("pynn_batch_requests_count", model="clf")
        assert snap.total("pynn_batch_requests_sum", model="clf") == 8
        assert snap.total("pynn_batch_rows_sum", model="clf") == 8
        assert calls < 8  # some requests shared a predict call
        assert snap.total("pynn_requests_total", model="clf", status="200") == 8
        assert snap.total("pynn_inflight_requests", model="clf") == 0
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def test_many_concurrent_clients(server, models):
    _, loaded, x = models
    want = loaded["clf"].predict(x[:64], verbose=0)

    def client(i):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_TIMEOUT)
        got = []
        try:
            for k in range(4):  # keep-alive: several requests on one connection
                row = (2 * i + k) % 64
                conn.request("POST", "/v1/models/clf:predict",
                             json.dumps({"instances": [x[row].tolist()]}).encode())
                response = conn.getresponse()
                got.append((row, response.status, json.loads(response.read())))
        finally:
            conn.close()
        return got

    for per_client in run_clients(32, client):
        for row, status, body in per_client:
            assert status == 200
            assert np.array_equal(as32(body["predictions"]), want[row:row + 1])
    assert server.metrics().total("pynn_inflight_requests", model="clf") == 0


# --- feedback -------------------------------------------------------------------------------

def test_feedback_scores_equal_pynn_metrics(server, models):
    _, loaded, x = models
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, size=80)
    for start in range(0, 80, 16):  # 80 samples through a window of 50
        status, body = server.post_json("/v1/models/clf:feedback", {
            "instances": x[start:start + 16].tolist(),
            "labels": labels[start:start + 16].tolist()})
        assert status == 200, body
    predicted = loaded["clf"].predict(x[:80], verbose=0).argmax(1)
    t, p = labels[-50:], predicted[-50:]
    seen = np.union1d(t, p)  # the macro average is over the classes in the window
    want = {"accuracy": float(np.mean(t == p)),
            "precision": np.mean(pm.precision_score(t, p, average=None, num_classes=4)[seen]),
            "recall": np.mean(pm.recall_score(t, p, average=None, num_classes=4)[seen]),
            "f1": np.mean(pm.f1_score(t, p, average=None, num_classes=4)[seen])}
    # the same definition as scikit-learn's macro average
    from sklearn import metrics as sk

    assert want["precision"] == pytest.approx(sk.precision_score(t, p, average="macro",
                                                                 zero_division=0))
    assert want["f1"] == pytest.approx(sk.f1_score(t, p, average="macro", zero_division=0))
    assert body["samples"] == 50 and body["received"] == 16
    snap = server.metrics()
    for key, value in want.items():
        assert body[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
        assert snap.total(f"pynn_feedback_{key}", model="clf") == pytest.approx(
            value, rel=1e-12, abs=1e-15), key
    assert snap.total("pynn_feedback_samples", model="clf") == 50
    # one-hot labels are class labels too
    status, body = server.post_json("/v1/models/clf:feedback", {
        "instances": x[:2].tolist(), "labels": np.eye(4)[labels[:2]].tolist()})
    assert status == 200 and body["samples"] == 50


def test_feedback_for_binary_and_regression_models(server, models):
    _, loaded, _ = models
    rng = np.random.default_rng(3)
    xb = rng.normal(size=(30, 5)).astype(np.float32)
    yb = rng.integers(0, 2, size=30)
    status, body = server.post_json("/v1/models/bin:feedback",
                                    {"instances": xb.tolist(), "labels": yb.tolist()})
    assert status == 200, body
    pb = (loaded["bin"].predict(xb, verbose=0)[:, 0] > 0.5).astype(int)
    assert body["precision"] == pytest.approx(pm.precision_score(yb, pb), abs=1e-15)
    assert body["recall"] == pytest.approx(pm.recall_score(yb, pb), abs=1e-15)
    assert body["f1"] == pytest.approx(pm.f1_score(yb, pb), abs=1e-15)
    xr, yr = xb[:12], rng.normal(size=(12, 2))  # (within the server's body limit)
    status, body = server.post_json("/v1/models/reg:feedback",
                                    {"instances": xr.tolist(), "labels": yr.tolist()})
    assert status == 200, body
    pr = loaded["reg"].predict(xr, verbose=0).astype(np.float64)
    assert body["mae"] == pytest.approx(pm.mean_absolute_error(yr, pr), rel=1e-12)
    assert body["mse"] == pytest.approx(pm.mean_squared_error(yr, pr), rel=1e-12)
    assert server.metrics().total("pynn_feedback_mse", model="reg") == pytest.approx(
        body["mse"], rel=1e-12)


@pytest.mark.parametrize("payload, message", [
    ({"instances": [GOOD_ROW]}, 'missing key "labels"'),
    ({"instances": [GOOD_ROW], "labels": [1, 2]}, "expected 1 labels"),
    ({"instances": [GOOD_ROW], "labels": [4]}, "class indices 0..3"),
    ({"instances": [GOOD_ROW], "labels": [1.5]}, "class indices"),
    ({"instances": [GOOD_ROW], "labels": ["cat"]}, "string"),
    ({"labels": [1]}, 'missing key "instances"'),
])
def test_bad_feedback_is_400(server, payload, message):
    status, body = server.post_json("/v1/models/clf:feedback", payload)
    assert status == 400 and message in body["error"], body


# --- drift ------------------------------------------------------------------------------------

def test_drift_gauges_follow_the_served_inputs(models):
    folder, _, x = models
    stats = serve_stats.load_stats(folder / "clf.safetensors").inputs[0]
    srv = Server(folder / "clf.safetensors", "--window", 100)
    try:
        def served(rows):
            for start in range(0, len(rows), 25):
                status, _ = srv.predict("clf", {"instances": rows[start:start + 25].tolist()})
                assert status == 200

        def gauges():
            snap = srv.metrics()
            shift = np.array([snap.total("pynn_drift_mean_shift", model="clf",
                                         feature=str(f)) for f in range(6)])
            psi = np.array([snap.total("pynn_drift_psi", model="clf", feature=str(f))
                            for f in range(6)])
            return snap, shift, psi

        same = x[:100]
        served(same)
        snap, shift, psi = gauges()
        rows = same.reshape(100, -1).astype(np.float64)
        assert snap.total("pynn_drift_rows", model="clf") == 100
        assert np.allclose(shift, stats.mean_shift(rows), rtol=1e-12, atol=1e-15)
        assert np.allclose(psi, stats.psi(rows), rtol=1e-12, atol=1e-15)
        calm_psi = psi.max()

        moved = x[100:200].copy()
        moved[:, 0, 0] += 3 * stats.std[0]  # feature 0 moves by three training std
        served(moved)
        snap, shift, psi = gauges()
        rows = moved.reshape(100, -1).astype(np.float64)
        assert np.allclose(shift, stats.mean_shift(rows), rtol=1e-12, atol=1e-15)
        assert np.allclose(psi, stats.psi(rows), rtol=1e-12, atol=1e-15)
        assert shift[0] > 2.5 and np.abs(shift[1:]).max() < 1
        assert psi[0] > max(1.0, 10 * calm_psi) and psi[0] == psi.max()
        assert snap.total("pynn_drift_max_psi", model="clf") == pytest.approx(psi[0])
        assert snap.total("pynn_drift_max_abs_mean_shift", model="clf") == pytest.approx(
            np.abs(shift).max())
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def test_training_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(1000, 4, 2))
    x[:, 0, 0] = 0.0  # a constant feature
    x[:, 0, 1] = rng.integers(0, 3, 1000)  # few distinct values
    s = serve_stats.TrainingStats.from_data(x)
    f = s.inputs[0]
    flat = x.reshape(1000, -1)
    assert s.samples == 1000 and f.features == 8
    assert np.allclose(f.mean, flat.mean(0)) and np.allclose(f.std, flat.std(0))
    assert np.allclose(f.shares.sum(1), 1.0)
    assert np.array_equal(f.psi(flat), np.zeros(8))  # the training data against itself
    assert np.array_equal(f.mean_shift(flat), np.zeros(8))
    assert f.mean_shift(flat + 1.0)[0] == 1.0  # std 0: raw units
    back = serve_stats.TrainingStats.from_dict(json.loads(json.dumps(s.to_dict())))
    g = back.inputs[0]
    for name in ("mean", "std", "edges", "shares"):
        assert np.array_equal(getattr(f, name), getattr(g, name)), name
    named = serve_stats.TrainingStats.from_data({"b": x[:, :2], "a": x[:, 2:]})
    assert [i.name for i in named.for_inputs(["a", "b"], [4, 4])] == ["a", "b"]
    with pytest.raises(ValueError, match="no statistics"):
        named.for_inputs(["a", "c"], [4, 4])
    with pytest.raises(ValueError, match="values per sample"):
        s.for_inputs(["x"], [7])
    with pytest.raises(ValueError, match="NaN"):
        serve_stats.TrainingStats.from_data(np.full((3, 2), np.nan))
    assert serve_stats.stats_path("out/model.safetensors") == os.path.join("out",
                                                                           "model.stats.json")


# --- shutdown, workers, the command line ------------------------------------------------------

def test_sigterm_finishes_requests_in_flight_and_exits_0(models):
    folder, loaded, x = models
    # The request waits in a batch window far longer than the test: only the drain can end it.
    srv = Server(folder / "clf.safetensors", "--batch-window-ms", 600_000)
    answer: list = []
    try:
        thread = threading.Thread(
            target=lambda: answer.append(srv.predict("clf", {"instances": x[:3].tolist()})),
            daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while srv.metrics().total("pynn_inflight_requests", model="clf") < 1:
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.05)
        assert not answer
        srv.proc.send_signal(signal.SIGTERM)
        thread.join(REQUEST_TIMEOUT)
        assert not thread.is_alive(), "the request in flight was not answered"
    finally:
        code = srv.stop()
    status, body = answer[0]
    assert status == 200
    assert np.array_equal(as32(body["predictions"]), loaded["clf"].predict(x[:3], verbose=0))
    assert code == 0, "".join(srv.stderr)
    assert "pynn serve: stopped" in "".join(srv.stdout)


def test_workers_share_the_port_and_their_metrics(models):
    folder, loaded, x = models
    srv = Server(folder / "clf.safetensors", "--workers", 2, "--name", "fashion")
    try:
        want = loaded["clf"].predict(x[:10], verbose=0)
        for i in range(10):  # a new connection each: either worker may answer
            status, body = srv.predict("fashion", {"instances": [x[i].tolist()]})
            assert status == 200
            assert np.array_equal(as32(body["predictions"]), want[i:i + 1])
        status, _ = srv.predict("fashion", {"instances": [[1.0]]})
        assert status == 400
        snap = srv.metrics()
        assert snap.total("pynn_requests_total", model="fashion", status="200") == 10
        assert snap.total("pynn_requests_total", model="fashion", status="400") == 1
        assert snap.total("pynn_batch_rows_sum", model="fashion") == 10
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def run_pynn(*args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pynn", *[str(a) for a in args]],
                          cwd=TESTS_DIR, capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_monitor_prints_the_tables(server, models):
    server.post_json("/v1/models/bin:feedback", {"instances": [[0.0] * 5], "labels": [1]})
    result = run_pynn("monitor", server.url, "--once")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("model", "requests", "p99 ms", "feedback", "accuracy", "drift", "max PSI"):
        assert word in out, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert {"clf", "two", "bin", "reg"} <= set(lines)
    assert "no training statistics" in out  # 'two' has none


def test_monitor_refreshes_until_interrupted(server):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Ctrl-C as a terminal sends it. A test run started in the background by a shell without
    # job control (`cmd &` in a script) ignores SIGINT, and its children inherit that, so
    # `python -m pynn` gets the default Ctrl-C handling back before it starts.
    launch = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
              " sys.argv[0] = 'pynn'; runpy.run_module('pynn', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", launch, "monitor", server.url, "--interval",
                             "0.1"], cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    frames = 0
    watchdog = threading.Timer(START_TIMEOUT, proc.kill)  # a hung monitor: its output ends
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            frames += line.startswith("pynn monitor")
            if frames == 3:
                break
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=REQUEST_TIMEOUT)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert frames == 3 and code == 0


def test_monitor_of_a_dead_server_is_an_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_pynn("monitor", f"http://127.0.0.1:{port}", "--once")
    assert result.returncode == 2 and "pynn: error:" in result.stderr


def test_histogram_quantile():
    from pynn.cli.monitor import histogram_quantile

    buckets = [(0.1, 50.0), (0.2, 90.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_serve_command_errors(models, tmp_path):
    folder = models[0]
    result = run_pynn("serve", tmp_path / "missing.safetensors")
    assert result.returncode == 2 and "no such model file" in result.stderr
    result = run_pynn("serve", folder / "clf.safetensors", folder / "bin.safetensors",
                      "--name", "one")
    assert result.returncode == 2 and "--name" in result.stderr
    result = run_pynn("serve", folder / "clf.safetensors", "--name", "a:b")
    assert result.returncode == 2 and "model name" in result.stderr
    # statistics that do not fit the model
    (tmp_path / "m.safetensors").write_bytes((folder / "bin.safetensors").read_bytes())
    serve_stats.save_stats(tmp_path / "m.safetensors", np.zeros((4, 3)))
    result = run_pynn("serve", tmp_path / "m.safetensors")
    assert result.returncode == 2 and "values per sample" in result.stderr


def test_pynn_train_writes_statistics_that_serve_uses(tmp_path, monkeypatch, capsys):
    from test_cli import offline_without_full_set

    from pynn import cli

    offline_without_full_set(monkeypatch, tmp_path)  # the shipped Fashion-MNIST subset
    out = tmp_path / "out"
    code = cli.main(["train", "--epochs", "1", "--hidden", "16", "--no-plots", "--output",
                     str(out), "--verbose", "0"])
    assert code == 0, capsys.readouterr().err
    assert "model.stats.json" in capsys.readouterr().out
    stats = serve_stats.load_stats(out / "model.safetensors")
    assert stats is not None and stats.inputs[0].features == 784
    model = pynn.load_model(out / "model.safetensors")
    srv = Server(out)  # a folder holding model.safetensors: served as 'out'
    try:
        status, body = srv.get_json("/v1/models/out")
        assert status == 200 and body["drift"] is True
        assert body["inputs"][0]["shape"] == [-1, 28, 28]
        images = np.random.default_rng(0).random((2, 28, 28)).astype(np.float32)
        status, body = srv.predict("out", {"instances": images.tolist()})
        assert status == 200
        assert np.array_equal(as32(body["predictions"]), model.predict(images, verbose=0))
        assert srv.metrics().total("pynn_drift_rows", model="out") == 2
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def test_feedback_by_prediction_id(models):
    folder, loaded, x = models
    srv = Server(folder / "clf.safetensors", "--prediction-ids", "--window", 20)
    try:
        status, body = srv.predict("clf", {"instances": x[:6].tolist()})
        assert status == 200 and len(body["ids"]) == 6 and len(set(body["ids"])) == 6
        ids = body["ids"]
        status, more = srv.predict("clf", {"inputs": x[6:8].tolist()})
        assert status == 200 and len(more["ids"]) == 2
        labels = [0, 1, 2, 3, 0, 1, 2, 3]
        status, fb = srv.post_json("/v1/models/clf:feedback",
                                   {"ids": ids + more["ids"], "labels": labels})
        assert status == 200, fb
        p = loaded["clf"].predict(x[:8], verbose=0).argmax(1)
        assert fb["samples"] == 8
        assert fb["accuracy"] == pytest.approx(np.mean(p == np.array(labels)), abs=1e-15)
        # an id counts once; unknown ids and mixed requests are refused
        for payload, message in [({"ids": ids[:1], "labels": [0]}, "unknown prediction id"),
                                 ({"ids": ["nope"], "labels": [0]}, "unknown prediction id"),
                                 ({"ids": ids[:1], "instances": x[:1].tolist(), "labels": [0]},
                                  "not both"),
                                 ({"ids": [1], "labels": [0]}, "array of prediction ids")]:
            status, answer = srv.post_json("/v1/models/clf:feedback", payload)
            assert status == 400 and message in answer["error"], (payload, answer)
        status, fb = srv.post_json("/v1/models/clf:feedback",
                                   {"instances": x[:1].tolist(), "labels": [0]})
        assert status == 200 and fb["samples"] == 9
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.stderr)


def test_feedback_by_id_needs_the_flag(server, models):
    status, body = server.post_json("/v1/models/clf:feedback", {"ids": ["a"], "labels": [0]})
    assert status == 400 and "--prediction-ids" in body["error"]
    status, body = server.predict("clf", {"instances": models[2][:1].tolist()})
    assert status == 200 and "ids" not in body


def test_batcher_in_process():
    import asyncio

    from pynn.serve.batching import Batcher

    calls = []

    def double(inputs):
        calls.append(inputs[0].shape[0])
        return [inputs[0] * 2]

    def broken(inputs):
        raise RuntimeError("the model failed")

    async def scenario():
        seen = []
        b = Batcher(double, window_s=600.0, max_rows=3,
                    observe=lambda rows, reqs, sec: seen.append((rows, reqs)))
        b.start()
        x = [np.full((1, 2), float(i), np.float32) for i in range(3)]
        # three requests close a batch of three rows at once, long before the window ends
        outs = await asyncio.wait_for(asyncio.gather(*[b.submit([v]) for v in x]), 60)
        assert [o[0].tolist() for o in outs] == [[[0, 0]], [[2, 2]], [[4, 4]]]
        assert seen == [(3, 3)] and calls == [3]
        # a lone request waits for its window, unless the server drains
        pending = asyncio.ensure_future(b.submit([x[1]]))
        await asyncio.sleep(0.05)
        assert not pending.done()
        b.drain()
        out = await asyncio.wait_for(pending, 60)
        assert out[0].tolist() == [[2, 2]] and seen[-1] == (1, 1)
        await b.stop()
        failing = Batcher(broken)
        failing.start()
        try:
            await asyncio.wait_for(failing.submit([x[0]]), 60)
        except RuntimeError as exc:
            assert "the model failed" in str(exc)
        else:
            raise AssertionError("the model's error did not reach the request")
        await failing.stop()

    asyncio.run(scenario())
