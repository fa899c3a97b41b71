"""Request batching: requests for one model that arrive together share one predict call.

Each model has one `Batcher`: an asyncio task that takes the first waiting request, collects
the requests that arrive within the batch window of it (or until `max_rows` samples are
waiting), runs the model once on all their samples in the model's own thread (pynn's engine
releases the GIL while it computes, so the event loop keeps accepting requests meanwhile) and
hands every request its slice of the outputs. With a window of 0, a batch is whatever waits
when the previous predict call ends: no request is ever delayed, and a loaded server still
batches.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

PredictFn = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]
BatchObserver = Callable[[int, int, float], None]


@dataclass
class _Pending:
    inputs: Sequence[np.ndarray]
    rows: int
    future: asyncio.Future[list[np.ndarray]]
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Batches the predict calls of one model.

    Args:
        predict: the model's inputs (one (n, F) float32 array per input) -> its outputs (one
            (n, ...) array per output); it runs in a dedicated thread, one call at a time.
        window_s: how long the first request of a batch waits for others (seconds, >= 0).
        max_rows: a batch closes once it holds this many samples.
        observe: called after each predict call with (samples, requests, seconds).
        name: used for the thread's name.
    """

    def __init__(self, predict: PredictFn, window_s: float = 0.0, max_rows: int = 256,
                 observe: BatchObserver | None = None, name: str = "model"):
        if not window_s >= 0:
            raise ValueError(f"window_s: expected a number >= 0, got {window_s!r}")
        if max_rows < 1:
            raise ValueError(f"max_rows: expected a positive integer, got {max_rows!r}")
        self._predict = predict
        self._window = float(window_s)
        self._max_rows = int(max_rows)
        self._observe = observe
        self._name = name
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Starts the batching task on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"pynn-predict-{self._name}")
        self._task = asyncio.ensure_future(self._run())

    async def submit(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for these inputs (computed with those of other requests)."""
        if self._queue is None or self._loop is None:
            raise RuntimeError("Batcher.submit: the batcher is not started")
        future: asyncio.Future[list[np.ndarray]] = self._loop.create_future()
        self._queue.put_nowait(_Pending(inputs, int(inputs[0].shape[0]), future))
        return await future

    def drain(self) -> None:
        """From now on, run what waits at once instead of waiting out the window (shutdown)."""
        self._draining = True
        if self._queue is not None:
            self._queue.put_nowait(None)  # wakes a batch that is waiting for its window

    def drain_threadsafe(self) -> None:
        """`drain` from another thread or a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.drain)

    async def stop(self) -> None:
        """Stops the task; requests still waiting get a RuntimeError."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(RuntimeError("the server is stopping"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _next(self, timeout: float | None) -> _Pending | None:
        """The next waiting request (waiting at most `timeout` seconds; 0: only what is
        already queued), or None."""
        assert self._queue is not None
        while True:
            if timeout is not None and timeout <= 0:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    return None
            elif timeout is None:
                item = await self._queue.get()
            else:
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    return None
            if item is not None:
                return item
            if timeout is not None:  # the drain signal: stop waiting for this batch
                return None

    async def _run(self) -> None:
        while True:
            first = await self._next(None)
            assert first is not None
            batch, rows = [first], first.rows
            deadline = first.arrived + self._window
            while rows < self._max_rows:
                wait = 0.0 if self._draining else deadline - time.monotonic()
                item = await self._next(wait)
                if item is None:
                    break
                batch.append(item)
                rows += item.rows
            await self._execute(batch, rows)

    def _timed(self, inputs: Sequence[np.ndarray]) -> tuple[Sequence[np.ndarray], float]:
        """The model's outputs and the seconds it took (in the model's thread: the time in
        the model alone, not the hand-over between threads)."""
        start = time.perf_counter()
        outputs = self._predict(inputs)
        return outputs, time.perf_counter() - start

    async def _execute(self, batch: list[_Pending], rows: int) -> None:
        assert self._loop is not None and self._executor is not None
        batch = [p for p in batch if not p.future.done()]  # a client that went away
        if not batch:
            return
        count = len(batch[0].inputs)
        if len(batch) == 1:
            inputs = list(batch[0].inputs)
        else:
            inputs = [np.concatenate([p.inputs[k] for p in batch]) for k in range(count)]
        rows = int(inputs[0].shape[0])
        try:
            outputs, seconds = await self._loop.run_in_executor(self._executor, self._timed,
                                                                inputs)
        except Exception as exc:  # noqa: BLE001 - the model failed: each request learns why
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if self._observe is not None:
            self._observe(rows, len(batch), seconds)
        first = 0
        for p in batch:
            part = [o[first:first + p.rows] for o in outputs]
            first += p.rows
            if not p.future.done():
                p.future.set_result(part)
