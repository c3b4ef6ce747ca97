"""The one progress display: a bar on a terminal, one plain line elsewhere."""

import io
import re

from tf_selectivity.core.progress import Progress, progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_when_the_pass_ends():
    stream = io.StringIO()
    with Progress("Decoding test images", 1000, unit="image", stream=stream) as bar:
        for _ in range(10):
            bar.update(100)
        assert stream.getvalue() == ""  # nothing while the pass runs
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"Decoding test images: 1,000/1,000 images, 0:0\d, .+ images/s", lines[0]), lines[0]


def test_on_a_terminal_a_bar_with_time_left():
    stream = _Terminal()
    bar = Progress("Ablation", 4, unit="unit", stream=stream)
    bar._start -= 10  # 10 s elapsed for the first unit
    bar.update(1)
    assert "[======..................] 1/4 units, 0:10 elapsed, 0:30 left" in stream.getvalue()
    bar.update(3)
    bar.close()
    text = stream.getvalue()
    assert text.endswith("\n") and "4/4 units" in text and "\r" in text


def test_unknown_total_and_disabled():
    stream = io.StringIO()
    assert list(progress(iter(range(3)), "Runs", unit="run", stream=stream)) == [0, 1, 2]
    assert stream.getvalue().startswith("Runs: 3 runs, ")
    quiet = io.StringIO()
    assert list(progress([1, 2], "Runs", enabled=False, stream=quiet)) == [1, 2]
    assert quiet.getvalue() == ""


def test_a_broken_stream_does_not_stop_the_work():
    stream = io.StringIO()
    stream.close()
    with Progress("x", 2, stream=stream, terminal=True) as bar:
        bar.update(2)
