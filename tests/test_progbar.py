"""Progbar output formats (verbose 1 and 2), throttling by `interval`, and resolve_verbose.

A fake clock replaces the module's monotonic clock so times in the output are exact; the
expected lines are written out by hand from the Keras format:
  verbose=1: "\\r{count}/{target} {bar} {eta or elapsed} {time per step} - name: value ..."
  verbose=2: "{count}/{target} - {elapsed}s - {time per step} - name: value ...\\n"
"""
import io

import pytest

from pynn.utils.progbar import (
    Progbar,
    format_eta,
    format_time_per_unit,
    format_value,
    resolve_verbose,
)


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_verbose_1_lines(clock):
    out = io.StringIO()
    bar = Progbar(10, width=10, interval=0, stream=out)
    clock.now = 1.0
    bar.update(1, [("loss", 1.0)])
    # 1 s for the first step, 9 steps to go.
    assert out.getvalue() == "\r 1/10 ━───────── 9s 1s/step - loss: 1.0000"
    clock.now = 1.5
    bar.update(2, [("loss", 3.0)])
    # Step time measured after the first step: 0.5 s; running mean of 1 and 3.
    assert out.getvalue().split("\r")[2] == " 2/10 ━━──────── 4s 500ms/step - loss: 2.0000"
    clock.now = 5.0
    bar.update(10, [("loss", 0.5)])
    # Final line: elapsed time, (5 - 1) / 9 s per step, mean (1 + 3 + 8 * 0.5) / 10, newline.
    assert out.getvalue().split("\r")[3] == "10/10 ━━━━━━━━━━ 5s 444ms/step - loss: 0.8000\n"


def test_verbose_1_only_final_line_has_newline(clock):
    out = io.StringIO()
    bar = Progbar(3, interval=0, stream=out)
    for step in (1, 2, 3):
        clock.now += 1
        bar.update(step)
    assert out.getvalue().count("\n") == 1 and out.getvalue().endswith("\n")
    assert out.getvalue().count("\r") == 3


def test_stateful_metrics_are_shown_as_given(clock):
    out = io.StringIO()
    bar = Progbar(4, interval=0, stateful_metrics=["acc"], stream=out)
    bar.update(1, [("acc", 0.25), ("loss", 1.0)])
    bar.update(2, [("acc", 0.75), ("loss", 2.0)])
    assert out.getvalue().split("\r")[2].endswith(" - acc: 0.7500 - loss: 1.5000")


def test_stateless_metrics_lists_the_only_averaged_names(clock):
    out = io.StringIO()
    bar = Progbar(4, interval=0, stateless_metrics=["loss"], stream=out)
    bar.update(1, [("acc", 0.25), ("loss", 1.0)])
    bar.update(2, [("acc", 0.75), ("loss", 2.0)])
    assert out.getvalue().split("\r")[2].endswith(" - acc: 0.7500 - loss: 1.5000")


def test_average_is_weighted_by_steps_covered(clock):
    out = io.StringIO()
    bar = Progbar(8, interval=0, stream=out)
    bar.update(2, [("loss", 1.0)])
    bar.update(4, [("loss", 4.0)])  # covers steps 3-4: (2 * 1 + 2 * 4) / 4
    assert out.getvalue().endswith(" - loss: 2.5000")


def test_add_advances_by_n(clock):
    out = io.StringIO()
    bar = Progbar(4, interval=0, width=4, stream=out)
    bar.add(1)
    bar.add(2)
    assert out.getvalue().split("\r")[2].startswith("3/4 ━━━─ ")


def test_shorter_line_is_padded_to_wipe_the_previous_one(clock):
    out = io.StringIO()
    bar = Progbar(10, interval=0, stateful_metrics=["loss"], stream=out)
    clock.now = 1.0
    bar.update(1, [("loss", 12345.678)])
    clock.now = 2.0
    bar.update(2, [("loss", 1.0)])
    first, second = out.getvalue().split("\r")[1:]
    # Same time fields (1 s per step, one-digit ETA); "12345.6780" vs "1.0000": 4 spaces.
    assert second.endswith("loss: 1.0000    ")
    assert len(second) == len(first)


def test_interval_throttles_redraws(clock):
    out = io.StringIO()
    bar = Progbar(10, interval=0.5, stream=out)
    for step in range(1, 11):
        clock.now = 0.125 * step
        bar.update(step, [("loss", 1.0)])
    drawn = [chunk.split("/")[0].strip() for chunk in out.getvalue().split("\r")[1:]]
    # First update always drawn (t=0.125); next once 0.5 s passed (t=0.625, step 5), then
    # t=1.125 (step 9); the final step is always drawn.
    assert drawn == ["1", "5", "9", "10"]


def test_interval_zero_draws_every_update(clock):
    out = io.StringIO()
    bar = Progbar(5, interval=0, stream=out)
    for step in range(1, 6):
        bar.update(step)
    assert out.getvalue().count("\r") == 5


def test_many_fast_steps_give_few_redraws(clock):
    out = io.StringIO()
    bar = Progbar(1000, stream=out)  # default interval 0.05 s
    tick = 2.0 ** -13  # ~0.12 ms per step, exact in binary so no comparison is a near-tie
    for step in range(1, 1001):
        clock.now = step * tick
        bar.update(step, [("loss", 0.5)])
    drawn = [chunk.split("/")[0].strip() for chunk in out.getvalue().split("\r")[1:]]
    # After step 1, a redraw needs (step - last) * tick >= 0.05, i.e. 410 more steps: 411,
    # 821; then the final step.
    assert drawn == ["1", "411", "821", "1000"]


