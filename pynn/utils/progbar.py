"""Progbar: the progress display of fit/evaluate/predict, and the "auto" verbosity rule.

verbose=1 redraws one line per epoch in place (carriage return), at most every `interval`
seconds, so a fast loop does not flood a terminal, a log or a notebook; verbose=2 prints one
finished line per epoch and nothing in between; verbose=0 prints nothing.
"""
from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable
from time import monotonic as _clock  # module-level so tests can substitute a fake clock
from typing import Any, TextIO


def resolve_verbose(verbose, stream=None) -> int:
    """Turns a `verbose` argument into 0, 1 or 2.

    "auto" becomes 1 (the live bar) when the output stream (default sys.stdout) is a terminal
    and 2 (one line per epoch) otherwise, so redirected output and CI logs stay readable.
    """
    if verbose == "auto" and isinstance(verbose, str):
        stream = sys.stdout if stream is None else stream
        return 1 if _isatty(stream) else 2
    if isinstance(verbose, bool):
        return int(verbose)
    if isinstance(verbose, numbers.Integral) and 0 <= int(verbose) <= 2:
        return int(verbose)
    raise ValueError(f"verbose: expected 'auto', 0, 1 or 2. Received: verbose={verbose!r}")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _can_encode(stream, text: str) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True  # text streams without an encoding (StringIO) take any str
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_time_per_unit(seconds: float, unit_name: str) -> str:
    """Formats a duration per step as " 2s/step", " 12ms/step" or " 40us/step"."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit_name}"
    return f" {seconds * 1e6:.0f}us/{unit_name}"


def format_eta(seconds: float) -> str:
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int((seconds % 3600) // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def format_value(value) -> str:
    # Four decimals for ordinary magnitudes; scientific notation keeps tiny losses readable.
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if math.isfinite(value) and abs(value) <= 1e-3 and value != 0:
            return f"{value:.4e}"
        return f"{value:.4f}"
    return str(value)


class Progbar:
    """Displays a progress bar.

    Args:
        target: total number of steps, or None if unknown.
        width: width of the bar in characters.
        verbose: 0 silent, 1 live bar redrawn in place, 2 one line when the target is reached.
        interval: minimum number of seconds between two redraws with verbose=1 (the final
            update is always drawn).
        unit_name: name of a step in the time-per-step figure ("step", "sample", ...).
        stateful_metrics: names whose values are shown as given. All other values are averaged
            over the steps since the start (weighted by the steps each covers).
        stateless_metrics: alternatively, the only names to average; every other value is
            shown as given. At most one of the two may be passed.
        stream: text stream written to; None means the current sys.stdout.

    Example:

    ```python
    bar = Progbar(target=100)
    for step in range(1, 101):
        bar.update(step, [("loss", 0.5)])
    ```
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, unit_name="step",
                 stateful_metrics=None, stateless_metrics=None, stream=None):
        if target is not None and (isinstance(target, bool)
                                   or not isinstance(target, numbers.Integral) or target < 0):
            raise ValueError(f"Progbar: expected target to be None or a non-negative integer. "
                             f"Received: target={target!r}")
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ValueError(f"Progbar: expected width to be a positive integer. "
                             f"Received: width={width!r}")
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: expected verbose to be 0, 1 or 2. "
                             f"Received: verbose={verbose!r}")
        if isinstance(interval, bool) or not isinstance(interval, numbers.Real) \
                or not interval >= 0:
            raise ValueError(f"Progbar: expected interval to be a number of seconds >= 0. "
                             f"Received: interval={interval!r}")
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Progbar: pass at most one of stateful_metrics and "
                             "stateless_metrics")
        self.target = None if target is None else int(target)
        self.width = int(width)
        self.verbose = verbose
        self.interval = float(interval)
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics = None
            self.stateless_metrics = set(stateless_metrics)
        else:
            self.stateful_metrics = set(stateful_metrics or ())
            self.stateless_metrics = None
        self._stream = stream
        self._values = {}  # name -> [weighted sum, weight]
        self._values_order = []
        self._seen_so_far = 0
        self._start = _clock()
        self._last_update = None
        self._time_after_first_step = None
        self._prev_width = 0
        self.line_open = False  # a live line is on screen without its final newline

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def _averaged(self, name) -> bool:
        if self.stateless_metrics is not None:
            return name in self.stateless_metrics
        return name not in self.stateful_metrics

    def update(self, current: int, values: Iterable[tuple[str, Any]] | None = None,
               finalize: bool | None = None) -> None:
        """Records progress up to step `current` and redraws if due.

        Args:
            current: number of steps done (1-based index of the step just finished).
            values: list of `(name, value)` pairs for the step(s) since the last update.
            finalize: whether this is the last update; defaults to `current >= target`.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or ():
            if name not in self._values_order:
                self._values_order.append(name)
            numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if numeric and self._averaged(name):
                # Weight by the number of steps this value covers (update may skip steps).
                weight = max(current - self._seen_so_far, 1)
                total = self._values.setdefault(name, [0.0, 0])
                total[0] += value * weight
                total[1] += weight
            else:  # stateful, or not a number (text, per-class arrays): shown as given
                self._values[name] = [value, 1]
        self._seen_so_far = current

        now = _clock()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if (not finalize and self._last_update is not None
                    and now - self._last_update < self.interval):
                return
            self._draw_live(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize:
            self._draw_summary(current, now, time_per_unit)
        self._last_update = now

    def add(self, n: int, values: Iterable[tuple[str, Any]] | None = None) -> None:
        """Advances by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _metrics_text(self) -> str:
        parts = []
        for name in self._values_order:
            total, weight = self._values[name]
            if isinstance(total, numbers.Real) and not isinstance(total, bool):
                total = total / max(1, weight)
            parts.append(f" - {name}: {format_value(total)}")
        return "".join(parts)

    def _draw_live(self, current, now, time_per_unit, finalize):
        stream = self.stream
        # Colour where it renders (terminals, Jupyter); plain characters elsewhere.
        colour = _isatty(stream) or (stream is sys.stdout and "ipykernel" in sys.modules)
        bold, green, grey, reset = ("\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m") if colour \
            else ("", "", "", "")
        if self.target:
            digits = int(math.log10(self.target)) + 1
            count = f"{current:{digits}d}/{self.target}"
            done_width = min(self.width, int(self.width * current / self.target))
            if colour:
                done_char, todo_char = "━", "━"  # heavy line, told apart by colour
            elif _can_encode(stream, "━─"):
                done_char, todo_char = "━", "─"  # heavy done, light to do
            else:
                done_char, todo_char = "=", "."
            done = done_char * done_width
            todo = todo_char * (self.width - done_width)
            bar_plain = f"{count} {done}{todo}"
            bar = f"{bold}{count}{reset} "
            if done:
                bar += f"{green}{done}{reset}"
            if todo:
                bar += f"{grey}{todo}{reset}"
        else:
            bar_plain = bar = f"{current:7d}/Unknown"
        if self.target and not finalize:
            when = format_eta(time_per_unit * (self.target - current))
        else:
            when = f"{now - self._start:.0f}s"  # elapsed time once done or with no target
        rest = format_time_per_unit(time_per_unit, self.unit_name) + self._metrics_text()
        visible = len(bar_plain) + 1 + len(when) + len(rest)
        # Pad with spaces to wipe what is left of a longer previous line.
        padding = " " * max(0, self._prev_width - visible)
        line = f"\r{bar} {bold}{when}{reset}{rest}{padding}"
        if finalize:
            line += "\n"
        stream.write(line)
        stream.flush()
        self._prev_width = visible
        self.line_open = not finalize

    def _draw_summary(self, current, now, time_per_unit):
        if self.target:
            digits = int(math.log10(self.target)) + 1
            count = f"{current:{digits}d}/{self.target}"
        else:
            count = f"{current}/Unknown"
        line = (f"{count} - {now - self._start:.0f}s -"
                f"{format_time_per_unit(time_per_unit, self.unit_name)}"
                f"{self._metrics_text()}\n")
        stream = self.stream
        stream.write(line)
        stream.flush()

    def _estimate_step_duration(self, current, now) -> float:
        # The first step often pays one-off costs (allocation, thread start-up), so once a
        # second step is done the estimate is taken from the steps after it.
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