def test_verbose_2_prints_one_line_at_the_end(clock):
    out = io.StringIO()
    bar = Progbar(4, verbose=2, stream=out)
    for step in range(1, 4):
        clock.now = float(step)
        bar.update(step, [("loss", float(step))])
        assert out.getvalue() == ""
    clock.now = 4.0
    bar.update(4, [("loss", 4.0)])
    assert out.getvalue() == "4/4 - 4s - 1s/step - loss: 2.5000\n"


def test_verbose_0_prints_nothing(clock):
    out = io.StringIO()
    bar = Progbar(3, verbose=0, stream=out)
    for step in range(1, 4):
        bar.update(step, [("loss", 1.0)])
    assert out.getvalue() == ""


def test_unknown_target(clock):
    out = io.StringIO()
    bar = Progbar(None, interval=0, stream=out)
    clock.now = 1.0
    bar.update(3)
    assert out.getvalue() == "\r      3/Unknown 1s 333ms/step"


def test_default_stream_is_current_stdout(clock, capsys):
    Progbar(1, verbose=2).update(1, [("loss", 0.5)])
    assert capsys.readouterr().out == "1/1 - 0s - 0s/step - loss: 0.5000\n"


def test_terminal_gets_colours_and_files_do_not(clock):
    tty, plain = TTY(), io.StringIO()
    for stream in (tty, plain):
        Progbar(2, interval=0, stream=stream).update(1)
    assert "\x1b[32m" in tty.getvalue() and "\x1b[1m" in tty.getvalue()
    assert "\x1b" not in plain.getvalue()


def test_ascii_stream_gets_ascii_bar(clock):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    Progbar(4, width=4, interval=0, stream=stream).update(2)
    stream.flush()
    assert raw.getvalue().decode("ascii").startswith("\r2/4 ==.. ")


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (59.9, "59s"), (125, "2:05"),
                                           (3725, "1:02:05")])
def test_eta_format(seconds, text):
    assert format_eta(seconds) == text


@pytest.mark.parametrize("seconds, text", [(0, " 0s/step"), (2.4, " 2s/step"),
                                           (0.0123, " 12ms/step"), (2e-5, " 20us/step")])
def test_time_per_step_format(seconds, text):
    assert format_time_per_unit(seconds, "step") == text


@pytest.mark.parametrize("value, text", [(0.5, "0.5000"), (1e-5, "1.0000e-05"),
                                         (-2e-4, "-2.0000e-04"), (0.0, "0.0000"),
                                         (float("nan"), "nan"), (12, "12.0000")])
def test_value_format(value, text):
    assert format_value(value) == text


def test_defaults():
    bar = Progbar(5)
    assert (bar.target, bar.width, bar.verbose, bar.interval, bar.unit_name) == \
        (5, 30, 1, 0.05, "step")


@pytest.mark.parametrize("kwargs, match", [
    ({"target": -1}, "target"), ({"target": 2.5}, "target"), ({"width": 0}, "width"),
    ({"verbose": 3}, "verbose"), ({"verbose": "auto"}, "verbose"),
    ({"interval": -1}, "interval"),
    ({"stateful_metrics": ["a"], "stateless_metrics": ["b"]}, "stateful_metrics"),
])
def test_bad_arguments(kwargs, match):
    kwargs = {"target": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        Progbar(**kwargs)


def test_resolve_verbose_auto_follows_isatty():
    assert resolve_verbose("auto", TTY()) == 1
    assert resolve_verbose("auto", io.StringIO()) == 2


def test_resolve_verbose_auto_reads_sys_stdout(monkeypatch):
    monkeypatch.setattr("sys.stdout", TTY())
    assert resolve_verbose("auto") == 1
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert resolve_verbose("auto") == 2


def test_resolve_verbose_stream_without_isatty_or_closed():
    class NoTTY:
        def write(self, s):
            pass

    closed = io.StringIO()
    closed.close()
    assert resolve_verbose("auto", NoTTY()) == 2
    assert resolve_verbose("auto", closed) == 2


@pytest.mark.parametrize("given, expected", [(0, 0), (1, 1), (2, 2), (True, 1), (False, 0)])
def test_resolve_verbose_keeps_explicit_levels(given, expected):
    assert resolve_verbose(given, TTY()) == expected


@pytest.mark.parametrize("bad", [3, -1, "yes", None, 1.0])
def test_resolve_verbose_rejects_other_values(bad):
    with pytest.raises(ValueError, match="verbose"):
        resolve_verbose(bad)


def test_non_numeric_values_are_shown_as_given(clock):
    out = io.StringIO()
    bar = Progbar(2, interval=0, stream=out)
    bar.update(1, [("phase", "warm-up"), ("loss", 1.0)])
    bar.update(2, [("phase", "main"), ("loss", 2.0)])
    # Text replaces text; the number is averaged. (Trailing spaces wipe the longer "warm-up".)
    assert out.getvalue().split("\r")[2].rstrip().endswith(" - phase: main - loss: 1.5000")
